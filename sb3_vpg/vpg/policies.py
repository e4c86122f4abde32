"""
SB3's actor-critic policies, with a switch that skips the critic where nothing uses it.

Pure REINFORCE (``use_baseline=False``) never reads ``V``: VPG turns ``use_critic`` off, so rollout collection
runs the actor alone, and SB3's value lookups (truncation bootstrap, last step) get zeros, made on the CPU where
SB3 copies them anyway (no device work, no synchronization). With a baseline the policies behave exactly as SB3's.

The action distributions are built without torch's argument validation, which costs tens of microseconds per
rollout step on CPU and a device synchronization on GPU; VPG's own checks (``sb3_vpg.common.checks``) stop
non-finite observations, rewards, parameters and log-probabilities with a clearer error instead.
"""

from collections.abc import Iterator
from contextlib import contextmanager

import torch as th
from stable_baselines3.common.distributions import Distribution
from stable_baselines3.common.policies import ActorCriticCnnPolicy, ActorCriticPolicy, MultiInputActorCriticPolicy
from stable_baselines3.common.type_aliases import PyTorchObs


@contextmanager
def torch_validation_off() -> Iterator[None]:
    """Build ``torch.distributions`` objects without argument validation inside the block (restored after)."""
    previous = th.distributions.Distribution._validate_args
    th.distributions.Distribution.set_default_validate_args(False)
    try:
        yield
    finally:
        th.distributions.Distribution.set_default_validate_args(previous)


def unvalidated(distribution: Distribution) -> Distribution:
    """Build-time validation is off (see :func:`torch_validation_off`); this turns off that of ``log_prob`` too."""
    inner = distribution.distribution
    for torch_distribution in inner if isinstance(inner, list) else [inner]:
        torch_distribution._validate_args = False
    return distribution


class _SwitchableCritic:
    """
    Mixin over an ``ActorCriticPolicy`` class: ``use_critic=False`` makes ``forward`` and ``predict_values`` skip
    the critic; action distributions skip torch's argument validation.
    """

    use_critic: bool = True

    def _get_action_dist_from_latent(self, latent_pi: th.Tensor) -> Distribution:
        # Overridden only to build the distribution without validation (a device sync per step on GPU).
        with torch_validation_off():
            return unvalidated(super()._get_action_dist_from_latent(latent_pi))  # type: ignore[misc]

    def forward(self, obs: th.Tensor, deterministic: bool = False) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
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


class VPGPolicy(_SwitchableCritic, ActorCriticPolicy):
    __doc__ = "SB3's ``ActorCriticPolicy`` (MLP) whose critic VPG skips in pure REINFORCE.\n\n" + (
        ActorCriticPolicy.__doc__ or ""
    )


class VPGCnnPolicy(_SwitchableCritic, ActorCriticCnnPolicy):
    __doc__ = "SB3's ``ActorCriticCnnPolicy`` whose critic VPG skips in pure REINFORCE.\n\n" + (
        ActorCriticCnnPolicy.__doc__ or ""
    )


class VPGMultiInputPolicy(_SwitchableCritic, MultiInputActorCriticPolicy):
    __doc__ = "SB3's ``MultiInputActorCriticPolicy`` whose critic VPG skips in pure REINFORCE.\n\n" + (
        MultiInputActorCriticPolicy.__doc__ or ""
    )


MlpPolicy = VPGPolicy
CnnPolicy = VPGCnnPolicy
MultiInputPolicy = VPGMultiInputPolicy
