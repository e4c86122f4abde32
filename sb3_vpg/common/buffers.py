"""
Rollout buffers that hold Monte-Carlo (reward-to-go) returns instead of GAE estimates.

SB3's ``collect_rollouts`` rewrites the reward of a time-limit truncation as ``r + gamma * V(s_T)`` before
it reaches the buffer, and hands the buffer ``V`` of the observation after the last step. Pure REINFORCE must
use neither, so the buffer also keeps the raw rewards and the episode ends of every step
(:meth:`MonteCarloBufferMixin.record_step`, fed by the algorithm once per env step) and builds the returns
from those with :func:`discounted_reward_to_go`.
"""

from collections.abc import Generator
from typing import Any

import numpy as np
import torch as th
from stable_baselines3.common.buffers import DictRolloutBuffer, RolloutBuffer

#: How the samples of an episode still running at the end of the rollout are weighted.
#: ``"drop"``: they have no Monte-Carlo return and are left out of the loss and of the normalization.
#: ``"truncate"``: the rewards seen so far are their return, as if the episode had ended there (biased low).
#: ``"bootstrap"``: the return is completed with ``V`` of the next observation (needs the learned baseline).
INCOMPLETE_EPISODE_MODES = ("drop", "truncate", "bootstrap")


def check_incomplete_episodes(incomplete_episodes: str, use_baseline: bool) -> None:
    """Raise a ValueError unless ``incomplete_episodes`` is a known mode that the baseline setting allows."""
    if incomplete_episodes not in INCOMPLETE_EPISODE_MODES:
        raise ValueError(f"incomplete_episodes must be one of {INCOMPLETE_EPISODE_MODES}, got {incomplete_episodes!r}")
    if incomplete_episodes == "bootstrap" and not use_baseline:
        raise ValueError("incomplete_episodes='bootstrap' needs a learned value baseline: set use_baseline=True")


def discounted_reward_to_go(
    rewards: np.ndarray,
    episode_ends: np.ndarray,
    gamma: float,
    last_values: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """
    Discounted reward-to-go of every step of a rollout, for all envs at once.

    .. math::

        G_t = r_t + \\gamma (1 - e_t) G_{t+1}, \\qquad G_T = \\text{last\\_values}

    where :math:`e_t = 1` when the episode ended at step :math:`t` (termination, truncation, or any other
    boundary the caller counts, such as a non-zero reward in Pong). Samples after the last boundary of an
    env belong to an episode that the rollout did not see end: with ``last_values=None`` they have no
    return (``has_return`` is False and their ``returns`` entry is the partial sum); otherwise the sum is
    completed with ``last_values`` (zeros give the plain partial sum, ``V(s_T)`` gives a bootstrap).

    Reference: Williams (1992), "Simple statistical gradient-following algorithms for connectionist
    reinforcement learning"; Sutton & Barto (2018), section 13.3.

    :param rewards: rewards of shape ``(n_steps, n_envs)``
    :param episode_ends: whether the episode ended at that step, shape ``(n_steps, n_envs)``
    :param gamma: discount factor
    :param last_values: value of each env's state after the last step, shape ``(n_envs,)``, or None
    :return: ``(returns, has_return)``, both of shape ``(n_steps, n_envs)``
    """
    n_steps, n_envs = rewards.shape
    returns = np.zeros((n_steps, n_envs), dtype=np.float64)
    has_return = np.zeros((n_steps, n_envs), dtype=bool)
    next_return = np.zeros(n_envs) if last_values is None else np.asarray(last_values, dtype=np.float64)
    next_known = np.full(n_envs, last_values is not None)
    for step in reversed(range(n_steps)):
        ended = episode_ends[step].astype(bool)
        next_return = rewards[step] + gamma * np.where(ended, 0.0, next_return)
        next_known = ended | next_known
        returns[step] = next_return
        has_return[step] = next_known
    return returns, has_return


class MonteCarloBufferMixin:
    """
    What VPG adds to SB3's rollout buffers: raw rewards and episode ends per step, Monte-Carlo returns,
    and a mask of the samples that have a return. Only those samples are yielded by :meth:`get`.

    After :meth:`compute_returns_and_advantage`, ``returns`` holds the (un-normalized) returns, ``advantages``
    the un-normalized policy weights (``G`` or ``G - V``) and ``has_return`` the mask, each of shape
    ``(n_steps, n_envs)``, as SB3's buffers do before :meth:`get` flattens them.

    Unlike SB3's buffers, the observation arrays are allocated once and written again by every rollout (new ones
    page-fault on their first writes): copy ``observations`` to keep a rollout's observations past its update.
    VPG copies each step's observation into the buffer while the envs step (:meth:`stage_observation`), so
    :meth:`add` has only the small arrays left to write.

    :param use_baseline: weights are ``G - V(s)`` instead of ``G``; truncations bootstrap with ``V``
        (SB3's collection already added ``gamma * V(s_T)`` to their reward)
    :param reset_on_reward: a non-zero reward also ends the return (each point of Pong is a rally)
    :param incomplete_episodes: one of :data:`INCOMPLETE_EPISODE_MODES`
    """

    # Attributes the SB3 buffers define, declared for type checkers.
    buffer_size: int
    n_envs: int
    pos: int
    full: bool
    gamma: float
    generator_ready: bool
    actions: np.ndarray
    rewards: np.ndarray
    episode_starts: np.ndarray
    log_probs: np.ndarray
    returns: np.ndarray
    values: np.ndarray
    advantages: np.ndarray
    observations: Any

    def __init__(
        self,
        *args: Any,
        use_baseline: bool = False,
        reset_on_reward: bool = False,
        incomplete_episodes: str = "drop",
        **kwargs: Any,
    ) -> None:
        check_incomplete_episodes(incomplete_episodes, use_baseline)
        self.use_baseline = use_baseline
        self.reset_on_reward = reset_on_reward
        self.incomplete_episodes = incomplete_episodes
        self._observation_storage: Any = None  # the observation arrays, kept from one rollout to the next
        self._staged: Any = None  # the observation stage_observation() copied into row pos (add() clears it)
        super().__init__(*args, **kwargs)

    def reset(self) -> None:
        shape = (self.buffer_size, self.n_envs)
        self.raw_rewards = np.zeros(shape, dtype=np.float32)
        self.episode_ends = np.zeros(shape, dtype=bool)
        self.has_return = np.zeros(shape, dtype=bool)
        self._recorded_pos = 0
        self._staged = None
        super().reset()  # type: ignore[misc]
        # Keep the observation arrays of the first rollout for all the next ones. SB3 allocates new ones for every
        # rollout, and the first write to each page of a new allocation faults (about 0.8 ms per step for 16 Atari
        # frame stacks); every slot is written again before get() reads it.
        if self._observation_storage is None:
            self._observation_storage = self.observations
        else:
            self.observations = self._observation_storage

    def record_step(self, rewards: np.ndarray, dones: np.ndarray) -> None:
        """
        Keep the env's own rewards and episode ends of the step about to be added, before SB3 adds a
        value bootstrap to the rewards of truncated episodes.

        :param rewards: rewards returned by ``VecEnv.step``, shape ``(n_envs,)``
        :param dones: episode ends returned by ``VecEnv.step`` (termination, truncation, life loss)
        """
        self.raw_rewards[self.pos] = rewards
        self.episode_ends[self.pos] = dones
        self._recorded_pos = self.pos + 1

    def stage_observation(self, obs: Any) -> None:
        """
        Copy the observation of the step being collected into the buffer ahead of :meth:`add`, which then skips it.
        VPG calls this once the actions are sent to the envs (``step_async``), so the copy (a frame stack per env on
        Atari) runs while the envs step: a ``SubprocVecEnv``'s workers step in parallel with it.

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
        # Overridden to skip an observation staged during the env step (and SB3's np.array/clone copies); same rows
        if self._recorded_pos != self.pos + 1:
            raise RuntimeError(
                "Every step added to a Monte-Carlo rollout buffer must first be recorded with record_step(); "
                "collect rollouts through VPG.learn()"
            )
        if obs is not self._staged:  # pos moves only here and in reset(), which both clear _staged
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

    def compute_returns_and_advantage(self, last_values: th.Tensor, dones: np.ndarray) -> None:
        """
        Monte-Carlo returns of the whole rollout (see :func:`discounted_reward_to_go`).

        :param last_values: ``V`` of the observation after the last step (used only to bootstrap)
        :param dones: whether the last step ended an episode (already recorded by :meth:`record_step`)
        """
        ends = self.episode_ends | (self.raw_rewards != 0) if self.reset_on_reward else self.episode_ends
        # With a baseline, SB3's rewards carry gamma * V(s_T) on truncation, as Spinning Up's VPG does.
        rewards = self.rewards if self.use_baseline else self.raw_rewards
        tail = None
        if self.incomplete_episodes == "truncate":
            tail = np.zeros(self.n_envs)
        elif self.incomplete_episodes == "bootstrap":
            tail = last_values.clone().cpu().numpy().flatten()
        returns, self.has_return = discounted_reward_to_go(rewards, ends, self.gamma, tail)
        self.returns = returns.astype(np.float32)
        self.advantages = self.returns - self.values if self.use_baseline else self.returns.copy()

    def get(self, batch_size: int | None = None) -> Generator[Any, None, None]:
        """
        Yield the samples that have a return, step by step (VPG takes one gradient step per rollout,
        so there is nothing to shuffle), ``batch_size`` at a time (all at once when None).
        """
        assert self.full, "The rollout is not complete"
        if not self.generator_ready:
            # Flatten (n_steps, n_envs, ...) into (n_steps * n_envs, ...) in step-major order: a free view, where
            # SB3's swap_and_flatten copies into env-major order (for Atari, a copy of every frame of the rollout).
            # One gradient step on the sum over samples does not depend on their order.
            if isinstance(self.observations, dict):
                self.observations = {key: _flatten(obs) for key, obs in self.observations.items()}
            else:
                self.observations = _flatten(self.observations)
            for name in ("actions", "values", "log_probs", "advantages", "returns", "has_return"):
                setattr(self, name, _flatten(getattr(self, name)))
            self.generator_ready = True
        indices = np.flatnonzero(self.has_return)
        batch_size = batch_size or max(len(indices), 1)
        if len(indices) == len(self.has_return) and batch_size >= len(indices):
            yield self._get_samples(slice(None))  # type: ignore[attr-defined]  # every sample: views, no gather
            return
        for start in range(0, len(indices), batch_size):
            yield self._get_samples(indices[start : start + batch_size])  # type: ignore[attr-defined]

    def to_torch(self, array: np.ndarray, copy: bool = True) -> th.Tensor:
        # Overridden never to copy on CPU: nothing writes to a complete rollout's arrays before the next rollout
        # (VPG's update uses its batches only within train()), and every other array handed here is already a
        # fresh copy (a gather, flatten() or astype()).
        return super().to_torch(array, copy=False)  # type: ignore[misc]


def _flatten(array: np.ndarray) -> np.ndarray:
    """``(n_steps, n_envs, *shape)`` to ``(n_steps * n_envs, *shape)`` (at least 2-D, as SB3's buffers give), without a copy."""
    n_steps, n_envs, *shape = array.shape
    return array.reshape(n_steps * n_envs, *(shape or [1]))


_BUFFER_PARAMS = """
    :param buffer_size: Max number of element in the buffer
    :param observation_space: Observation space
    :param action_space: Action space
    :param device: PyTorch device
    :param gae_lambda: Unused (kept for SB3's buffer signature)
    :param gamma: Discount factor
    :param n_envs: Number of parallel environments
    :param use_baseline: Weight the policy by ``G - V(s)`` and bootstrap truncations with ``V``
    :param reset_on_reward: A non-zero reward also ends the return
    :param incomplete_episodes: How samples of an unfinished episode are treated: ``"drop"``, ``"truncate"``
        or ``"bootstrap"`` (see :data:`INCOMPLETE_EPISODE_MODES`)
"""


class VPGRolloutBuffer(MonteCarloBufferMixin, RolloutBuffer):
    __doc__ = "Rollout buffer with Monte-Carlo returns, for flat observations.\n" + _BUFFER_PARAMS


class VPGDictRolloutBuffer(MonteCarloBufferMixin, DictRolloutBuffer):
    __doc__ = "Rollout buffer with Monte-Carlo returns, for Dict observations.\n" + _BUFFER_PARAMS
