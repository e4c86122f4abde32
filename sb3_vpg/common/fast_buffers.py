"""
Speed work on SB3's rollout buffers that leaves what they hold as it would be without it.

- The observation arrays are allocated once and written again by every rollout: SB3 allocates new ones for each
  rollout, and the first write to each page of a new allocation faults. Copy ``observations`` to keep a rollout's
  observations past its update.
- Each step's observation is copied into the buffer while the envs step (:class:`VecStageObservations` calls
  :meth:`FastRolloutBufferMixin.stage_observation` between ``step_async`` and ``step_wait``), instead of after the
  step in ``add``; with a ``SubprocVecEnv`` the copy overlaps the workers' steps. ``add`` then writes only the small
  arrays, without SB3's intermediate copies.
- Batches are handed to torch without a copy on CPU.
"""

from typing import Any

import numpy as np
import torch as th
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper
from stable_baselines3.common.vec_env.base_vec_env import VecEnvObs, VecEnvStepReturn


class FastRolloutBufferMixin:
    """
    Mixin over SB3's ``RolloutBuffer`` or ``DictRolloutBuffer`` (see the module docstring): observation arrays reused
    from one rollout to the next, observations staged during the env step, batches handed to torch without a copy.
    """

    # Attributes the SB3 buffers define, declared for type checkers.
    pos: int
    buffer_size: int
    full: bool
    actions: np.ndarray
    rewards: np.ndarray
    episode_starts: np.ndarray
    values: np.ndarray
    log_probs: np.ndarray
    observations: Any

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._observation_storage: Any = None  # the observation arrays, kept from one rollout to the next
        self._staged: Any = None  # the observation stage_observation() copied into row pos (add() clears it)
        super().__init__(*args, **kwargs)

    def reset(self) -> None:
        self._staged = None
        super().reset()  # type: ignore[misc]
        # Every slot of the first rollout's arrays is written again before get() reads it
        if self._observation_storage is None:
            self._observation_storage = self.observations
        else:
            self.observations = self._observation_storage

    def stage_observation(self, obs: Any) -> None:
        """
        Copy the observation of the step being collected into row ``pos`` ahead of :meth:`add`, which then skips it.

        :param obs: the observation the step's actions were chosen from (flat array or dict of arrays)
        """
        if isinstance(self.observations, dict):
            for key, array in self.observations.items():
                array[self.pos] = np.reshape(obs[key], array.shape[1:])
        else:
            # reshape: Discrete observations come as (n_envs,) for rows of (n_envs, 1), as in SB3's add()
            self.observations[self.pos] = np.reshape(obs, self.observations.shape[1:])
        self._staged = obs

    def add(  # type: ignore[override]
        self,
        obs: Any,
        action: np.ndarray,
        reward: np.ndarray,
        episode_start: np.ndarray,
        value: th.Tensor,
        log_prob: th.Tensor,
    ) -> None:
        # Overridden to skip the observation staged for this row, and SB3's np.array/clone copies; the same rows result.
        # Any other observation than the staged one is copied: staging never changes what the buffer holds.
        if obs is not self._staged:
            self.stage_observation(obs)
        self._staged = None
        self.actions[self.pos] = action.reshape(self.actions.shape[1:])
        self.rewards[self.pos] = reward
        self.episode_starts[self.pos] = episode_start
        self.values[self.pos] = value.cpu().numpy().reshape(-1)
        self.log_probs[self.pos] = log_prob.cpu().numpy().reshape(-1)
        self.pos += 1
        if self.pos == self.buffer_size:
            self.full = True

    def to_torch(self, array: np.ndarray, copy: bool = True) -> th.Tensor:
        # Overridden never to copy on CPU: nothing writes to a complete rollout's arrays before the next rollout (the
        # update uses its batches only within train()), and every other array handed here is already a fresh copy
        return super().to_torch(array, copy=False)  # type: ignore[misc]


class VecStageObservations(VecEnvWrapper):
    """
    The training env during one rollout: once the actions are sent (``step_async``), the observation they were chosen
    from goes into the rollout buffer (:meth:`FastRolloutBufferMixin.stage_observation`) while the envs step.

    :param venv: the training env; its ``step`` must be ``VecEnv.step`` (``step_async`` then ``step_wait``)
    :param rollout_buffer: the buffer the rollout fills
    :param observations: the observation the first step's actions are chosen from (the algorithm's ``_last_obs``);
        each later step's actions are chosen from the observation the previous step returned
    """

    def __init__(self, venv: VecEnv, rollout_buffer: FastRolloutBufferMixin, observations: VecEnvObs) -> None:
        super().__init__(venv)
        self.rollout_buffer = rollout_buffer
        self.observations = observations

    def step_async(self, actions: np.ndarray) -> None:
        self.venv.step_async(actions)
        self.rollout_buffer.stage_observation(self.observations)

    def step_wait(self) -> VecEnvStepReturn:
        observations, rewards, dones, infos = self.venv.step_wait()
        self.observations = observations
        return observations, rewards, dones, infos

    def reset(self) -> VecEnvObs:
        self.observations = self.venv.reset()
        return self.observations


def stage_observations(venv: VecEnv, rollout_buffer: Any, observations: VecEnvObs) -> VecEnv:
    """
    ``venv`` wrapped in :class:`VecStageObservations` for one rollout into ``rollout_buffer``; ``venv`` itself when the
    buffer cannot stage, or when ``venv`` has a ``step`` of its own, which may do more than the ``step_async`` and
    ``step_wait`` that staging calls (such an env is stepped by its ``step``, and ``add`` copies the observations).
    """
    if type(venv).step is VecEnv.step and isinstance(rollout_buffer, FastRolloutBufferMixin):
        return VecStageObservations(venv, rollout_buffer, observations)
    return venv
