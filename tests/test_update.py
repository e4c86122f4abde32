"""VPG's update is the REINFORCE update: against a hand-computed gradient, A2C, and full-batch steps."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch as th
from stable_baselines3 import A2C
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.envs import IdentityEnvBox

from sb3_vpg import VPG
from sb3_vpg.vpg.policies import VPGPolicy
from tests.conftest import SeededImageEnv


def test_returns_are_readable_after_each_rollout(rollout_capture):
    capture = rollout_capture(("returns",))
    VPG("MlpPolicy", make_vec_env("CartPole-v1", n_envs=3), n_steps=50, seed=0).learn(300, callback=capture)
    seen = [rollout["returns"] for rollout in capture.rollouts]
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


def before_the_update(model) -> dict:
    """The used samples of the rollout, and the linear policy's parameters before the update."""
    buffer = model.rollout_buffer
    used = buffer.has_return
    return {
        "obs": buffer.observations[used].reshape(-1, 4).astype(np.float64),
        "actions": buffer.actions[used].reshape(-1).astype(int),
        "returns": buffer.returns[used].astype(np.float64),
        "weight": model.policy.action_net.weight.detach().numpy().astype(np.float64).copy(),
        "bias": model.policy.action_net.bias.detach().numpy().astype(np.float64).copy(),
    }


@pytest.mark.parametrize("normalize_returns", [True, False])
def test_gradient_is_the_reinforce_estimator(normalize_returns, rollout_capture):
    model = tiny_linear_model(normalize_returns=normalize_returns)
    callback = rollout_capture(also=before_the_update)
    model.learn(80, callback=callback)
    capture = SimpleNamespace(**callback.rollouts[-1])
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
