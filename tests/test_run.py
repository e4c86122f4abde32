"""VPG runs on every supported space, policy and VecEnv, and its update is the REINFORCE update."""

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3 import A2C
from stable_baselines3.common.buffers import DictRolloutBuffer, RolloutBuffer
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.distributions import CategoricalDistribution, MultiCategoricalDistribution
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.envs import (
    IdentityEnv,
    IdentityEnvBox,
    IdentityEnvMultiBinary,
    IdentityEnvMultiDiscrete,
    SimpleMultiObsEnv,
)
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.vec_env import SubprocVecEnv, VecEnvWrapper, VecFrameStack

from sb3_vpg import VPG
from sb3_vpg.common.buffers import VPGDictRolloutBuffer, VPGRolloutBuffer
from sb3_vpg.vpg.policies import (
    GumbelCategoricalDistribution,
    GumbelMultiCategoricalDistribution,
    VPGPolicy,
    gumbel_max_sample,
)
from tests.conftest import SeededImageEnv

EVERY_ACTION_SPACE = pytest.mark.parametrize(
    "env_fn",
    [
        lambda: IdentityEnv(dim=3, ep_length=10),
        lambda: IdentityEnvBox(ep_length=10),
        lambda: IdentityEnvMultiDiscrete(dim=3, ep_length=10),
        lambda: IdentityEnvMultiBinary(dim=3, ep_length=10),
    ],
    ids=["Discrete", "Box", "MultiDiscrete", "MultiBinary"],
)


@pytest.mark.parametrize("use_baseline", [False, True])
@EVERY_ACTION_SPACE
def test_action_spaces(env_fn, use_baseline):
    model = VPG("MlpPolicy", make_vec_env(env_fn, n_envs=2), n_steps=16, batch_size=7, use_baseline=use_baseline, seed=0)
    model.learn(64)
    assert model._n_updates == 2
    assert all(th.isfinite(param).all() for param in model.policy.parameters())


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
    for ours, theirs in zip(model.policy.evaluate_actions(obs, actions), sb3_policy.evaluate_actions(obs, actions)):
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
@pytest.mark.parametrize("env_fn", EVERY_ACTION_SPACE.args[1], ids=EVERY_ACTION_SPACE.kwargs["ids"])
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
        with pytest.raises(AssertionError, match="torch.multinomial was called"):
            loaded.predict(model.get_env().reset(), deterministic=False)
    model.learn(64)
    actions, _ = model.predict(model.get_env().reset(), deterministic=False)
    assert model.action_space.contains(actions[0])


@pytest.mark.parametrize("sde_sample_freq", [-1, 4])
def test_gsde(sde_sample_freq):
    model = VPG("MlpPolicy", "Pendulum-v1", n_steps=200, use_sde=True, sde_sample_freq=sde_sample_freq, seed=0)
    model.learn(400)
    assert model._n_updates == 2


def test_subproc_vec_env():
    env = make_vec_env("CartPole-v1", n_envs=2, vec_env_cls=SubprocVecEnv, seed=0)
    try:
        model = VPG("MlpPolicy", env, n_steps=64, use_baseline=True, seed=0).learn(256)
        assert model._n_updates == 2
    finally:
        env.close()


def test_cnn_policy():
    env = make_vec_env(SeededImageEnv, n_envs=2, seed=0)
    model = VPG("CnnPolicy", env, n_steps=16, batch_size=8, use_baseline=True, n_critic_updates=2, seed=0)
    model.learn(64)
    assert model._n_updates == 2


@pytest.mark.parametrize("use_baseline", [False, True])
def test_dict_observations(use_baseline):
    model = VPG("MultiInputPolicy", SimpleMultiObsEnv(random_start=True), n_steps=128, use_baseline=use_baseline, seed=0)
    model.learn(256)  # episodes end within 100 steps
    assert model._n_updates == 2


def test_returns_are_readable_after_each_rollout():
    seen = []

    class ReadReturns(BaseCallback):
        def _on_step(self) -> bool:
            return True

        def _on_rollout_end(self) -> None:
            seen.append(self.model.rollout_buffer.returns.copy())

    VPG("MlpPolicy", make_vec_env("CartPole-v1", n_envs=3), n_steps=50, seed=0).learn(300, callback=ReadReturns())
    assert len(seen) == 2
    assert all(returns.shape == (50, 3) for returns in seen)
    assert all(returns.max() > 1 for returns in seen)  # un-normalized: CartPole gives +1 per step


def tiny_linear_model(**kwargs) -> VPG:
    """A linear softmax policy on CartPole, stepped by plain SGD with lr 1, so a step is minus the gradient."""
    return VPG(
        "MlpPolicy",
        make_vec_env("CartPole-v1", n_envs=2, seed=1),
        learning_rate=1.0,
        n_steps=40,
        max_grad_norm=None,
        policy_kwargs=dict(net_arch=dict(pi=[], vf=[]), optimizer_class=th.optim.SGD),
        seed=1,
        **kwargs,
    )


class CaptureForGradient(BaseCallback):
    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        buffer = self.model.rollout_buffer
        used = buffer.has_return
        self.obs = buffer.observations[used].reshape(-1, 4).astype(np.float64)
        self.actions = buffer.actions[used].reshape(-1).astype(int)
        self.returns = buffer.returns[used].astype(np.float64)
        self.weight = self.model.policy.action_net.weight.detach().numpy().astype(np.float64).copy()
        self.bias = self.model.policy.action_net.bias.detach().numpy().astype(np.float64).copy()


@pytest.mark.parametrize("normalize_returns", [True, False])
def test_gradient_is_the_reinforce_estimator(normalize_returns):
    model = tiny_linear_model(normalize_returns=normalize_returns)
    capture = CaptureForGradient()
    model.learn(80, callback=capture)
    assert len(capture.returns) > 10

    # By hand: grad of -mean(w_i log softmax(W s_i + b)[a_i]) is -mean(w_i (onehot(a_i) - pi(.|s_i)) s_i^T)
    weights = capture.returns
    if normalize_returns:
        weights = (weights - weights.mean()) / (weights.std() + 1e-8)
    logits = capture.obs @ capture.weight.T + capture.bias
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    score = np.eye(2)[capture.actions] - probs
    grad_weight = -(weights[:, None, None] * score[:, :, None] * capture.obs[:, None, :]).mean(axis=0)
    grad_bias = -(weights[:, None] * score).mean(axis=0)

    step_weight = capture.weight - model.policy.action_net.weight.detach().numpy()
    step_bias = capture.bias - model.policy.action_net.bias.detach().numpy()
    np.testing.assert_allclose(step_weight, grad_weight, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(step_bias, grad_bias, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("use_baseline", [False, True])
@pytest.mark.parametrize(
    "policy, env_fn",
    [
        ("MlpPolicy", lambda: IdentityEnvBox(ep_length=10)),
        ("CnnPolicy", SeededImageEnv),
    ],
)
def test_accumulated_minibatches_equal_full_batch_step(policy, env_fn, use_baseline):
    # n_critic_updates=0: the critic passes take one optimizer step per minibatch, by design
    # Plain SGD, so the step is proportional to the gradient (Adam's first step is close to sign(gradient),
    # which would amplify float rounding in near-zero components)
    params = []
    for batch_size in [None, 7]:
        env = make_vec_env(env_fn, n_envs=2, seed=0)
        incomplete = "bootstrap" if use_baseline else "truncate"
        model = VPG(
            policy,
            env,
            n_steps=16,
            batch_size=batch_size,
            use_baseline=use_baseline,
            incomplete_episodes=incomplete,
            ent_coef=0.01,
            n_critic_updates=0,
            seed=0,
            policy_kwargs=dict(optimizer_class=th.optim.SGD),
        )
        initial = th.nn.utils.parameters_to_vector(model.policy.parameters()).detach().clone()
        model.learn(32)
        params.append(th.nn.utils.parameters_to_vector(model.policy.parameters()).detach())
    assert not th.equal(params[0], initial)  # two steps were taken
    th.testing.assert_close(params[0], params[1], rtol=1e-5, atol=1e-7)


def test_same_seed_same_parameters():
    def train(seed):
        model = VPG(
            "MlpPolicy",
            make_vec_env("CartPole-v1", n_envs=2, seed=seed),
            n_steps=64,
            use_baseline=True,
            n_critic_updates=2,
            batch_size=32,
            seed=seed,
        )
        model.learn(512)
        return th.nn.utils.parameters_to_vector(model.policy.parameters()).detach()

    assert th.equal(train(3), train(3))
    assert not th.equal(train(3), train(4))


def test_baseline_with_bootstrapped_tails_is_a2c():
    # With a baseline, A2C's optimizer and no critic passes or normalization, VPG's update is A2C's with
    # gae_lambda=1: the bootstrapped reward-to-go is A2C's n-step return, G - V its advantage, the losses the same.
    # A2C runs VPG's policy class, for the same sampler (Gumbel-max) and so the same rollouts.
    def train(algo, policy=VPGPolicy, updates=40, **kwargs):
        env = make_vec_env("CartPole-v1", n_envs=4, seed=0)
        common = dict(n_steps=8, learning_rate=7e-4, ent_coef=0.01, vf_coef=0.25, max_grad_norm=0.5, seed=0)
        model = algo(policy, env, **common, **kwargs)
        model.learn(4 * 8 * updates)  # 40 updates: a few episode ends and rollout tails in each
        return th.nn.utils.parameters_to_vector(model.policy.parameters()).detach()

    rmsprop = {"optimizer_class": th.optim.RMSprop, "optimizer_kwargs": {"alpha": 0.99, "eps": 1e-5, "weight_decay": 0}}
    vpg = train(VPG, use_baseline=True, normalize_returns=False, n_critic_updates=0, policy_kwargs=rmsprop)
    a2c = train(A2C, gae_lambda=1.0, normalize_advantage=False, use_rms_prop=True)
    th.testing.assert_close(vpg, a2c, rtol=0, atol=1e-6)
    normalized = train(VPG, use_baseline=True, normalize_returns=True, n_critic_updates=0, policy_kwargs=rmsprop)
    assert (normalized - a2c).abs().max() > 1e-3  # the comparison can tell the updates apart
    # categorical_sampler="multinomial" draws SB3's actions: the same as A2C with SB3's own policy
    multinomial = {**rmsprop, "categorical_sampler": "multinomial"}
    a2c_kwargs = {"gae_lambda": 1.0, "normalize_advantage": False, "use_rms_prop": True, "updates": 10}
    vpg = train(VPG, use_baseline=True, normalize_returns=False, n_critic_updates=0, policy_kwargs=multinomial, updates=10)
    sb3 = train(A2C, "MlpPolicy", **a2c_kwargs)
    th.testing.assert_close(vpg, sb3, rtol=0, atol=1e-6)
    assert (sb3 - train(A2C, **a2c_kwargs)).abs().max() > 1e-3  # the two samplers give other rollouts


def test_pure_mode_leaves_the_critic_untouched():
    model = VPG("MlpPolicy", "CartPole-v1", n_steps=128, seed=0)
    critic = [p.detach().clone() for p in model.policy.value_net.parameters()]
    model.learn(512)
    assert all(th.equal(a, b) for a, b in zip(critic, model.policy.value_net.parameters(), strict=True))


def test_rollout_without_any_return_skips_the_update():
    # Episodes last 10 steps: two rollouts of 4 see none end, so pure REINFORCE ("drop") has nothing to learn from
    model = VPG("CnnPolicy", make_vec_env(SeededImageEnv, n_envs=1, seed=0), n_steps=4, seed=0)
    before = th.nn.utils.parameters_to_vector(model.policy.parameters()).detach().clone()
    with pytest.warns(UserWarning, match="no Monte-Carlo return"):
        model.learn(8)
    assert model._n_updates == 0
    after = th.nn.utils.parameters_to_vector(model.policy.parameters()).detach()
    assert th.equal(before, after)
    assert th.isfinite(after).all()


def test_critic_passes_move_only_the_critic():
    def train(n_critic_updates):
        model = VPG(
            "MlpPolicy",
            make_vec_env("CartPole-v1", n_envs=2, seed=0),
            n_steps=64,
            batch_size=32,
            use_baseline=True,
            n_critic_updates=n_critic_updates,
            seed=0,
        )
        model.learn(128)
        actor = [model.policy.action_net, model.policy.mlp_extractor.policy_net]
        critic = [model.policy.value_net, model.policy.mlp_extractor.value_net]
        flat = th.nn.utils.parameters_to_vector
        return (
            flat([p for m in actor for p in m.parameters()]).detach(),
            flat([p for m in critic for p in m.parameters()]).detach(),
        )

    actor_without, critic_without = train(0)
    actor_with, critic_with = train(3)
    assert th.equal(actor_without, actor_with)
    assert not th.allclose(critic_without, critic_with)


def test_critic_passes_leave_a_shared_cnn_untouched():
    def train(n_critic_updates):
        env = make_vec_env(SeededImageEnv, n_envs=2, seed=0)
        model = VPG("CnnPolicy", env, n_steps=16, batch_size=8, use_baseline=True, n_critic_updates=n_critic_updates, seed=0)
        model.learn(32)
        return {name: param.detach().clone() for name, param in model.policy.named_parameters()}

    without, with_passes = train(0), train(2)
    assert all(th.equal(without[name], with_passes[name]) for name in without if not name.startswith("value_net"))
    assert not th.equal(without["value_net.weight"], with_passes["value_net.weight"])


def test_critic_passes_train_a_critic_cnn_of_its_own():
    def train(n_critic_updates):
        env = make_vec_env(SeededImageEnv, n_envs=2, seed=0)
        kwargs = dict(policy_kwargs=dict(share_features_extractor=False), n_critic_updates=n_critic_updates, seed=0)
        model = VPG("CnnPolicy", env, n_steps=16, batch_size=8, use_baseline=True, **kwargs).learn(32)
        return {name: param.detach().clone() for name, param in model.policy.named_parameters()}

    without, with_passes = train(0), train(2)
    critic = ("vf_features_extractor.", "value_net.")
    assert all(th.equal(without[name], with_passes[name]) for name in without if not name.startswith(critic))
    assert not th.equal(without["vf_features_extractor.cnn.0.weight"], with_passes["vf_features_extractor.cnn.0.weight"])


@pytest.mark.parametrize("batch_size", [None, 8])
def test_critic_passes_reuse_the_shared_cnn_features(batch_size):
    # A shared CNN runs once per minibatch after the policy step (the KL pass), however many critic passes follow
    forwards = []
    for n_critic_updates in (0, 4):
        env = make_vec_env(SeededImageEnv, n_envs=2, seed=0)
        model = VPG("CnnPolicy", env, n_steps=16, batch_size=batch_size, use_baseline=True, n_critic_updates=n_critic_updates)
        calls: list[int] = []
        model.policy.features_extractor.register_forward_hook(lambda *_, calls=calls: calls.append(1))
        model.learn(32)
        forwards.append(len(calls))
    assert forwards[0] == forwards[1]


def test_critic_passes_equal_a_hand_written_regression():
    # The critic passes on kept features equal plain full-batch regression of V on G from the shared CNN's features
    def model_after_one_update(n_critic_updates):
        env = make_vec_env(SeededImageEnv, n_envs=2, seed=0)
        model = VPG("CnnPolicy", env, n_steps=16, use_baseline=True, n_critic_updates=n_critic_updates, seed=0)
        return model.learn(32)

    model, reference = model_after_one_update(3), model_after_one_update(0)
    policy = reference.policy
    data = next(reference.rollout_buffer.get())
    with th.no_grad():
        features = policy.features_extractor(data.observations.float() / 255.0)
    for _ in range(3):
        policy.optimizer.zero_grad()
        values = policy.value_net(policy.mlp_extractor.value_net(features)).flatten()
        th.nn.functional.mse_loss(values, data.returns).backward()
        policy.optimizer.step()
    flat = th.nn.utils.parameters_to_vector
    th.testing.assert_close(flat(model.policy.parameters()), flat(policy.parameters()))
    assert not th.equal(
        flat(model.policy.value_net.parameters()), flat(model_after_one_update(0).policy.value_net.parameters())
    )


@pytest.mark.parametrize("use_baseline", [False, True])
def test_critic_runs_only_with_a_baseline(use_baseline):
    # Pure REINFORCE never reads V: neither rollout collection nor the update may evaluate the critic
    model = VPG("MlpPolicy", "CartPole-v1", n_steps=64, use_baseline=use_baseline, seed=0)
    calls = []
    model.policy.value_net.register_forward_hook(lambda *_: calls.append(1))
    model.learn(128)
    assert bool(calls) == use_baseline


def dict_cartpole():
    """CartPole whose observation is a Dict of positions and velocities (deterministic for a seed)."""
    env = gym.make("CartPole-v1")
    low, high = env.observation_space.low, env.observation_space.high
    space = spaces.Dict({"position": spaces.Box(low[::2], high[::2]), "velocity": spaces.Box(low[1::2], high[1::2])})
    return gym.wrappers.TransformObservation(env, lambda obs: {"position": obs[::2], "velocity": obs[1::2]}, space)


class FreshObservations:
    """A VPG buffer that allocates new observation arrays for every rollout, as SB3's buffers do."""

    def reset(self):
        self._observation_storage = None
        super().reset()


class FreshObservationsBuffer(FreshObservations, VPGRolloutBuffer):
    pass


class FreshObservationsDictBuffer(FreshObservations, VPGDictRolloutBuffer):
    pass


@pytest.mark.parametrize(
    "policy, env_fn, fresh",
    [
        ("MlpPolicy", lambda: gym.make("CartPole-v1"), FreshObservationsBuffer),
        ("MultiInputPolicy", lambda: dict_cartpole(), FreshObservationsDictBuffer),
    ],
    ids=["flat", "Dict"],
)
def test_rollouts_reuse_the_observation_arrays(policy, env_fn, fresh):
    # The observations of every rollout go into the first rollout's arrays (new ones page-fault on every first
    # write), with the same result as new arrays
    def train(**kwargs):
        arrays = []  # each rollout's observation arrays (held, so that no allocation can reuse their memory)

        class Arrays(BaseCallback):
            def _on_step(self):
                return True

            def _on_rollout_end(self):
                observations = self.model.rollout_buffer.observations
                arrays.append(list(observations.values()) if isinstance(observations, dict) else [observations])

        model = VPG(policy, make_vec_env(env_fn, n_envs=2, seed=0), n_steps=100, use_baseline=True, seed=0, **kwargs)
        model.learn(2 * 100 * 4, callback=Arrays())
        assert len(arrays) == 4
        same = [all(a is b for a, b in zip(arrays[0], later, strict=True)) for later in arrays[1:]]
        return th.nn.utils.parameters_to_vector(model.policy.parameters()).detach(), same

    kept, kept_same = train()
    new, new_same = train(rollout_buffer_class=fresh)
    assert all(kept_same)
    assert not any(new_same)  # the comparison can tell the buffers apart
    assert th.equal(kept, new)


class SB3Collection:
    """VPG's buffer filled as SB3 fills its own: the whole step written by SB3's add(), after the env step."""

    def add(self, *args, **kwargs):
        (DictRolloutBuffer if isinstance(self.observations, dict) else RolloutBuffer).add(self, *args, **kwargs)


class SB3CollectionBuffer(SB3Collection, VPGRolloutBuffer):
    pass


class SB3CollectionDictBuffer(SB3Collection, VPGDictRolloutBuffer):
    pass


class SB3CollectionVPG(VPG):
    def collect_rollouts(self, *args, **kwargs):
        return OnPolicyAlgorithm.collect_rollouts(self, *args, **kwargs)


def rollouts_and_parameters(algo, policy, env, **kwargs):
    """Every array of every rollout's buffer, and the parameters after the last update."""
    rollouts = []

    class Rollouts(BaseCallback):
        def _on_step(self):
            return True

        def _on_rollout_end(self):
            buffer = self.model.rollout_buffer
            observations = buffer.observations if isinstance(buffer.observations, dict) else {"obs": buffer.observations}
            arrays = {key: value.copy() for key, value in observations.items()}
            for name in ("actions", "rewards", "episode_starts", "values", "log_probs", "returns", "has_return"):
                arrays[name] = getattr(buffer, name).copy()
            rollouts.append(arrays)

    model = algo(policy, env, n_steps=32, seed=0, **kwargs)
    try:
        model.learn(3 * 32 * env.num_envs, callback=Rollouts())
    finally:
        env.close()
    return rollouts, th.nn.utils.parameters_to_vector(model.policy.parameters()).detach()


def frame_stacked_images():
    """Channels-last images stacked by VecFrameStack, which VPG transposes (a view), as on Atari."""
    return VecFrameStack(make_vec_env(SeededImageEnv, n_envs=2, seed=0), n_stack=2)


@pytest.mark.parametrize(
    "policy, make_env, buffer_class",
    [
        ("MlpPolicy", lambda: make_vec_env(lambda: IdentityEnv(dim=3, ep_length=10), 2, 0), SB3CollectionBuffer),
        ("MlpPolicy", lambda: make_vec_env(lambda: IdentityEnvBox(ep_length=10), 2, 0), SB3CollectionBuffer),
        ("MlpPolicy", lambda: make_vec_env(lambda: IdentityEnvMultiDiscrete(dim=3, ep_length=10), 2, 0), SB3CollectionBuffer),
        ("MlpPolicy", lambda: make_vec_env(lambda: IdentityEnvMultiBinary(dim=3, ep_length=10), 2, 0), SB3CollectionBuffer),
        ("MultiInputPolicy", lambda: make_vec_env(dict_cartpole, 2, 0), SB3CollectionDictBuffer),
        ("MlpPolicy", lambda: make_vec_env("CartPole-v1", 2, 0, vec_env_cls=SubprocVecEnv), SB3CollectionBuffer),
        ("CnnPolicy", frame_stacked_images, SB3CollectionBuffer),
    ],
    ids=["Discrete", "Box", "MultiDiscrete", "MultiBinary", "Dict", "SubprocVecEnv", "VecFrameStack"],
)
def test_staged_observations_fill_the_buffer_as_sb3s_add(policy, make_env, buffer_class):
    # Observations copied into the buffer during the env step, the rest by VPG's add(): the same rollouts, bit for
    # bit, as SB3's collection loop and add() on the same seed (Discrete observations in the first case)
    staged, staged_parameters = rollouts_and_parameters(VPG, policy, make_env(), use_baseline=True)
    sb3, sb3_parameters = rollouts_and_parameters(
        SB3CollectionVPG, policy, make_env(), use_baseline=True, rollout_buffer_class=buffer_class
    )
    assert len(staged) == len(sb3) == 3
    for staged_rollout, sb3_rollout in zip(staged, sb3, strict=True):
        assert staged_rollout.keys() == sb3_rollout.keys()
        for name in staged_rollout:
            assert np.array_equal(staged_rollout[name], sb3_rollout[name]), name
    assert th.equal(staged_parameters, sb3_parameters)


class CheckStaged(VecEnvWrapper):
    """Under VPG's staging: blanks the buffer's row when the actions go out, and counts the steps whose row holds the
    observation by the time the envs return."""

    def __init__(self, venv):
        super().__init__(venv)
        self.model, self.staged, self.steps = None, 0, 0

    def step_async(self, actions):
        buffer = self.model.rollout_buffer
        buffer.observations[buffer.pos] = np.nan
        super().step_async(actions)

    def step_wait(self):
        buffer = self.model.rollout_buffer
        self.staged += np.array_equal(buffer.observations[buffer.pos], self.model._last_obs)
        self.steps += 1
        return self.venv.step_wait()

    def reset(self):
        return self.venv.reset()


class OwnStep(VecEnvWrapper):
    """A VecEnv whose step() does more than step_async() and step_wait()."""

    def __init__(self, venv):
        super().__init__(venv)
        self.calls = 0

    def step(self, actions):
        self.calls += 1
        return super().step(actions)

    def step_wait(self):
        return self.venv.step_wait()

    def reset(self):
        return self.venv.reset()


def test_a_vec_env_with_its_own_step_is_stepped_by_it():
    # VPG's staging calls step_async/step_wait; a VecEnv that overrides step() is left to SB3's loop instead
    env = OwnStep(make_vec_env("CartPole-v1", n_envs=2, seed=0))
    VPG("MlpPolicy", env, n_steps=32, seed=0).learn(2 * 32 * 2)
    assert env.calls == 2 * 32


def test_observations_reach_the_buffer_while_the_envs_step():
    env = CheckStaged(make_vec_env("CartPole-v1", n_envs=2, seed=0))
    model = VPG("MlpPolicy", env, n_steps=32, seed=0)
    env.model = model
    model.learn(2 * 32 * 2)
    assert env.steps == 2 * 32
    assert env.staged == env.steps


@pytest.mark.parametrize("use_baseline", [False, True])
def test_update_memory_is_bounded_by_batch_size(use_baseline):
    # With batch_size set, no forward pass of the update (policy step, KL estimate, critic passes) sees more than
    # batch_size samples, whatever the rollout size: the update's memory does not grow with n_steps * n_envs
    for n_steps in (256, 1024):
        env = make_vec_env("CartPole-v1", n_envs=2, seed=0)
        model = VPG("MlpPolicy", env, n_steps=n_steps, batch_size=64, use_baseline=use_baseline, seed=0)
        rows: list[int] = []
        for net in (model.policy.mlp_extractor.policy_net, model.policy.mlp_extractor.value_net):
            net.register_forward_hook(lambda _, inputs, __, rows=rows: rows.append(inputs[0].shape[0]))
        model.learn(n_steps * 2)  # one rollout of n_steps * 2 samples, one update
        assert max(rows) == 64, (n_steps, max(rows))
