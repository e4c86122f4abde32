"""
Speed work for networks whose input is mostly zeros, with the same layer and the same parameters.

The source's Pong frames are differences of consecutive binarized frames: of their 6400 values, only the pixels
where the ball or a paddle moved are not zero (about 30 on average). A dense first layer reads its whole weight
matrix (6400 x 200 floats, 5 MB) for every observation; :class:`SparseInputLinear` sums only the weight columns of
the inputs that are not zero (``F.embedding_bag`` over the non-zero entries, weighted by their values), which is
``x @ W.T + b`` summed in another order. Its backward pass fills only those columns of the weight's gradient.
Integer frames (int8) are read as they are: VPG's policy hands them over without SB3's float copy of the whole
batch, and :func:`nonzero_entries` finds their non-zero entries eight bytes at a time.

:func:`sparse_linear` makes one from an ``nn.Linear`` with that layer's own ``Parameter`` objects, so that the
optimizer, the state dict and saved models see the same weights under the same names; VPG's policies swap it in for
the layers that read the observation with ``policy_kwargs=dict(sparse_input=True)``. Other SB3 algorithms (A2C, PPO)
get the same first layer as a features extractor, :class:`SparseInputExtractor`.
"""

import gymnasium as gym
import torch as th
import torch.nn.functional as F
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn

#: Above this fraction of non-zero inputs a batch goes through the dense product (which is then faster).
MAX_DENSITY = 0.1


class SparseInputLinear(nn.Linear):
    """
    ``nn.Linear`` that skips the zero entries of a 2-D input on the CPU (see the module docstring); batches denser than
    :data:`MAX_DENSITY`, other shapes and other devices take the dense product (``torch.nonzero`` would synchronize a
    GPU, where the dense product is cheap anyway).
    """

    #: From this many non-zero entries per input feature on, the sum runs over a contiguous copy of the transposed
    #: weight (one copy of the weight costs about as much as reading a quarter of its columns one by one)
    contiguous_from: float = 0.25

    def forward(self, input: th.Tensor) -> th.Tensor:  # nn.Linear's argument name
        if input.dim() != 2 or input.device.type != "cpu" or input.shape[0] == 0:
            return super().forward(input.to(self.weight.dtype))
        rows, columns = nonzero_entries(input)
        if rows.numel() > MAX_DENSITY * input.numel():
            return super().forward(input.to(self.weight.dtype))
        # Row i's non-zero entries are rows.searchsorted(i) onwards: they are listed row by row
        offsets = th.searchsorted(rows, th.arange(input.shape[0], device=rows.device))
        table = self.weight.t()
        if columns.numel() > self.in_features * self.contiguous_from:
            # The table's rows are the weight's columns, read at a stride of in_features floats: for many entries
            # (a training batch) one contiguous copy of the table costs less than those scattered reads, same sums
            table = table.contiguous()
        values = input[rows, columns].to(self.weight.dtype)  # integer observations arrive as they are (VPG's policy)
        output = F.embedding_bag(columns, table, offsets, mode="sum", per_sample_weights=values)
        return output if self.bias is None else output + self.bias


class SparseInputExtractor(BaseFeaturesExtractor):
    """
    The first hidden layer of an MLP on mostly-zero observations, as a features extractor for any SB3 policy:
    ``activation_fn(x @ W.T + b)`` over the flattened observation, through :class:`SparseInputLinear`. With
    ``share_features_extractor=False`` and ``net_arch=dict(pi=[], vf=[])`` an ``ActorCriticPolicy`` computes the
    function of ``net_arch=dict(pi=[features_dim], vf=[features_dim])`` (SB3's orthogonal initialization gives the
    extractors the hidden layers' gain), so that SB3's A2C and PPO train the network VPG's ``sparse_input=True``
    trains, at its speed; the parameters are drawn in another order, so one seed gives other initial values.

    :param observation_space: the observation space (flattened)
    :param features_dim: the number of hidden units
    :param activation_fn: the activation after the layer (SB3's ``ActorCriticPolicy`` default)
    """

    def __init__(self, observation_space: gym.Space, features_dim: int = 64, activation_fn: type[nn.Module] = nn.Tanh):
        super().__init__(observation_space, features_dim)
        self.linear = SparseInputLinear(gym.spaces.flatdim(observation_space), features_dim)
        self.activation = activation_fn()

    def forward(self, observations: th.Tensor) -> th.Tensor:
        return self.activation(self.linear(observations.flatten(1)))


def nonzero_entries(input: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
    """
    The rows and columns of a 2-D tensor's non-zero entries, row by row, as ``input.nonzero(as_tuple=True)`` lists
    them. The entries of one or two bytes (int8 frames) are looked for 8 bytes at a time first: ``nonzero`` costs per
    element, and a mostly-zero batch has few non-zero words.
    """
    if input.dim() != 2 or input.element_size() > 2 or not input.is_contiguous() or input.shape[1] * input.element_size() % 8:
        return input.nonzero(as_tuple=True)
    per_word = 8 // input.element_size()
    try:
        word_view = input.view(th.int64)
    except RuntimeError:  # a start that is not on an 8-byte boundary
        return input.nonzero(as_tuple=True)
    word_rows, words = word_view.nonzero(as_tuple=True)
    hits, lanes = input.view(input.shape[0], -1, per_word)[word_rows, words].nonzero(as_tuple=True)
    return word_rows[hits], words[hits] * per_word + lanes


def sparse_linear(linear: nn.Linear) -> SparseInputLinear:
    """A :class:`SparseInputLinear` holding ``linear``'s own ``weight`` and ``bias`` parameters (not copies)."""
    if type(linear) is not nn.Linear:
        raise TypeError(f"sparse_linear takes an nn.Linear, got {type(linear).__name__}")
    layer = SparseInputLinear(linear.in_features, linear.out_features, bias=linear.bias is not None, device="meta")
    layer.weight = linear.weight
    layer.bias = linear.bias
    return layer


__all__ = ["MAX_DENSITY", "SparseInputExtractor", "SparseInputLinear", "nonzero_entries", "sparse_linear"]
