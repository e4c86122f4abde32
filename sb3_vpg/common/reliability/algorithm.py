"""
The hardening of this package applied to a Stable-Baselines3 algorithm class, as a mixin:
``class VPG(ReliabilityMixin, OnPolicyAlgorithm)``, or ``class MyPPO(ReliabilityMixin, PPO)``.
"""

import io
import pathlib
from contextlib import ExitStack
from typing import Any, ClassVar, TypeVar

import torch as th
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.type_aliases import GymEnv

from sb3_vpg.common.reliability.checkpoints import get_rng_state, set_rng_state
from sb3_vpg.common.reliability.finite_checks import parameters_watched
from sb3_vpg.common.reliability.model_files import check_model_file
from sb3_vpg.common.reliability.workers import WorkerGuard

SelfAlgorithm = TypeVar("SelfAlgorithm", bound=BaseAlgorithm)


class ReliabilityMixin:
    """
    Mixin over a Stable-Baselines3 algorithm class for long runs:

    - ``learn``: a ``SubprocVecEnv`` worker that dies is named in a RuntimeError instead of a bare pipe error or a
      hang (:class:`~sb3_vpg.common.reliability.workers.WorkerGuard`); an optimizer step that leaves NaN or inf in
      the parameters stops training at once, before a forward pass or a checkpoint uses them
      (:func:`~sb3_vpg.common.reliability.finite_checks.watch_parameters`); the logger's TensorBoard writer is
      closed at the end, also when interrupted (SB3 leaves one writer thread open per ``learn``).
    - ``save`` also stores the state of the global random generators, which ``load`` restores for a model saved
      with a seed, so that a run resumed from a checkpoint continues their streams.
    - ``load`` refuses a missing, truncated or corrupted file, or one saved by another algorithm, with a clear error
      (FileNotFoundError, ValueError) before anything is unpickled
      (:func:`~sb3_vpg.common.reliability.model_files.check_model_file`).

    - A learning-rate schedule that returns a negative or NaN value stops training with a ValueError at that update
      (SB3 would apply it: gradient ascent, or NaN parameters). The schedule is read at progress 0, not below, on a
      last rollout that overshoots ``total_timesteps``.

    :cvar model_file_keys: keys of a saved model's ``data`` that this algorithm writes and others do not (its own
        constructor arguments): ``load`` refuses a file without them as one saved by another algorithm
    :cvar model_file_entries: the tensor files of a saved model that this algorithm's ``load`` reads
    """

    model_file_keys: ClassVar[tuple[str, ...]] = ()
    model_file_entries: ClassVar[tuple[str, ...]] = ("policy.pth",)

    def _update_learning_rate(self, optimizers: Any) -> None:
        # Overridden to refuse a schedule value that SB3 would apply as it is (a negative rate ascends the loss)
        algorithm: Any = self
        # The last rollout may overshoot total_timesteps, where SB3's progress goes below 0 and a schedule such as
        # rl_zoo3's linear one (progress * initial value) turns negative: that rollout ends the budget, progress 0
        algorithm._current_progress_remaining = max(algorithm._current_progress_remaining, 0.0)
        learning_rate = algorithm.lr_schedule(algorithm._current_progress_remaining)
        if not learning_rate >= 0:  # False for NaN too
            raise ValueError(
                f"The learning_rate schedule returned {learning_rate} at progress_remaining="
                f"{algorithm._current_progress_remaining:.4g} (step {algorithm.num_timesteps}): it must stay >= 0"
            )
        super()._update_learning_rate(optimizers)  # type: ignore[misc]

    def learn(self, *args: Any, **kwargs: Any) -> Any:
        algorithm: Any = self
        with ExitStack() as guards:
            guards.enter_context(WorkerGuard(algorithm.env, lambda: algorithm.num_timesteps))
            # Every optimizer of the policy: one for an actor-critic policy, one each for SAC's actor and critic
            for optimizer in {module.optimizer for module in algorithm.policy.modules() if hasattr(module, "optimizer")}:
                guards.enter_context(parameters_watched(optimizer, lambda: algorithm.num_timesteps))
            try:
                return super().learn(*args, **kwargs)  # type: ignore[misc]
            finally:
                # Flush the logs, even when interrupted
                if not algorithm._custom_logger and getattr(algorithm, "_logger", None) is not None:
                    algorithm._logger.close()

    def save(
        self,
        path: str | pathlib.Path | io.BufferedIOBase,
        exclude: Any = None,
        include: Any = None,
    ) -> None:
        """
        Save the model as SB3 does (see ``BaseAlgorithm.save``), with the state of the global random generators,
        which ``load`` restores for a seeded model so that a resumed run continues their streams.
        """
        self._rng_state = get_rng_state()
        super().save(path, exclude=exclude, include=include)  # type: ignore[misc]

    @classmethod
    def load(
        cls: type[SelfAlgorithm],
        path: str | pathlib.Path | io.BufferedIOBase,
        env: GymEnv | None = None,
        device: th.device | str = "auto",
        custom_objects: dict[str, Any] | None = None,
        print_system_info: bool = False,
        force_reset: bool = True,
        **kwargs: Any,
    ) -> SelfAlgorithm:
        """
        Load a model saved by ``save`` (see ``BaseAlgorithm.load`` for the arguments). The file is unpickled,
        which can execute code: load only files you trust (``set_parameters`` reads the weights alone).
        A missing, truncated or corrupted file, or one saved by another algorithm, raises a clear error
        (FileNotFoundError, ValueError) before anything is unpickled. A model saved with a seed, and loaded
        without a new ``seed``, gets back the random generators' state of the save instead of being re-seeded,
        so a run resumed from a checkpoint continues as the uninterrupted run would.
        """
        check_model_file(path, cls.__name__, cls.model_file_keys, cls.model_file_entries)  # type: ignore[attr-defined]
        model = super().load(path, env, device, custom_objects, print_system_info, force_reset, **kwargs)  # type: ignore[misc]
        rng_state = getattr(model, "_rng_state", None)
        if model.seed is not None and rng_state is not None and "seed" not in kwargs:
            set_rng_state(rng_state)
        return model
