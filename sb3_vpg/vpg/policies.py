"""
SB3's actor-critic policies, with a switch that skips the critic where nothing uses it.

Pure REINFORCE (``use_baseline=False``) never reads ``V``: VPG turns ``use_critic`` off, so rollout collection
runs the actor alone, and SB3's value lookups (truncation bootstrap, last step) get zeros, made on the CPU where
SB3 copies them anyway (no device work, no synchronization). With a baseline the policies behave exactly as SB3's.
"""

import torch as th
from stable_baselines3.common.policies import ActorCriticCnnPolicy, ActorCriticPolicy, MultiInputActorCriticPolicy
from stable_baselines3.common.type_aliases import PyTorchObs


class _SwitchableCritic:
    """Mixin over an ``ActorCriticPolicy`` class: ``use_critic=False`` makes ``forward`` and ``predict_values`` skip the critic."""

    use_critic: bool = True

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
