"""
VPG's policies: SB3's actor-critic policies, with a switch that skips the critic where nothing uses it.

Pure REINFORCE (``use_baseline=False``) never reads ``V``: VPG turns ``use_critic`` off, so rollout collection
runs the actor alone, and SB3's value lookups (truncation bootstrap, last step) get zeros, made on the CPU where
SB3 copies them anyway (no device work, no synchronization). With a baseline the policies behave exactly as SB3's.

They also carry the speed work on the rollout's forward pass, with the same distributions and SB3's
log-probabilities and entropies: action distributions built without torch's argument validation, Discrete and
MultiDiscrete actions drawn by the Gumbel-max trick (``policy_kwargs=dict(categorical_sampler="multinomial")``
restores SB3's sampler), both in :mod:`sb3_vpg.common.fast_distributions`; on a CUDA device, with
``policy_kwargs=dict(cuda_graph=True)``, the forward pass replayed as one CUDA graph (:mod:`sb3_vpg.common.cuda_graph`);
with ``policy_kwargs=dict(sparse_input=True)``, the layers that read a mostly-zero observation (the source's Pong
difference frames) summing only its non-zero entries (:mod:`sb3_vpg.common.sparse_input`).
"""

from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.distributions import Distribution
from stable_baselines3.common.policies import ActorCriticCnnPolicy, ActorCriticPolicy, BaseModel, MultiInputActorCriticPolicy
from stable_baselines3.common.preprocessing import is_image_space
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor, FlattenExtractor
from stable_baselines3.common.type_aliases import PyTorchObs, Schedule

from sb3_vpg.common.cuda_graph import GraphedForward
from sb3_vpg.common.fast_distributions import CATEGORICAL_SAMPLERS, gumbel_sampled, torch_validation_off, unvalidated
from sb3_vpg.common.sparse_input import sparse_linear


class _SwitchableCritic:
    """
    Mixin over an ``ActorCriticPolicy`` class: ``use_critic=False`` makes ``forward`` and ``predict_values`` skip
    the critic; action distributions skip torch's argument validation; categorical actions are drawn by the
    Gumbel-max trick unless ``categorical_sampler="multinomial"``; ``cuda_graph=True`` replays the rollout forward
    pass as a CUDA graph; ``sparse_input=True`` makes the layers that read the observation skip its zeros.
    """

    use_critic: bool = True
    _graphed: GraphedForward | None = None

    def __init__(
        self,
        *args: Any,
        categorical_sampler: str = "gumbel",
        cuda_graph: bool = False,
        sparse_input: bool = False,
        **kwargs: Any,
    ) -> None:
        if categorical_sampler not in CATEGORICAL_SAMPLERS:
            raise ValueError(f"categorical_sampler must be one of {CATEGORICAL_SAMPLERS}, got {categorical_sampler!r}")
        for name, value in (("cuda_graph", cuda_graph), ("sparse_input", sparse_input)):
            if not isinstance(value, bool):
                raise TypeError(f"{name} must be a bool, got {value!r} ({type(value).__name__})")
        self.categorical_sampler = categorical_sampler
        self.cuda_graph = cuda_graph
        self.sparse_input = sparse_input
        super().__init__(*args, **kwargs)

    def _build(self, lr_schedule: Schedule) -> None:
        # Overridden to swap in the Gumbel-max sampler before SB3 builds the networks (which it does not change), and
        # the sparse-input layers after SB3 has built and initialized them (same parameters, so the same model)
        if self.categorical_sampler == "gumbel":
            self.action_dist = gumbel_sampled(self.action_dist)  # type: ignore[has-type]
        super()._build(lr_schedule)  # type: ignore[misc]
        if self.sparse_input:
            self._sparsify_input_layers()
            self.integer_features = self._reads_integer_features()

    def _sparsify_input_layers(self) -> None:
        """The layers that read the flattened observation become ``SparseInputLinear``: the first layer of the actor's
        and of the critic's MLP, or the action and value layers where an MLP has no hidden layer."""
        extractors = [
            getattr(self, name, None) for name in ("features_extractor", "pi_features_extractor", "vf_features_extractor")
        ]
        if not all(isinstance(extractor, FlattenExtractor) for extractor in extractors if extractor is not None):
            raise ValueError(
                "sparse_input=True needs observations that reach the MLP as they are (MlpPolicy on a Box space, "
                "SB3's FlattenExtractor)"
            )
        mlp = self.mlp_extractor  # type: ignore[attr-defined]
        for hidden, output in ((mlp.policy_net, "action_net"), (mlp.value_net, "value_net")):
            if len(hidden) > 0:
                hidden[0] = sparse_linear(hidden[0])
            elif type(getattr(self, output)) is th.nn.Linear:
                setattr(self, output, sparse_linear(getattr(self, output)))

    def _reads_integer_features(self) -> bool:
        """
        Whether integer observations can reach the sparse layers as they are: SB3's preprocessing of the space is
        ``.float()`` alone (a Box, not an image to divide by 255) and only sparse layers read the flattened
        observation (gSDE reads it too where the actor has no hidden layer).
        """
        space = self.observation_space  # type: ignore[attr-defined]
        return (
            isinstance(space, spaces.Box)
            and not np.issubdtype(space.dtype, np.floating)
            and not (self.normalize_images and is_image_space(space))  # type: ignore[attr-defined]
            and not (self.use_sde and len(self.mlp_extractor.policy_net) == 0)  # type: ignore[attr-defined]
        )

    def _get_constructor_parameters(self) -> dict[str, Any]:
        # Overridden to save the sampler, the CUDA graph switch and the sparse-input switch with the model
        return {
            **super()._get_constructor_parameters(),  # type: ignore[misc]
            "categorical_sampler": self.categorical_sampler,
            "cuda_graph": self.cuda_graph,
            "sparse_input": self.sparse_input,
        }

    def __getstate__(self) -> dict[str, Any]:
        # Overridden so that copies and pickles leave the captured graph behind (the copy captures its own)
        return {**super().__getstate__(), "_graphed": None}  # type: ignore[misc]

    def _get_action_dist_from_latent(self, latent_pi: th.Tensor) -> Distribution:
        # Overridden only to build the distribution without validation (a device sync per step on GPU).
        with torch_validation_off():
            return unvalidated(super()._get_action_dist_from_latent(latent_pi))  # type: ignore[misc]

    def forward(self, obs: th.Tensor, deterministic: bool = False) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
        # The rollout's pass (sampled actions, no gradient) is replayed from a CUDA graph with cuda_graph=True;
        # gSDE is not: its exploration matrices are new tensors after each resampling
        if (
            self.cuda_graph
            and not deterministic
            and not th.is_grad_enabled()
            and not self.use_sde  # type: ignore[attr-defined]
            and GraphedForward.applies(obs)
        ):
            if self._graphed is None:
                self._graphed = GraphedForward(self._forward, lambda: [*self.parameters(), *self.buffers()])  # type: ignore[attr-defined]
            return self._graphed(obs, self.training, self.use_critic)  # type: ignore[attr-defined,return-value]
        return self._forward(obs, deterministic)

    def _forward(self, obs: th.Tensor, deterministic: bool = False) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
        if self.use_critic:
            return super().forward(obs, deterministic)  # type: ignore[misc]
        distribution = self.get_distribution(obs)  # type: ignore[attr-defined]
        actions = distribution.get_actions(deterministic=deterministic)
        log_prob = distribution.log_prob(actions)
        values = th.zeros((len(log_prob), 1))
        return actions.reshape((-1, *self.action_space.shape)), values, log_prob  # type: ignore[attr-defined]

    def predict_values(self, obs: PyTorchObs) -> th.Tensor:
        if self.use_critic:
            return super().predict_values(obs)  # type: ignore[misc]
        first = next(iter(obs.values())) if isinstance(obs, dict) else obs
        return th.zeros((len(first), 1))


class _IntegerFeatures(BaseModel):
    """
    With ``sparse_input=True`` and integer observations, the observations reach the sparse layers as integers:
    SB3's preprocessing would copy a whole batch to float32 (``.float()``, all it does for such a space), which
    costs more than the sparse layers' own work on a training batch; they read the few non-zero entries as floats.

    A ``BaseModel`` subclass listed after ``ActorCriticPolicy``, so that it comes between ``BasePolicy`` and
    ``BaseModel`` in the method order and every feature extraction goes through it, SB3's own ``super()`` calls
    (``get_distribution``, ``predict_values``) included.
    """

    integer_features: bool = False

    def extract_features(self, obs: PyTorchObs, features_extractor: BaseFeaturesExtractor) -> th.Tensor:
        # Overridden to skip the float copy of integer observations that only sparse layers read (class docstring)
        if self.integer_features and isinstance(obs, th.Tensor) and not obs.is_floating_point():
            return features_extractor(obs)
        return super().extract_features(obs, features_extractor)


_POLICY_PARAMS = """:param categorical_sampler: How Discrete and MultiDiscrete actions are drawn: ``"gumbel"`` (default,
    the Gumbel-max trick) or ``"multinomial"`` (torch's ``Categorical.sample``, as SB3's policies do). Both draw from
    the same distribution, but from different random numbers: the same seed gives other actions with each sampler
:param cuda_graph: On a CUDA device, replay the rollout's forward pass (``n_envs`` observations, sampled actions,
    no gradient) as one captured CUDA graph instead of launching its kernels one by one: the same distribution
    and the same weights, other random numbers; no effect on CPU, with gSDE or for ``predict``. Default False
:param sparse_input: The layers that read the observation sum only the weights of its non-zero entries on the CPU
    (:class:`~sb3_vpg.common.sparse_input.SparseInputLinear`): the same layers and parameters, faster when most
    inputs are zero (the source's Pong difference frames). MlpPolicy only. Default False

SB3's documentation of the other parameters:
"""


class VPGPolicy(_SwitchableCritic, ActorCriticPolicy, _IntegerFeatures):
    __doc__ = (
        "SB3's ``ActorCriticPolicy`` (MLP) whose critic VPG skips in pure REINFORCE.\n\n"
        + _POLICY_PARAMS
        + (ActorCriticPolicy.__doc__ or "")
    )


class VPGCnnPolicy(_SwitchableCritic, ActorCriticCnnPolicy):
    __doc__ = (
        "SB3's ``ActorCriticCnnPolicy`` whose critic VPG skips in pure REINFORCE.\n\n"
        + _POLICY_PARAMS
        + (ActorCriticCnnPolicy.__doc__ or "")
    )


class VPGMultiInputPolicy(_SwitchableCritic, MultiInputActorCriticPolicy):
    __doc__ = (
        "SB3's ``MultiInputActorCriticPolicy`` whose critic VPG skips in pure REINFORCE.\n\n"
        + _POLICY_PARAMS
        + (MultiInputActorCriticPolicy.__doc__ or "")
    )


MlpPolicy = VPGPolicy
CnnPolicy = VPGCnnPolicy
MultiInputPolicy = VPGMultiInputPolicy
