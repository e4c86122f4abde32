"""
The speed work on the action distributions: no torch argument validation, and the Gumbel-max sampler instead of
torch.multinomial, with SB3's distributions, log-probabilities and entropies.
"""

import numpy as np
import pytest
import torch as th
from stable_baselines3.common.distributions import CategoricalDistribution, MultiCategoricalDistribution
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.envs import IdentityEnvBox
from stable_baselines3.common.policies import ActorCriticPolicy

from sb3_vpg import VPG
from sb3_vpg.common.fast_distributions import (
    GumbelCategoricalDistribution,
    GumbelMultiCategoricalDistribution,
    gumbel_max_sample,
)
from tests.conftest import EVERY_ACTION_SPACE


@pytest.mark.parametrize("use_sde", [False, True])
@EVERY_ACTION_SPACE
def test_distributions_skip_validation_with_sb3_numbers(env_fn, use_sde):
    # No torch argument validation (a device sync per step on GPU), same log-probs and entropies as SB3's policy
    env = env_fn()
    if use_sde and not isinstance(env, IdentityEnvBox):
        pytest.skip("gSDE is for Box actions")
    model = VPG("MlpPolicy", env, use_baseline=True, use_sde=use_sde, seed=0)
    sb3_policy = ActorCriticPolicy(env.observation_space, env.action_space, lambda _: 1e-3, use_sde=use_sde)
    sb3_policy.load_state_dict(model.policy.state_dict())
    obs = th.as_tensor(np.stack([env.observation_space.sample() for _ in range(6)])).float()
    actions = model.policy.get_distribution(obs).get_actions()
    validated_before = th.distributions.Distribution._validate_args
    distribution = model.policy.get_distribution(obs).distribution
    assert not any(part._validate_args for part in (distribution if isinstance(distribution, list) else [distribution]))
    assert th.distributions.Distribution._validate_args == validated_before  # the global default is untouched
    for ours, theirs in zip(
        model.policy.evaluate_actions(obs, actions), sb3_policy.evaluate_actions(obs, actions), strict=True
    ):
        assert th.equal(ours, theirs)


def test_gumbel_max_sample_draws_the_categorical_distribution():
    th.manual_seed(0)
    log_p = th.log(th.tensor([0.5, 0.3, 0.2, 0.0]))  # the last action has probability 0 (log -inf)
    draws = 200_000
    for logits in (log_p, log_p + 3.0):  # unnormalized log-probabilities give the same distribution
        actions = gumbel_max_sample(logits.expand(draws, 4))
        assert actions.shape == (draws,) and actions.dtype == th.int64
        frequencies = th.bincount(actions, minlength=4) / draws
        assert frequencies[3] == 0
        standard_errors = (th.tensor([0.5, 0.3, 0.2]) * th.tensor([0.5, 0.7, 0.8]) / draws).sqrt()
        assert ((frequencies[:3] - th.tensor([0.5, 0.3, 0.2])).abs() < 5 * standard_errors).all(), frequencies


@pytest.mark.parametrize("use_baseline", [False, True])
@EVERY_ACTION_SPACE
def test_rollouts_do_not_sample_with_multinomial(env_fn, use_baseline, monkeypatch, tmp_path):
    # Categorical actions are drawn by the Gumbel-max trick: torch.multinomial (a device sync per step on GPU) never runs
    def multinomial(*args, **kwargs):
        raise AssertionError("torch.multinomial was called")

    monkeypatch.setattr(th, "multinomial", multinomial)
    model = VPG("MlpPolicy", make_vec_env(env_fn, n_envs=2, seed=0), n_steps=16, use_baseline=use_baseline, seed=0)
    gumbel = {"Discrete": GumbelCategoricalDistribution, "MultiDiscrete": GumbelMultiCategoricalDistribution}
    sb3 = {"Discrete": CategoricalDistribution, "MultiDiscrete": MultiCategoricalDistribution}
    space = type(model.action_space).__name__
    if space in gumbel:
        assert type(model.policy.action_dist) is gumbel[space]
        # a model saved with SB3's sampler keeps it
        VPG("MlpPolicy", model.get_env(), policy_kwargs={"categorical_sampler": "multinomial"}).save(tmp_path / "sb3.zip")
        loaded = VPG.load(tmp_path / "sb3.zip")
        assert type(loaded.policy.action_dist) is sb3[space]
        with pytest.raises(AssertionError, match=r"torch\.multinomial was called"):
            loaded.predict(model.get_env().reset(), deterministic=False)
    model.learn(64)
    actions, _ = model.predict(model.get_env().reset(), deterministic=False)
    assert model.action_space.contains(actions[0])
