"""
Hardening for long training runs with any Stable-Baselines3 algorithm; none of it is specific to VPG.

- :class:`ReliabilityMixin` applies them to an algorithm class: guarded ``learn``, checked ``load``, and ``save``
  with the random generators' state (``class VPG(ReliabilityMixin, OnPolicyAlgorithm)``).
- :mod:`~sb3_vpg.common.reliability.checkpoints`: checkpoints written atomically at rollout boundaries, the newest
  one found and loaded to resume (:func:`load_checkpoint` takes the algorithm class), and the random generators'
  state saved with a model for an exact resume.
- :mod:`~sb3_vpg.common.reliability.finite_checks`: NaN guards on rewards, observations, returns,
  log-probabilities and parameters.
- :mod:`~sb3_vpg.common.reliability.model_files`: a truncated, corrupted or foreign model file refused, before
  anything is unpickled.
- :mod:`~sb3_vpg.common.reliability.workers`: a dead ``SubprocVecEnv`` worker named in a clear error instead of a
  hang.
"""

from sb3_vpg.common.reliability.algorithm import ReliabilityMixin
from sb3_vpg.common.reliability.checkpoints import (
    AtomicCheckpointCallback,
    atomic_write,
    drop_games_after,
    get_rng_state,
    latest_checkpoint,
    load_checkpoint,
    monitor_start_time,
    reset_for_resume,
    set_rng_state,
)
from sb3_vpg.common.reliability.finite_checks import (
    check_log_probs,
    check_observations,
    check_parameters,
    check_returns,
    check_rewards,
    parameters_watched,
    watch_parameters,
)
from sb3_vpg.common.reliability.model_files import check_model_file
from sb3_vpg.common.reliability.workers import WorkerGuard

__all__ = [
    "AtomicCheckpointCallback",
    "ReliabilityMixin",
    "WorkerGuard",
    "atomic_write",
    "check_log_probs",
    "check_model_file",
    "check_observations",
    "check_parameters",
    "check_returns",
    "check_rewards",
    "drop_games_after",
    "get_rng_state",
    "latest_checkpoint",
    "load_checkpoint",
    "monitor_start_time",
    "parameters_watched",
    "reset_for_resume",
    "set_rng_state",
    "watch_parameters",
]
