"""
Speed work for networks whose input is mostly zeros, with the same layer and the same parameters.

The source's Pong frames are differences of consecutive binarized frames: of their 6400 values, only the pixels
where the ball or a paddle moved are not zero (about 30 on average). A dense first layer reads its whole weight
matrix (6400 x 200 floats, 5 MB) for every observation; :class:`SparseInputLinear` sums only the weight columns of
the inputs that are not zero (``F.embedding_bag`` over the non-zero entries, weighted by their values), which is
``x @ W.T + b`` summed in another order. Its backward pass fills only those columns of the weight's gradient.

:func:`sparse_linear` makes one from an ``nn.Linear`` with that layer's own ``Parameter`` objects, so that the
optimizer, the state dict and saved models see the same weights under the same names; VPG's policies swap it in for
the layers that read the observation with ``policy_kwargs=dict(sparse_input=True)``.
"""

import torch as th
import torch.nn.functional as F
from torch import nn

#: Above this fraction of non-zero inputs a batch goes through the dense product (which is then faster).
MAX_DENSITY = 0.1


class SparseInputLinear(nn.Linear):
    """
    ``nn.Linear`` that skips the zero entries of a 2-D input on the CPU (see the module docstring); batches denser than
    :data:`MAX_DENSITY`, other shapes and other devices take the dense product (``torch.nonzero`` would synchronize a
    GPU, where the dense product is cheap anyway).
    """

    def forward(self, input: th.Tensor) -> th.Tensor:  # nn.Linear's argument name
        if input.dim() != 2 or input.device.type != "cpu" or input.shape[0] == 0:
            return super().forward(input)
        rows, columns = input.nonzero(as_tuple=True)
        if rows.numel() > MAX_DENSITY * input.numel():
            return super().forward(input)
        # Row i's non-zero entries are rows.searchsorted(i) onwards: nonzero() lists them row by row
        offsets = th.searchsorted(rows, th.arange(input.shape[0], device=rows.device))
        output = F.embedding_bag(columns, self.weight.t(), offsets, mode="sum", per_sample_weights=input[rows, columns])
        return output if self.bias is None else output + self.bias


def sparse_linear(linear: nn.Linear) -> SparseInputLinear:
    """A :class:`SparseInputLinear` holding ``linear``'s own ``weight`` and ``bias`` parameters (not copies)."""
    if type(linear) is not nn.Linear:
        raise TypeError(f"sparse_linear takes an nn.Linear, got {type(linear).__name__}")
    layer = SparseInputLinear(linear.in_features, linear.out_features, bias=linear.bias is not None, device="meta")
    layer.weight = linear.weight
    layer.bias = linear.bias
    return layer


__all__ = ["MAX_DENSITY", "SparseInputLinear", "sparse_linear"]
