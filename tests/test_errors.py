"""Bad input gets a clear error that names the parameter; bad data never reaches the weights."""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.envs import IdentityEnv
from stable_baselines3.common.vec_env import DummyVecEnv

from sb3_vpg import VPG


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(gamma=0.0), "gamma"),
        (dict(gamma=1.5), "gamma"),
        (dict(gamma=float("nan")), "gamma"),
        (dict(n_steps=0), "n_steps"),
        (dict(n_steps=2.5), "n_steps"),
        (dict(batch_size=0), "batch_size"),
        (dict(ent_coef=-0.1), "ent_coef"),
        (dict(vf_coef=-1.0), "vf_coef"),
        (dict(learning_rate=0.0), "learning_rate"),
        (dict(max_grad_norm=0.0), "max_grad_norm"),
        (dict(incomplete_episodes="ignore"), "incomplete_episodes"),
        (dict(incomplete_episodes="bootstrap"), "use_baseline"),
        (dict(n_critic_updates=-1), "n_critic_updates"),
        (dict(n_steps=1), "normalize_returns"),
        (dict(use_sde=True), "gSDE"),  # SB3's own check
        ({"policy_kwargs": {"categorical_sampler": "argmax"}}, "categorical_sampler"),
    ],
)
def test_bad_hyperparameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        VPG("MlpPolicy", "CartPole-v1", **kwargs)


def test_one_sample_rollout_is_fine_without_normalization():
    model = VPG("MlpPolicy", "CartPole-v1", n_steps=1, normalize_returns=False, incomplete_episodes="truncate").learn(4)
    assert model._n_updates == 4


class TupleActionEnv(IdentityEnv):
    def __init__(self):
        super().__init__(dim=2)
        self.action_space = spaces.Tuple([spaces.Discrete(2), spaces.Discrete(2)])


class TupleObservationEnv(IdentityEnv):
    def __init__(self):
        super().__init__(dim=2)
        self.observation_space = spaces.Tuple([spaces.Discrete(2), spaces.Discrete(2)])


@pytest.mark.parametrize("env_cls, match", [(TupleActionEnv, "action_space"), (TupleObservationEnv, "observation_space")])
def test_unsupported_spaces(env_cls, match):
    with pytest.raises(TypeError, match=match):
        VPG("MlpPolicy", DummyVecEnv([env_cls]))


def test_rollout_buffer_class_must_compute_monte_carlo_returns():
    with pytest.raises(TypeError, match="rollout_buffer_class"):
        VPG("MlpPolicy", "CartPole-v1", rollout_buffer_class=RolloutBuffer)


class NaNRewardEnv(gym.Wrapper):
    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs, float("nan") if self.env.unwrapped.current_step == 3 else reward, terminated, truncated, info


def test_non_finite_reward_raises_with_env_index_and_step():
    env = DummyVecEnv([lambda: IdentityEnv(dim=2), lambda: NaNRewardEnv(IdentityEnv(dim=2))])
    model = VPG("MlpPolicy", env, n_steps=8)
    with pytest.raises(ValueError, match=r"Env 1 returned a non-finite reward \(nan\) at step 6"):
        model.learn(16)
    assert all(np.isfinite(param.detach().numpy()).all() for param in model.policy.parameters())


@pytest.mark.parametrize("name", ["learning_rate", "gamma", "ent_coef", "vf_coef", "max_grad_norm"])
def test_non_number_hyperparameter_is_a_type_error(name):
    # YAML 1.1 reads 7e-4 (no dot) as a string: it must fail by name, not in a comparison deep inside
    with pytest.raises(TypeError, match=name):
        VPG("MlpPolicy", "CartPole-v1", **{name: "7e-4"})
