"""
``policy_kwargs=dict(sparse_input=True)``: the layers that read the observation sum only the weights of its non-zero
entries. The layer must compute what ``nn.Linear`` computes (outputs and gradients), keep the model's parameters
(same objects, same names, same initial values), and train the same model as the dense layers.
"""

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from torch import nn

from sb3_vpg import VPG
from sb3_vpg.common.sparse_input import MAX_DENSITY, SparseInputLinear, sparse_linear

SPARSE = {"sparse_input": True}


class OneHotEnv(gym.Env):
    """A mostly-zero observation: the one-hot code of a random cell of 64; action 1 pays on even cells, 0 on odd."""

    observation_space = spaces.Box(0.0, 1.0, shape=(64,), dtype=np.float32)
    action_space = spaces.Discrete(2)

    def _observe(self):
        self.cell = int(self.np_random.integers(64))
        obs = np.zeros(64, dtype=np.float32)
        obs[self.cell] = 1.0
        return obs

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._observe(), {}

    def step(self, action):
        reward = float(int(action) == 1 - self.cell % 2)
        self.t += 1
        return self._observe(), reward, self.t == 10, False, {}


def sparse_batch(rows=16, columns=300, nonzero=5, seed=0):
    """Rows of ``columns`` values, ``nonzero`` of them -1 or +1 (difference frames), one row all zeros."""
    generator = th.Generator().manual_seed(seed)
    batch = th.zeros(rows, columns)
    for row in range(1, rows):
        cells = th.randperm(columns, generator=generator)[:nonzero]
        batch[row, cells] = th.randint(0, 2, (nonzero,), generator=generator).float() * 2 - 1
    return batch


@pytest.fixture
def layers():
    th.manual_seed(0)
    dense = nn.Linear(300, 20)
    return dense, sparse_linear(dense)


@pytest.mark.parametrize(
    "batch",
    [sparse_batch(), sparse_batch(rows=1, nonzero=3), th.randn(16, 300), th.zeros(4, 300)],
    ids=["sparse", "one-row", "dense", "all-zero"],
)
def test_outputs_and_gradients_are_those_of_the_dense_layer(layers, batch):
    dense, sparse = layers
    expected = batch @ dense.weight.detach().t() + dense.bias.detach()  # written out, not nn.Linear's own code
    out = sparse(batch)
    assert th.allclose(out, expected, atol=1e-6)
    (out.tanh() * th.linspace(-1, 1, 20)).sum().backward()
    sparse_grads = [dense.weight.grad.clone(), dense.bias.grad.clone()]
    dense.zero_grad()
    (dense(batch).tanh() * th.linspace(-1, 1, 20)).sum().backward()
    assert th.allclose(sparse_grads[0], dense.weight.grad, atol=1e-6)
    assert th.allclose(sparse_grads[1], dense.bias.grad, atol=1e-6)


def test_an_all_zero_row_gives_the_bias(layers):
    _, sparse = layers
    out = sparse(sparse_batch())
    assert th.equal(out[0], sparse.bias.detach())


def test_other_shapes_take_the_dense_product(layers):
    dense, sparse = layers
    batch = sparse_batch().reshape(4, 4, 300)
    assert th.allclose(sparse(batch), dense(batch), atol=1e-6)


def test_the_dense_threshold_is_a_small_fraction():
    assert 0 < MAX_DENSITY <= 0.25


def test_sparse_linear_keeps_the_parameter_objects(layers):
    dense, sparse = layers
    assert isinstance(sparse, SparseInputLinear)
    assert sparse.weight is dense.weight and sparse.bias is dense.bias


def test_sparse_linear_takes_only_a_linear_layer(layers):
    with pytest.raises(TypeError, match=r"nn\.Linear"):
        sparse_linear(nn.Conv2d(1, 1, 3))
    with pytest.raises(TypeError, match=r"nn\.Linear"):
        sparse_linear(layers[1])


@pytest.mark.parametrize("net_arch", [[32], []], ids=["hidden-layer", "no-hidden-layer"])
def test_the_layers_reading_the_observation_are_swapped(net_arch):
    model = VPG("MlpPolicy", OneHotEnv(), use_baseline=True, policy_kwargs={**SPARSE, "net_arch": net_arch}, seed=0)
    policy = model.policy
    readers = (
        [policy.mlp_extractor.policy_net[0], policy.mlp_extractor.value_net[0]]
        if net_arch
        else [policy.action_net, policy.value_net]
    )
    assert all(isinstance(layer, SparseInputLinear) for layer in readers)
    assert sum(isinstance(module, SparseInputLinear) for module in policy.modules()) == 2


def test_same_parameters_same_names_same_initial_values():
    dense = VPG("MlpPolicy", OneHotEnv(), use_baseline=True, seed=3).policy.state_dict()
    sparse = VPG("MlpPolicy", OneHotEnv(), use_baseline=True, policy_kwargs=SPARSE, seed=3).policy.state_dict()
    assert list(dense) == list(sparse)
    assert all(th.equal(dense[name], sparse[name]) for name in dense)


def test_the_optimizer_updates_the_swapped_layers():
    model = VPG("MlpPolicy", OneHotEnv(), policy_kwargs=SPARSE, seed=0)
    optimized = {id(parameter) for group in model.policy.optimizer.param_groups for parameter in group["params"]}
    assert id(model.policy.mlp_extractor.policy_net[0].weight) in optimized


@pytest.mark.parametrize("use_baseline", [False, True], ids=["pure", "baseline"])
def test_trains_the_same_model_as_the_dense_layers(use_baseline):
    def trained(policy_kwargs):
        model = VPG("MlpPolicy", OneHotEnv(), n_steps=200, use_baseline=use_baseline, policy_kwargs=policy_kwargs, seed=1)
        return model.learn(600).policy.state_dict()

    dense, sparse = trained({}), trained(SPARSE)
    for name in dense:
        assert th.allclose(dense[name], sparse[name], atol=1e-5), name


def test_saved_and_loaded(tmp_path):
    model = VPG("MlpPolicy", OneHotEnv(), n_steps=50, policy_kwargs=SPARSE, seed=0).learn(100)
    model.save(tmp_path / "model.zip")
    loaded = VPG.load(tmp_path / "model.zip", device="cpu")
    assert loaded.policy.sparse_input is True
    assert isinstance(loaded.policy.mlp_extractor.policy_net[0], SparseInputLinear)
    obs = np.stack([OneHotEnv().reset(seed=seed)[0] for seed in range(8)])
    assert np.array_equal(model.predict(obs, deterministic=True)[0], loaded.predict(obs, deterministic=True)[0])


def test_needs_flat_observations():
    from stable_baselines3.common.envs import FakeImageEnv

    with pytest.raises(ValueError, match="sparse_input"):
        VPG("CnnPolicy", FakeImageEnv(screen_height=36, screen_width=36), policy_kwargs=SPARSE)


def test_must_be_a_bool():
    with pytest.raises(TypeError, match="sparse_input"):
        VPG("MlpPolicy", OneHotEnv(), policy_kwargs={"sparse_input": 1})


@pytest.mark.parametrize(
    ("batch", "sparse_path"), [(sparse_batch(), True), (th.randn(16, 300), False)], ids=["sparse", "dense"]
)
def test_a_batch_takes_the_sparse_path_only_when_mostly_zero(layers, monkeypatch, batch, sparse_path):
    import sb3_vpg.common.sparse_input as sparse_input

    calls = []
    embedding_bag = sparse_input.F.embedding_bag
    monkeypatch.setattr(
        sparse_input.F, "embedding_bag", lambda *args, **kwargs: calls.append(1) or embedding_bag(*args, **kwargs)
    )
    layers[1](batch)
    assert bool(calls) is sparse_path
