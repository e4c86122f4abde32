"""With a baseline, the critic passes regress V on G and move the critic's own layers only, as TRPO's do."""

import pytest
import torch as th
from stable_baselines3.common.env_util import make_vec_env

from sb3_vpg import VPG
from tests.conftest import SeededImageEnv


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
