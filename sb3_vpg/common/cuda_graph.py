"""
The policy's rollout forward pass replayed as one CUDA graph (``policy_kwargs=dict(cuda_graph=True)``).

At each rollout step SB3 runs ``policy(obs)`` on ``n_envs`` observations without gradient: for a small network
the GPU finishes each of its dozens of kernels long before Python has launched the next, so the step costs the
launches, not the arithmetic. Captured once as a CUDA graph, the pass (features, logits, sampling,
log-probabilities, values) is one launch (its effect on throughput: ``benchmarks/RESULTS.md``).

The graph reads the parameters where they are: the optimizer updates them in place, so every replay uses the
current weights. It is captured again whenever something it was captured with changes: a parameter's storage
(``module.to``, a parameter assigned anew), the observations' shapes, dtypes or device, or the training mode.
Sampling in the graph draws from torch's CUDA generator as the eager pass does, with other random numbers.
"""

from collections.abc import Callable
from typing import Any

import torch as th

Outputs = tuple[th.Tensor, ...]


def _tensors(obs: th.Tensor | dict[str, th.Tensor]) -> list[th.Tensor]:
    return list(obs.values()) if isinstance(obs, dict) else [obs]


class GraphedForward:
    """
    ``function(obs)`` replayed from one captured CUDA graph, ``obs`` being a tensor or a dict of tensors on a
    CUDA device. The replay copies ``obs`` into the graph's input, replays it and returns copies of its outputs
    (the next replay overwrites the graph's own).

    :param function: the pass to capture; it must make no host synchronization (``.item()``, ``.cpu()``) and
        read no tensors that are replaced, rather than updated in place, between calls
    :param parameters: the tensors it reads that are not inputs (a module's parameters): a change of their storage
        means a new capture
    """

    def __init__(self, function: Callable[[Any], Outputs], parameters: Callable[[], list[th.Tensor]]) -> None:
        self.function = function
        self.parameters = parameters
        self.graph: th.cuda.CUDAGraph | None = None
        self.key: tuple | None = None
        self.static_obs: Any = None
        self.device: th.device | None = None
        self.static_outputs: Outputs = ()

    @staticmethod
    def applies(obs: Any) -> bool:
        """Whether ``obs`` can be an input: a tensor or a (non-empty) dict of tensors, all on a CUDA device."""
        tensors = _tensors(obs) if isinstance(obs, th.Tensor | dict) else []
        return len(tensors) > 0 and all(isinstance(t, th.Tensor) and t.is_cuda for t in tensors)

    def __call__(self, obs: th.Tensor | dict[str, th.Tensor], *context: Any) -> Outputs:
        """Replay the graph on ``obs``; ``context``: anything else that, when it changes, needs a new capture."""
        key = (
            tuple((t.shape, t.dtype, t.device) for t in _tensors(obs)),
            tuple(p.data_ptr() for p in self.parameters()),
            context,
        )
        if key != self.key:
            self._capture(obs)
            self.key = key
        for static, tensor in zip(_tensors(self.static_obs), _tensors(obs), strict=True):
            static.copy_(tensor)
        with th.cuda.device(self.device):  # replayed on the current stream of the graph's device
            self.graph.replay()  # type: ignore[union-attr]
        return tuple(output.clone() for output in self.static_outputs)

    def _capture(self, obs: th.Tensor | dict[str, th.Tensor]) -> None:
        self.graph, self.static_outputs = None, ()  # frees the last graph's memory first
        self.static_obs = {k: v.clone() for k, v in obs.items()} if isinstance(obs, dict) else obs.clone()
        self.device = device = _tensors(obs)[0].device
        try:
            with th.cuda.device(device):  # the observations' device, whichever is current
                side = th.cuda.Stream()
                side.wait_stream(th.cuda.current_stream())
                with th.cuda.stream(side):  # warm-up outside the graph (cuDNN's choices, the allocator), as torch asks
                    for _ in range(3):
                        self.function(self.static_obs)
                th.cuda.current_stream().wait_stream(side)
                graph = th.cuda.CUDAGraph()
                with th.cuda.graph(graph):
                    self.static_outputs = self.function(self.static_obs)
        except RuntimeError as error:
            raise RuntimeError(
                "cuda_graph=True: the policy's forward pass could not be captured as a CUDA graph (it must not "
                "synchronize with the host); use policy_kwargs=dict(cuda_graph=False)"
            ) from error
        self.graph = graph
