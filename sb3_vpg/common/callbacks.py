"""Checkpoints that a killed run cannot corrupt, taken where a resume can continue exactly."""

import os
import re
from typing import Any

import numpy as np
from stable_baselines3.common.callbacks import CheckpointCallback
from stable_baselines3.common.vec_env import VecEnv, VecNormalize

from sb3_vpg.common.io import atomic_write
from sb3_vpg.vpg.vpg import VPG


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
      Here, the saved step count, parameters, optimizer, VecNormalize statistics and (seeded runs) random
      generators belong together, and ``VPG.load`` + ``learn(..., reset_num_timesteps=False)`` continues
      from them (see the README's "Reliability" section for when the continuation is exact).

    :param save_freq: Save a checkpoint once every ``save_freq`` calls of ``env.step()`` (each call is ``n_envs``
        steps), at the first rollout boundary after that
    :param save_path: Folder of the checkpoints (created if needed)
    :param name_prefix: Common prefix of the file names
    :param save_replay_buffer: Unused (kept for ``CheckpointCallback``'s signature): VPG has no replay buffer
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


def load_checkpoint(save_path: str, venv: VecEnv, name_prefix: str = "rl_model", **load_kwargs: Any) -> VPG:
    """
    Load the newest checkpoint of ``AtomicCheckpointCallback(save_path=save_path, name_prefix=name_prefix)`` to
    resume training on ``venv``: then ``model.learn(total - model.num_timesteps, reset_num_timesteps=False)``.

    When the checkpoint has VecNormalize statistics, ``venv`` is wrapped in a ``VecNormalize`` holding them and
    reset without updating them (a VecNormalize's reset adds the reset observations to its statistics; the
    uninterrupted run counted them already when its episodes ended), so the resumed run continues exactly
    where the run's envs restart on a rollout boundary (see the README's "Reliability").

    :param save_path: the checkpoint folder
    :param venv: the new env, not wrapped in VecNormalize
    :param name_prefix: the checkpoints' name prefix
    :param load_kwargs: more arguments for ``VPG.load`` (``device``, ...)
    :return: the model, with its env (``model.get_env()``)
    """
    found = latest_checkpoint(save_path, name_prefix)
    if found is None:
        raise FileNotFoundError(f"No checkpoint {name_prefix}_<steps>_steps.zip in {save_path}")
    model_path, vec_normalize_path, _ = found
    if vec_normalize_path is None:
        return VPG.load(model_path, env=venv, **load_kwargs)

    venv = VecNormalize.load(vec_normalize_path, venv)
    venv.training = False
    observations = venv.reset()
    venv.training = True
    model = VPG.load(model_path, env=venv, **load_kwargs)
    # What learn() would set up after its own reset, which would count the observations again
    model._last_obs = observations  # type: ignore[assignment]
    model._last_original_obs = venv.get_original_obs()  # type: ignore[assignment]
    model._last_episode_starts = np.ones((venv.num_envs,), dtype=bool)
    return model
