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

from stable_baselines3 import A2C, PPO

from sb3_vpg import VPG
from sb3_vpg.common.sparse_input import MAX_DENSITY, SparseInputExtractor, SparseInputLinear, nonzero_entries, sparse_linear

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
    tables = record_tables(monkeypatch)
    layers[1](batch)
    assert bool(tables) is sparse_path


def record_tables(monkeypatch) -> list[bool]:
    """Whether each table that ``F.embedding_bag`` reads from here on is contiguous."""
    import sb3_vpg.common.sparse_input as sparse_input

    tables, embedding_bag = [], sparse_input.F.embedding_bag

    def recorded(indices, table, *args, **kwargs):
        tables.append(table.is_contiguous())
        return embedding_bag(indices, table, *args, **kwargs)

    monkeypatch.setattr(sparse_input.F, "embedding_bag", recorded)
    return tables


def test_a_large_batch_sums_over_a_contiguous_copy_with_the_same_results(layers, monkeypatch):
    _, sparse = layers
    batch = sparse_batch(rows=64, nonzero=5)  # 315 entries against 300 features: past the threshold
    assert 5 * 63 > sparse.in_features * sparse.contiguous_from
    tables = record_tables(monkeypatch)

    def run(contiguous_from):
        monkeypatch.setattr(sparse, "contiguous_from", contiguous_from)
        sparse.zero_grad()
        out = sparse(batch)
        (out.tanh() * th.linspace(-1, 1, 20)).sum().backward()
        return out.detach(), sparse.weight.grad.clone(), sparse.bias.grad.clone()

    copied, strided = run(SparseInputLinear.contiguous_from), run(float("inf"))
    assert tables == [True, False]
    assert all(th.equal(a, b) for a, b in zip(copied, strided, strict=True))  # the same sums, bit for bit


def test_a_rollout_step_reads_the_weight_in_place(layers, monkeypatch):
    tables = record_tables(monkeypatch)
    layers[1](sparse_batch(rows=8))  # 35 entries: a copy of the 300 x 20 table would cost more than reading them
    assert tables == [False]


# Integer frames: VPG's policy hands them to the sparse layers without SB3's float copy


class IntegerFramesEnv(OneHotEnv):
    """OneHotEnv's observation as int8 difference frames: -1 on the cell of the last step, +1 on the new one."""

    observation_space = spaces.Box(-1, 1, shape=(64,), dtype=np.int8)

    def _observe(self):
        previous = getattr(self, "cell", None)
        obs = super()._observe().astype(np.int8)
        if previous is not None and previous != self.cell:
            obs[previous] = -1
        return obs


@pytest.mark.parametrize("dtype", [th.int8, th.int16, th.bool, th.float32, th.uint8])
@pytest.mark.parametrize("columns", [64, 300, 6400])
def test_nonzero_entries_are_those_of_torch(dtype, columns):
    batch = sparse_batch(rows=16, columns=columns)
    batch = (batch != 0) if dtype is th.bool else (batch.abs() if dtype is th.uint8 else batch).to(dtype)
    for part in (batch, batch[3:11], batch[:, 1:]):  # a later start, a slice that is not contiguous
        expected = part.nonzero(as_tuple=True)
        assert all(th.equal(a, b) for a, b in zip(nonzero_entries(part), expected, strict=True))


def test_integer_frames_reach_the_sparse_layers_as_integers():
    model = VPG("MlpPolicy", IntegerFramesEnv(), n_steps=40, use_baseline=True, policy_kwargs=SPARSE, seed=0)
    assert model.policy.integer_features
    seen = []
    for layer in model.policy.modules():
        if isinstance(layer, SparseInputLinear):
            layer.register_forward_pre_hook(lambda module, args: seen.append(args[0].dtype))
    model.learn(80)  # rollouts, the policy step, the KL estimate, the critic passes
    obs = th.as_tensor(np.stack([IntegerFramesEnv().reset(seed=seed)[0] for seed in range(4)]))
    model.policy.predict_values(obs), model.policy.get_distribution(obs)
    assert len(seen) > 10 and set(seen) == {th.int8}


@pytest.mark.parametrize("use_baseline", [False, True], ids=["pure", "baseline"])
def test_integer_frames_train_the_same_model_as_their_float_copies(use_baseline):
    def trained(integer_features):
        model = VPG("MlpPolicy", IntegerFramesEnv(), n_steps=200, use_baseline=use_baseline, policy_kwargs=SPARSE, seed=1)
        model.policy.integer_features = integer_features
        return model.learn(600).policy.state_dict()

    integers, floats = trained(True), trained(False)
    assert all(th.equal(integers[name], floats[name]) for name in integers)  # the same sums, bit for bit


@pytest.mark.parametrize(
    ("space", "kwargs", "integers"),
    [
        (spaces.Box(-1, 1, (64,), np.int8), {}, True),
        (spaces.Box(-1.0, 1.0, (64,), np.float32), {}, False),  # nothing to skip
        (spaces.Box(0, 255, (1, 36, 36), np.uint8), {}, False),  # an image: SB3 divides it by 255
        (spaces.Box(0, 255, (1, 36, 36), np.uint8), {"normalize_images": False}, True),
        (spaces.Box(-1, 1, (64,), np.int8), {"net_arch": [], "use_sde": True}, False),  # gSDE reads the observation
    ],
    ids=["int8", "float32", "image", "image-not-normalized", "gsde-without-hidden-layer"],
)
def test_integer_frames_skip_only_a_float_copy(space, kwargs, integers):
    from sb3_vpg.vpg.policies import VPGPolicy

    action_space = spaces.Box(-1.0, 1.0, (2,)) if kwargs.get("use_sde") else spaces.Discrete(2)
    policy = VPGPolicy(space, action_space, lambda _: 1e-3, sparse_input=True, **kwargs)
    assert policy.integer_features is integers


# The same first layer for SB3's own algorithms: a features extractor per network

EXTRACTOR_NET = {
    "net_arch": {"pi": [], "vf": []},
    "share_features_extractor": False,
    "features_extractor_class": SparseInputExtractor,
    "features_extractor_kwargs": {"features_dim": 20},
}


def test_sb3_ppo_with_the_extractor_computes_the_dense_networks_function():
    sparse = PPO("MlpPolicy", OneHotEnv(), policy_kwargs=EXTRACTOR_NET, seed=0).policy
    dense = PPO("MlpPolicy", OneHotEnv(), policy_kwargs={"net_arch": {"pi": [20], "vf": [20]}}, seed=1).policy
    assert isinstance(sparse.pi_features_extractor.linear, SparseInputLinear)
    # The dense policy's hidden layers take the extractors' parameters, its output layers the sparse policy's
    dense.mlp_extractor.policy_net[0].load_state_dict(sparse.pi_features_extractor.linear.state_dict())
    dense.mlp_extractor.value_net[0].load_state_dict(sparse.vf_features_extractor.linear.state_dict())
    dense.action_net.load_state_dict(sparse.action_net.state_dict())
    dense.value_net.load_state_dict(sparse.value_net.state_dict())
    observations, actions = sparse_batch(rows=16, columns=64), th.randint(0, 2, (16,))
    assert nonzero_entries(observations)[0].numel() < MAX_DENSITY * observations.numel()  # the sparse path runs
    outputs = [policy.evaluate_actions(observations, actions) for policy in (sparse, dense)]
    for sparse_output, dense_output in zip(*outputs, strict=True):
        assert th.allclose(sparse_output, dense_output, atol=1e-6)
    sum(output.sum() for output in outputs[0]).backward()
    sum(output.sum() for output in outputs[1]).backward()
    gradients = sparse.pi_features_extractor.linear.weight.grad, dense.mlp_extractor.policy_net[0].weight.grad
    assert th.allclose(*gradients, atol=1e-6)


def test_sb3_initializes_the_extractor_as_a_hidden_layer():
    # SB3's orthogonal initialization with the hidden layers' gain sqrt(2): the weight's rows are orthogonal, of
    # squared norm 2, and the bias is zero
    policy = A2C("MlpPolicy", OneHotEnv(), policy_kwargs=EXTRACTOR_NET, seed=0).policy
    for extractor in (policy.pi_features_extractor, policy.vf_features_extractor):
        weight = extractor.linear.weight.detach()
        assert th.allclose(weight @ weight.T, 2 * th.eye(20), atol=1e-5) and not extractor.linear.bias.any()
    optimized = {id(parameter) for group in policy.optimizer.param_groups for parameter in group["params"]}
    assert id(policy.vf_features_extractor.linear.weight) in optimized
