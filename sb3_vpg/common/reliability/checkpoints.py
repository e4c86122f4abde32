"""
Checkpoints that a killed run cannot corrupt, taken where a resume can continue exactly, and the state of the
random generators that lets a seeded run resumed from one continue as the uninterrupted run would.
"""

import base64
import json
import os
import pathlib
import random
import re
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
import torch as th
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import CheckpointCallback
from stable_baselines3.common.vec_env import VecEnv, VecNormalize

SelfAlgorithm = TypeVar("SelfAlgorithm", bound=BaseAlgorithm)


class AtomicCheckpointCallback(CheckpointCallback):
    """
    SB3's ``CheckpointCallback`` (same arguments and file names), with two differences that make a checkpoint
    something to resume from:

    - Each file is written to a temporary name and renamed when complete, so a run interrupted or killed
      (KeyboardInterrupt, SIGTERM, SIGKILL) while saving never leaves a truncated checkpoint: every
      ``{name_prefix}_{steps}_steps.zip`` (and ``{name_prefix}_vecnormalize_{steps}_steps.pkl``) is whole.
    - A save falls due every ``save_freq`` calls of ``env.step()`` as in SB3, but is taken at the next
      rollout boundary, after the update of the rollout (or at the end of training). SB3's callback saves
      in the middle of the rollout, before its update, so a resume from it collects that rollout again.
      Here, the saved step count, parameters, optimizer, VecNormalize statistics and (for an algorithm that
      saves them, as VPG does with a seed) random generators belong together, and :func:`load_checkpoint` +
      ``learn(..., reset_num_timesteps=False)`` continues from them (see the docs' reliability page
      for when the continuation is exact).

    It works with any SB3 algorithm; an off-policy algorithm's replay buffer is not saved.

    :param save_freq: Save a checkpoint once every ``save_freq`` calls of ``env.step()`` (each call is ``n_envs``
        steps), at the first rollout boundary after that
    :param save_path: Folder of the checkpoints (created if needed)
    :param name_prefix: Common prefix of the file names
    :param save_replay_buffer: Unused (kept for ``CheckpointCallback``'s signature): no replay buffer is saved
    :param save_vecnormalize: Also save the ``VecNormalize`` statistics, when the model's env has them
    :param verbose: 2 prints each save
    """

    def __init__(
        self,
        save_freq: int,
        save_path: str,
        name_prefix: str = "rl_model",
        save_replay_buffer: bool = False,
        save_vecnormalize: bool = False,
        verbose: int = 0,
    ):
        super().__init__(save_freq, save_path, name_prefix, save_replay_buffer, save_vecnormalize, verbose)
        self._calls_at_last_save = 0

    def _on_step(self) -> bool:
        return True  # saves wait for the rollout boundary

    def _on_rollout_start(self) -> None:
        self._save_if_due()

    def _on_training_end(self) -> None:
        self._save_if_due()

    def _save_if_due(self) -> None:
        if self.n_calls // self.save_freq > self._calls_at_last_save // self.save_freq:
            self.save()
            self._calls_at_last_save = self.n_calls

    def save(self) -> str:
        """Save a checkpoint now, atomically; returns the model's path."""
        # The statistics first: the model file completes a checkpoint, so the newest one always has them
        vec_normalize = self.model.get_vec_normalize_env()
        if self.save_vecnormalize and vec_normalize is not None:
            vec_normalize_path = self._checkpoint_path("vecnormalize_", extension="pkl")
            atomic_write(vec_normalize_path, vec_normalize.save)
            if self.verbose >= 2:
                print(f"Saving model VecNormalize to {vec_normalize_path}")

        model_path = self._checkpoint_path(extension="zip")

        def write_model(path: str) -> None:
            with open(path, "wb") as file:  # a file object: SB3 would append ".zip" to a path without it
                self.model.save(file)

        atomic_write(model_path, write_model)
        if self.verbose >= 2:
            print(f"Saving model checkpoint to {model_path}")
        return model_path


def latest_checkpoint(save_path: str, name_prefix: str = "rl_model") -> tuple[str, str | None, int] | None:
    """
    The newest checkpoint of ``(Atomic)CheckpointCallback(save_path=save_path, name_prefix=name_prefix)``:
    ``(model_path, vecnormalize_path or None, num_timesteps)``, or None when there is none.
    """
    if not os.path.isdir(save_path):
        return None
    pattern = re.compile(rf"{re.escape(name_prefix)}_(\d+)_steps\.zip")
    steps = [int(match.group(1)) for name in os.listdir(save_path) if (match := pattern.fullmatch(name))]
    if not steps:
        return None
    step = max(steps)
    vec_normalize_path = os.path.join(save_path, f"{name_prefix}_vecnormalize_{step}_steps.pkl")
    return (
        os.path.join(save_path, f"{name_prefix}_{step}_steps.zip"),
        vec_normalize_path if os.path.isfile(vec_normalize_path) else None,
        step,
    )


def load_checkpoint(
    algorithm_class: type[SelfAlgorithm], save_path: str, venv: VecEnv, name_prefix: str = "rl_model", **load_kwargs: Any
) -> SelfAlgorithm:
    """
    Load the newest checkpoint of ``AtomicCheckpointCallback(save_path=save_path, name_prefix=name_prefix)`` to
    resume training on ``venv``: then ``model.learn(total - model.num_timesteps, reset_num_timesteps=False)``.

    When the checkpoint has VecNormalize statistics, ``venv`` is wrapped in a ``VecNormalize`` holding them and
    reset without updating them (a VecNormalize's reset adds the reset observations to its statistics; the
    uninterrupted run counted them already when its episodes ended), so the resumed run continues exactly
    where the run's envs restart on a rollout boundary (see the docs' reliability page).

    :param algorithm_class: the algorithm that saved the checkpoints (``VPG``, ``PPO``, ...), whose ``load`` reads them
    :param save_path: the checkpoint folder
    :param venv: the new env, not wrapped in VecNormalize
    :param name_prefix: the checkpoints' name prefix
    :param load_kwargs: more arguments for ``algorithm_class.load`` (``device``, ...)
    :return: the model, with its env (``model.get_env()``)
    """
    if not (isinstance(algorithm_class, type) and issubclass(algorithm_class, BaseAlgorithm)):
        raise TypeError(
            f"algorithm_class must be a Stable-Baselines3 algorithm class (VPG, PPO, ...), got {algorithm_class!r}"
        )
    found = latest_checkpoint(save_path, name_prefix)
    if found is None:
        raise FileNotFoundError(f"No checkpoint {name_prefix}_<steps>_steps.zip in {save_path}")
    model_path, vec_normalize_path, _ = found
    if vec_normalize_path is None:
        return algorithm_class.load(model_path, env=venv, **load_kwargs)

    model = algorithm_class.load(model_path, env=VecNormalize.load(vec_normalize_path, venv), **load_kwargs)
    reset_for_resume(model)
    return model


def monitor_start_time(path: str) -> float | None:
    """
    The ``t_start`` in the header of the ``Monitor`` file at ``path`` (a resumed run appending to it times its games
    from there, so that the rows stay in time order); None when the file has no header.
    """
    with open(path) as file:
        first = file.readline()
    if not first.startswith("#"):
        return None
    return float(json.loads(first[1:])["t_start"])


def drop_games_after(path: str, until: float) -> int:
    """
    Leave out of the ``Monitor`` file at ``path`` the games that ended after ``until`` (a wall time, in seconds since
    the epoch): a run resumed from a checkpoint saved at ``until`` plays those steps again, with the checkpoint's
    model, so the games its killed attempt finished after the checkpoint are not part of the run. The file is
    rewritten in place, so that a process appending to it goes on at its new end.

    :return: the number of games left out (0 for a file without a header, whose rows carry no wall time)
    """
    start = monitor_start_time(path)
    if start is None:
        return 0
    with open(path, "r+") as file:
        lines = file.read().splitlines(keepends=True)
        if len(lines) < 2:
            return 0
        header, columns, *games = lines
        time_column = columns.strip().split(",").index("t")
        # A row without its line end is what a killed process was writing: it goes too
        kept = [row for row in games if row.endswith("\n") and start + float(row.split(",")[time_column]) <= until]
        if len(kept) < len(games):
            file.seek(0)
            file.writelines([header, columns, *kept])
            file.truncate()
            file.flush()
            os.fsync(file.fileno())
    return len(games) - len(kept)


def reset_for_resume(model: BaseAlgorithm) -> None:
    """
    Reset ``model``'s env and set what ``learn(..., reset_num_timesteps=False)`` continues from, as ``learn`` itself
    would after its reset, except that a ``VecNormalize`` in the env's stack does not add the reset observations to
    its statistics: the uninterrupted run counted them already, when its episodes ended.

    :param model: a model loaded from a checkpoint, with its env (whose VecNormalize holds the checkpoint's statistics)
    """
    venv = model.get_env()
    if venv is None:
        raise ValueError("model has no env: load it with env=... before resetting it for a resume")
    vec_normalize = model.get_vec_normalize_env()
    if vec_normalize is not None:
        vec_normalize.training = False
    try:
        observations = venv.reset()
    finally:
        if vec_normalize is not None:
            vec_normalize.training = True
    model._last_obs = observations  # type: ignore[assignment]
    model._last_episode_starts = np.ones((venv.num_envs,), dtype=bool)
    if vec_normalize is not None:
        model._last_original_obs = vec_normalize.get_original_obs()  # type: ignore[assignment]


def atomic_write(path: str | pathlib.Path, write: Callable[[str], None]) -> None:
    """
    Call ``write(temporary_path)``, flush the file to disk, then rename it to ``path``: a process killed
    meanwhile leaves either the previous file or the complete new one at ``path``, never a partial file
    (at worst, a leftover ``*.tmp`` file beside it).
    """
    path = os.fspath(path)
    temporary = f"{path}.{os.getpid()}.tmp"
    try:
        write(temporary)
        with open(temporary, "rb+") as file:
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise


def get_rng_state() -> dict[str, Any]:
    """
    The state of the global random generators that ``set_random_seed`` seeds (Python, NumPy, PyTorch CPU and,
    when initialized, CUDA), as JSON-compatible values, so SB3's ``data`` stores it without pickle.
    """
    numpy_state = np.random.get_state(legacy=True)
    state = {
        "python": json.loads(json.dumps(random.getstate())),
        "numpy": [numpy_state[0], _encode(numpy_state[1]), *(float(value) for value in numpy_state[2:])],
        "torch": _encode(th.get_rng_state().numpy()),
    }
    if th.cuda.is_available() and th.cuda.is_initialized():
        state["cuda"] = [_encode(cuda_state.numpy()) for cuda_state in th.cuda.get_rng_state_all()]
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore the global random generators from :func:`get_rng_state`'s output."""
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    name, keys, pos, has_gauss, cached_gaussian = state["numpy"]
    np.random.set_state((name, _decode(keys, np.uint32), int(pos), int(has_gauss), cached_gaussian))
    th.set_rng_state(th.from_numpy(_decode(state["torch"], np.uint8)))
    if "cuda" in state and th.cuda.is_available() and len(state["cuda"]) == th.cuda.device_count():
        th.cuda.set_rng_state_all([th.from_numpy(_decode(cuda_state, np.uint8)) for cuda_state in state["cuda"]])


def _encode(array: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(array).tobytes()).decode("ascii")


def _decode(text: str, dtype: type) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype=dtype).copy()
