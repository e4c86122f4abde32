"""
Where VPG's returns come from: the rollout's data path, in one file.

1. For each rollout, VPG steps the envs through :class:`VecRecordEnvSteps`. It sees every step as the envs return
   it and hands the buffer that step's own rewards and episode ends (:meth:`MonteCarloBufferMixin.record_step`),
   after checking that rewards and observations are finite.
2. SB3's ``collect_rollouts`` then adds the rest of the step with ``add``. Before that, it rewrites the reward of a
   time-limit truncation as ``r + gamma * V(s_T)``, in place, in the array the env returned: pure REINFORCE must
   use no value estimate, hence the copy of step 1.
3. At the end of the rollout, :meth:`MonteCarloBufferMixin.compute_returns_and_advantage` builds the returns with
   :func:`discounted_reward_to_go`, from the recorded rewards (pure REINFORCE) or from SB3's bootstrapped ones
   (with a baseline), and the recorded episode ends.

Why a VecEnv wrapper rather than a copy of ``collect_rollouts`` (as sb3-contrib's MaskablePPO owns one): the wrapper
relies only on what SB3's loop does by definition, in every version: it steps the env it is given, once per step,
before it adds that step to the buffer. The loop itself (callbacks, gSDE noise, action clipping, episode statistics,
the truncation bootstrap) stays SB3's and follows its releases, where a copy would have to be brought up to date by
hand at each one, and would silently differ from SB3 whenever it was not.
"""

from collections.abc import Generator
from typing import Any

import numpy as np
import torch as th
from stable_baselines3.common.buffers import DictRolloutBuffer, RolloutBuffer
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper
from stable_baselines3.common.vec_env.base_vec_env import VecEnvObs, VecEnvStepReturn

from sb3_vpg.common.fast_buffers import FastRolloutBufferMixin
from sb3_vpg.common.reliability.finite_checks import check_observations, check_rewards

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


def check_gae_lambda(gae_lambda: float, use_baseline: bool) -> None:
    """
    Raise a TypeError unless ``gae_lambda`` is a number, a ValueError unless it is in [0, 1] and, below 1,
    comes with ``use_baseline=True`` (GAE needs the values of a learned baseline).
    """
    if isinstance(gae_lambda, bool) or not isinstance(gae_lambda, int | float | np.integer | np.floating):
        raise TypeError(f"gae_lambda must be a number, got {gae_lambda!r} ({type(gae_lambda).__name__})")
    if not 0 <= gae_lambda <= 1:
        raise ValueError(f"gae_lambda must be in [0, 1], got {gae_lambda}")
    if gae_lambda != 1 and not use_baseline:
        raise ValueError(
            f"gae_lambda={gae_lambda} (GAE advantages) needs a learned value baseline: set use_baseline=True, "
            "or gae_lambda=1.0 for pure REINFORCE"
        )


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


def generalized_advantage(
    rewards: np.ndarray,
    values: np.ndarray,
    episode_ends: np.ndarray,
    gamma: float,
    gae_lambda: float,
    last_values: np.ndarray,
) -> np.ndarray:
    """
    Generalized Advantage Estimation over a rollout, for all envs at once: SB3's recursion
    (``RolloutBuffer.compute_returns_and_advantage``) with VPG's episode ends, in float64.

    .. math::

        \\delta_t = r_t + \\gamma (1 - e_t) V(s_{t+1}) - V(s_t), \\qquad
        A_t = \\delta_t + \\gamma \\lambda (1 - e_t) A_{t+1}, \\qquad
        V(s_T) = \\text{last\\_values}, \\; A_T = 0

    that is :math:`A_t = \\sum_k (\\gamma\\lambda)^k \\delta_{t+k}` up to the end of the episode, where
    :math:`e_t` are the same ends as :func:`discounted_reward_to_go`'s (a truncation's bootstrap
    :math:`\\gamma V(s_T)` is already in its reward). :math:`\\lambda = 1` gives :math:`G_t - V(s_t)`,
    :math:`\\lambda = 0` the one-step TD error :math:`\\delta_t`.

    Reference: Schulman et al. (2016), "High-Dimensional Continuous Control Using Generalized Advantage
    Estimation", https://arxiv.org/abs/1506.02438

    :param rewards: rewards of shape ``(n_steps, n_envs)``
    :param values: ``V(s_t)`` of shape ``(n_steps, n_envs)``
    :param episode_ends: whether the episode ended at that step, shape ``(n_steps, n_envs)``
    :param gamma: discount factor
    :param gae_lambda: the GAE parameter, in [0, 1]
    :param last_values: value of each env's state after the last step, shape ``(n_envs,)`` (zeros: no bootstrap)
    :return: the advantages, shape ``(n_steps, n_envs)``
    """
    n_steps, n_envs = rewards.shape
    values = np.asarray(values, dtype=np.float64)
    advantages = np.zeros((n_steps, n_envs), dtype=np.float64)
    next_values = np.asarray(last_values, dtype=np.float64)
    next_advantage = np.zeros(n_envs)
    for step in reversed(range(n_steps)):
        not_ended = 1.0 - episode_ends[step].astype(np.float64)
        delta = rewards[step] + gamma * not_ended * next_values - values[step]
        next_advantage = delta + gamma * gae_lambda * not_ended * next_advantage
        advantages[step] = next_advantage
        next_values = values[step]
    return advantages


class MonteCarloBufferMixin:
    """
    What VPG adds to SB3's rollout buffers: raw rewards and episode ends per step, Monte-Carlo returns,
    and a mask of the samples that have a return. Only those samples are yielded by :meth:`get`.

    "Raw" means as the training VecEnv returned them, before SB3 adds ``gamma * V(s_T)`` to truncated rewards:
    with ``VecNormalize(norm_reward=True)`` they are the normalized rewards (as for SB3's algorithms), and the
    returns and ``train/return_mean`` are in those units.

    After :meth:`compute_returns_and_advantage`, ``returns`` holds the (un-normalized) returns, ``advantages``
    the un-normalized policy weights (``G``, ``G - V``, or GAE advantages when ``gae_lambda < 1``) and
    ``has_return`` the mask, each of shape ``(n_steps, n_envs)``, as SB3's buffers do before :meth:`get`
    flattens them. The critic's targets stay ``returns`` whatever ``gae_lambda``.

    :param use_baseline: weights are ``G - V(s)`` (or GAE advantages, SB3's ``gae_lambda`` < 1) instead of ``G``;
        truncations bootstrap with ``V`` (SB3's collection already added ``gamma * V(s_T)`` to their reward)
    :param reset_on_reward: a non-zero reward also ends the return (each point of Pong is a rally)
    :param incomplete_episodes: one of :data:`INCOMPLETE_EPISODE_MODES`
    """

    # Attributes the SB3 buffers define, declared for type checkers.
    buffer_size: int
    n_envs: int
    pos: int
    full: bool
    gamma: float
    gae_lambda: float
    generator_ready: bool
    actions: np.ndarray
    rewards: np.ndarray
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
        check_gae_lambda(kwargs.get("gae_lambda", 1.0), use_baseline)
        self.use_baseline = use_baseline
        self.reset_on_reward = reset_on_reward
        self.incomplete_episodes = incomplete_episodes
        super().__init__(*args, **kwargs)

    def reset(self) -> None:
        shape = (self.buffer_size, self.n_envs)
        self.raw_rewards = np.zeros(shape, dtype=np.float32)
        self.episode_ends = np.zeros(shape, dtype=bool)
        self.has_return = np.zeros(shape, dtype=bool)
        self._recorded_pos = 0
        super().reset()  # type: ignore[misc]

    def record_step(self, rewards: np.ndarray, dones: np.ndarray) -> None:
        """
        Keep the env's own rewards and episode ends of the step about to be added (:class:`VecRecordEnvSteps`
        calls this as the envs return them), before SB3 adds a value bootstrap to the rewards of truncated episodes.

        :param rewards: rewards returned by ``VecEnv.step``, shape ``(n_envs,)``
        :param dones: episode ends returned by ``VecEnv.step`` (termination, truncation, life loss)
        """
        self.raw_rewards[self.pos] = rewards
        self.episode_ends[self.pos] = dones
        self._recorded_pos = self.pos + 1

    def add(self, *args: Any, **kwargs: Any) -> None:
        # Overridden to refuse a step whose own rewards and episode ends, which the returns are made of, were not recorded
        if self._recorded_pos != self.pos + 1:
            raise RuntimeError(
                "Every step added to a Monte-Carlo rollout buffer must first be recorded with record_step(); "
                "collect rollouts through VPG.learn()"
            )
        super().add(*args, **kwargs)  # type: ignore[misc]

    def compute_returns_and_advantage(self, last_values: th.Tensor, dones: np.ndarray) -> None:
        """
        Monte-Carlo returns of the whole rollout (see :func:`discounted_reward_to_go`), and the policy's weights:
        ``G``, ``G - V`` or, with ``gae_lambda < 1``, GAE advantages (:func:`generalized_advantage`) over the same
        episode ends and the same tail (``V`` of the last observation with ``"bootstrap"``, nothing otherwise: the
        samples without a return under ``"drop"`` are not used).

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
        if not self.use_baseline:
            self.advantages = self.returns.copy()
        elif self.gae_lambda == 1:  # GAE with lambda = 1 telescopes to G - V: kept as is, bit for bit
            self.advantages = self.returns - self.values
        else:
            tail_values = np.zeros(self.n_envs) if tail is None else tail
            advantages = generalized_advantage(rewards, self.values, ends, self.gamma, self.gae_lambda, tail_values)
            self.advantages = advantages.astype(np.float32)

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


def _flatten(array: np.ndarray) -> np.ndarray:
    """``(n_steps, n_envs, *shape)`` to ``(n_steps * n_envs, *shape)``, at least 2-D as SB3's buffers give, without a copy."""
    n_steps, n_envs, *shape = array.shape
    return array.reshape(n_steps * n_envs, *(shape or [1]))


class VecRecordEnvSteps(VecEnvWrapper):
    """
    The training env during one rollout: each step's own rewards and episode ends go into the rollout buffer
    (:meth:`MonteCarloBufferMixin.record_step`) as the envs return them, before SB3 adds ``gamma * V(s_T)`` to the
    rewards of truncated episodes. A non-finite reward or observation stops training with a ValueError that names
    the env and the step, before it reaches the buffer.

    :param venv: the training env. One whose ``step`` is its own, which may do more than ``step_async`` and
        ``step_wait``, is stepped by that ``step``
    :param rollout_buffer: the buffer the rollout fills
    :param num_timesteps: the env steps taken before the rollout (for the step in error messages)
    """

    def __init__(self, venv: VecEnv, rollout_buffer: MonteCarloBufferMixin, num_timesteps: int) -> None:
        super().__init__(venv)
        self.rollout_buffer = rollout_buffer
        self.num_timesteps = num_timesteps
        self._own_step = type(venv).step is not VecEnv.step
        self._actions: np.ndarray | None = None

    def step_async(self, actions: np.ndarray) -> None:
        if self._own_step:
            self._actions = actions  # for its step(), in step_wait
        else:
            self.venv.step_async(actions)

    def step_wait(self) -> VecEnvStepReturn:
        observations, rewards, dones, infos = self.venv.step(self._actions) if self._own_step else self.venv.step_wait()
        self.num_timesteps += self.num_envs  # counted as SB3 counts them
        check_rewards(rewards, self.num_timesteps)
        check_observations(observations, self.num_timesteps)  # type: ignore[arg-type]
        self.rollout_buffer.record_step(rewards, dones)
        return observations, rewards, dones, infos

    def reset(self) -> VecEnvObs:
        return self.venv.reset()


_BUFFER_PARAMS = """
    :param buffer_size: Max number of element in the buffer
    :param observation_space: Observation space
    :param action_space: Action space
    :param device: PyTorch device
    :param gae_lambda: GAE parameter of the policy's weights with ``use_baseline`` (1: ``G - V``)
    :param gamma: Discount factor
    :param n_envs: Number of parallel environments
    :param use_baseline: Weight the policy by ``G - V(s)`` and bootstrap truncations with ``V``
    :param reset_on_reward: A non-zero reward also ends the return
    :param incomplete_episodes: How samples of an unfinished episode are treated: ``"drop"``, ``"truncate"``
        or ``"bootstrap"`` (see :data:`INCOMPLETE_EPISODE_MODES`)
"""


class VPGRolloutBuffer(MonteCarloBufferMixin, FastRolloutBufferMixin, RolloutBuffer):
    __doc__ = "Rollout buffer with Monte-Carlo returns, for flat observations.\n" + _BUFFER_PARAMS


class VPGDictRolloutBuffer(MonteCarloBufferMixin, FastRolloutBufferMixin, DictRolloutBuffer):
    __doc__ = "Rollout buffer with Monte-Carlo returns, for Dict observations.\n" + _BUFFER_PARAMS
