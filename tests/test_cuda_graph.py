"""
``policy_kwargs=dict(cuda_graph=True)``: the rollout forward pass replayed as a CUDA graph.

The first tests run everywhere (the switch is saved, checked, and changes nothing off CUDA); the others need a CUDA
device and are skipped without one.
"""

import copy

import numpy as np
import pytest
import torch as th
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.envs import (
    IdentityEnv,
    IdentityEnvBox,
    IdentityEnvMultiBinary,
    IdentityEnvMultiDiscrete,
    SimpleMultiObsEnv,
)
from stable_baselines3.common.utils import obs_as_tensor

from sb3_vpg import VPG
from sb3_vpg.common.cuda_graph import GraphedForward

GRAPH = {"cuda_graph": True}
needs_cuda = pytest.mark.skipif(not th.cuda.is_available(), reason="needs a CUDA device")

ENVS = {
    "Discrete": lambda: IdentityEnv(dim=3, ep_length=10),
    "Box": lambda: IdentityEnvBox(ep_length=10),
    "MultiDiscrete": lambda: IdentityEnvMultiDiscrete(dim=3, ep_length=10),
    "MultiBinary": lambda: IdentityEnvMultiBinary(dim=3, ep_length=10),
    "Dict": lambda: SimpleMultiObsEnv(random_start=False),
}


def _model(space: str, device: str, use_baseline: bool = False, n_envs: int = 4, **kwargs) -> VPG:
    policy = "MultiInputPolicy" if space == "Dict" else "MlpPolicy"
    env = make_vec_env(ENVS[space], n_envs=n_envs, seed=0)
    return VPG(policy, env, n_steps=16, use_baseline=use_baseline, device=device, seed=0, **kwargs)


def test_cuda_graph_must_be_a_bool():
    with pytest.raises(TypeError, match="cuda_graph"):
        VPG("MlpPolicy", "CartPole-v1", policy_kwargs={"cuda_graph": "yes"})


def test_on_cpu_the_switch_changes_nothing_and_is_saved(tmp_path):
    models = [_model("Discrete", "cpu", policy_kwargs=kwargs).learn(64) for kwargs in ({}, GRAPH)]
    for theirs, ours in zip(models[0].policy.parameters(), models[1].policy.parameters(), strict=True):
        assert th.equal(theirs, ours)
    assert models[1].policy._graphed is None  # nothing captured off CUDA
    models[1].save(tmp_path / "model.zip")
    assert VPG.load(tmp_path / "model.zip", device="cpu").policy.cuda_graph is True


def test_copies_leave_the_graph_behind():
    policy = _model("Discrete", "cpu", policy_kwargs=GRAPH).policy
    policy._graphed = GraphedForward(lambda obs: (obs,), list)
    assert copy.deepcopy(policy)._graphed is None
    assert policy._graphed is not None


def test_only_cuda_observations_are_graph_inputs():
    assert not GraphedForward.applies(th.zeros(2, 3))
    assert not GraphedForward.applies({"a": th.zeros(2, 3)})
    assert not GraphedForward.applies({})
    assert not GraphedForward.applies(np.zeros((2, 3)))


def _rollout_obs(model: VPG):
    return obs_as_tensor(model.env.reset(), model.device)


def _check_against_eager(model: VPG, obs, actions, values, log_prob) -> None:
    """The graph's log-probabilities (and values) are those the eager policy gives the graph's actions."""
    policy = model.policy
    eager_values, eager_log_prob, _ = policy.evaluate_actions(obs, actions)
    th.testing.assert_close(log_prob, eager_log_prob, rtol=1e-5, atol=1e-5)
    if policy.use_critic:
        th.testing.assert_close(values, eager_values, rtol=1e-5, atol=1e-5)


@needs_cuda
@pytest.mark.parametrize("use_baseline", [False, True])
@pytest.mark.parametrize("space", list(ENVS))
def test_graphed_forward_is_the_policy_and_follows_its_weights(space, use_baseline):
    model = _model(space, "cuda", use_baseline, policy_kwargs=GRAPH)
    policy, obs = model.policy, _rollout_obs(model)
    policy.set_training_mode(False)
    with th.no_grad():
        outputs = policy(obs)
        graph = policy._graphed.graph
        assert graph is not None
        _check_against_eager(model, obs, *outputs)

        # The optimizer updates the weights in place: the same graph reads the new ones
        for param in policy.parameters():
            param.add_(0.05 * th.randn_like(param))
        outputs = policy(obs)
        assert policy._graphed.graph is graph
        _check_against_eager(model, obs, *outputs)

        # A parameter given new storage (as module.to does) means a new capture
        first = next(policy.parameters())
        first.data = first.data.clone()
        outputs = policy(obs)
        assert policy._graphed.graph is not graph
        _check_against_eager(model, obs, *outputs)


@needs_cuda
def test_outputs_survive_the_next_replay_and_samples_differ():
    model = _model("Discrete", "cuda", n_envs=64, policy_kwargs=GRAPH)
    obs = _rollout_obs(model)
    with th.no_grad():
        first = model.policy(obs)
        kept = [tensor.clone() for tensor in first]
        second = model.policy(obs)
    for tensor, copy_ in zip(first, kept, strict=True):
        assert th.equal(tensor, copy_)
    assert not th.equal(first[0], second[0])  # each replay draws new random numbers (64 envs, 3 actions)


@needs_cuda
def test_deterministic_gradient_and_gsde_passes_are_eager():
    model = _model("Discrete", "cuda", policy_kwargs=GRAPH)
    obs = _rollout_obs(model)
    with th.no_grad():
        model.policy(obs, deterministic=True)
    model.policy(obs)  # gradient enabled
    model.predict(model.env.reset())
    assert model.policy._graphed is None
    sde = VPG("MlpPolicy", make_vec_env(ENVS["Box"], n_envs=4), n_steps=16, use_sde=True, device="cuda", policy_kwargs=GRAPH)
    sde.learn(32)
    assert sde.policy._graphed is None


@needs_cuda
@pytest.mark.parametrize("use_baseline", [False, True])
def test_learning_with_the_graph_is_seeded(use_baseline):
    runs = []
    for _ in range(2):
        model = VPG(
            "MlpPolicy",
            make_vec_env("CartPole-v1", n_envs=4, seed=0),
            n_steps=64,
            use_baseline=use_baseline,
            device="cuda",
            seed=0,
            policy_kwargs=GRAPH,
        ).learn(1024)
        assert model.policy._graphed.graph is not None
        runs.append([param.detach().cpu() for param in model.policy.parameters()])
    for first, second in zip(*runs, strict=True):
        assert th.equal(first, second)
