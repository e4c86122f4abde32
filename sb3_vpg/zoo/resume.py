"""
``train --checkpoint-every STEPS``: a zoo run that outlives its process (a crash, a killed job, the end of a session).

rl_zoo3's own ``--save-freq`` saves in the middle of a rollout, and ``-i`` starts a new run from a saved model with
its step count at 0 again. With ``--checkpoint-every STEPS`` the run writes an atomic checkpoint
(:class:`~sb3_vpg.common.reliability.AtomicCheckpointCallback`: the model with its optimizer, the VecNormalize
statistics, and for VPG the random generators) into ``checkpoints/`` of its log folder every STEPS env steps, at a
rollout boundary, and a last one when it reaches ``-n``. The same command started again continues the newest run of
the env in the log folder (``-f``) when that run is unfinished, that is when its newest checkpoint is short of ``-n``:

- in the same folder, from the newest checkpoint and its step count, so that ``-n`` and a learning-rate schedule go
  on where they were, and TensorBoard writes on into the same run;
- the VecNormalize statistics are the checkpoint's, and the envs' restart does not count in them;
- ``evaluations.npz`` keeps the evaluations up to the checkpoint and goes on at the same evaluation steps; the best
  model is replaced only by a better one; ``monitor.csv`` files keep the games that ended before the checkpoint was
  written (its file's modification time) and are appended to, their games timed from the run's first start.

The steps between the newest checkpoint and the interruption are trained again. When the newest run has reached
``-n`` (or has no checkpoint), the command starts a new run, as rl_zoo3 does. On-policy algorithms only: an
off-policy algorithm's replay buffer is not in a checkpoint.
"""

import argparse
import contextlib
import glob
import os
from collections.abc import Iterator
from typing import Any

import numpy as np
from rl_zoo3.utils import ALGOS, get_latest_run_id
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import EvalCallback
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.vec_env import VecEnv, VecNormalize

from sb3_vpg.common.reliability import (
    AtomicCheckpointCallback,
    drop_games_after,
    latest_checkpoint,
    monitor_start_time,
    reset_for_resume,
)

#: The checkpoints' folder inside a run's log folder.
CHECKPOINTS = "checkpoints"

FLAGS_HELP = """Flag added to train:
  --checkpoint-every STEPS    atomic checkpoints every STEPS env steps in the run's checkpoints/; the same command
                              started again continues the newest unfinished run of the env from its newest one"""


def split_args(args: list[str]) -> tuple[list[str], int | None]:
    """
    Take ``--checkpoint-every`` out of ``train``'s arguments (rl_zoo3 rejects flags it does not know).

    :return: the arguments for rl_zoo3, and the checkpoint interval in env steps (None without the flag)
    """
    ours = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    ours.add_argument("--checkpoint-every", type=str)
    flags, rest = ours.parse_known_args(args)
    if flags.checkpoint_every is None:
        return rest, None
    try:
        every = int(flags.checkpoint_every)
    except ValueError:
        every = 0
    if every <= 0:
        raise SystemExit(
            f"sb3_vpg.zoo: --checkpoint-every must be a positive number of env steps, got {flags.checkpoint_every!r}"
        )
    for flag in ("-optimize", "--optimize-hyperparameters", "-i", "--trained-agent"):
        if any(arg == flag or arg.startswith(f"{flag}=") for arg in rest):
            raise SystemExit(
                f"sb3_vpg.zoo: --checkpoint-every does not go with {flag}: it resumes the newest unfinished run itself"
            )
    return rest, every


def manager_class(base: type, every: int) -> type:  # noqa: C901 (mccabe counts the class's methods as one function)
    """
    ``base`` (rl_zoo3's ``ExperimentManager`` or a subclass) with checkpoints every ``every`` env steps and the
    resume of the module docstring.
    """

    class ResumableExperimentManager(base):  # type: ignore[valid-type, misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            if not issubclass(ALGOS[self.algo], OnPolicyAlgorithm):
                raise SystemExit(
                    f"sb3_vpg.zoo: --checkpoint-every needs an on-policy algorithm (vpg, a2c, ppo, ...), got {self.algo}: "
                    "a checkpoint holds no replay buffer"
                )
            self._target_timesteps = self.n_timesteps
            self._resumed = self._unfinished_run()
            if self._resumed is not None:
                self.save_path, (model_path, _, _) = self._resumed
                self.params_path = os.path.join(self.save_path, str(self.env_name))
                # The steps after the checkpoint are trained again: the killed attempt's games in them are left out
                for monitor_file in glob.glob(os.path.join(self.save_path, "*monitor.csv")):
                    drop_games_after(monitor_file, os.path.getmtime(model_path))
                # rl_zoo3 then builds the model through _load_pretrained_agent, overridden below
                self.continue_training = True

        def _unfinished_run(self) -> tuple[str, tuple[str, str | None, int]] | None:
            """(folder, newest checkpoint) of the env's newest run when it has checkpoints short of -n."""
            newest = get_latest_run_id(self.log_path, self.env_name)
            folder = os.path.join(self.log_path, f"{self.env_name}_{newest}")
            found = latest_checkpoint(os.path.join(folder, CHECKPOINTS)) if newest else None
            if found is None or found[2] >= self.n_timesteps:
                return None
            return folder, found

        def create_callbacks(self) -> None:
            super().create_callbacks()
            self._checkpoints = AtomicCheckpointCallback(
                max(every // self.n_envs, 1), os.path.join(self.save_path, CHECKPOINTS), save_vecnormalize=True
            )
            self.callbacks.append(self._checkpoints)

        def create_envs(self, n_envs: int, eval_env: bool = False, no_log: bool = False) -> VecEnv:
            if self._resumed is not None:
                # Overridden to append to the run's monitor files rather than start them anew
                self.monitor_kwargs = {**self.monitor_kwargs, "override_existing": False}
            env = super().create_envs(n_envs, eval_env, no_log)
            if self._resumed is not None and not (eval_env or no_log):
                _continue_monitor_clocks(env, self.save_path)
            return env

        def _maybe_normalize(self, env: VecEnv, eval_env: bool) -> VecEnv:
            # Overridden: a resumed run's training envs normalize with the checkpoint's statistics
            vec_normalize_path = self._resumed[1][1] if self._resumed is not None else None
            if eval_env or vec_normalize_path is None:
                return super()._maybe_normalize(env, eval_env)
            return VecNormalize.load(vec_normalize_path, env)

        def _load_pretrained_agent(self, hyperparams: dict[str, Any], env: VecEnv) -> BaseAlgorithm:
            # Overridden: the model, its optimizer and its hyperparameters are the newest checkpoint's
            assert self._resumed is not None
            model_path, _, steps = self._resumed[1]
            print(f"Resuming {self.save_path} from its checkpoint at {steps} steps")
            model = ALGOS[self.algo].load(
                model_path, env=env, device=self.device, tensorboard_log=self.tensorboard_log, verbose=self.verbose
            )
            reset_for_resume(model)
            return model

        def learn(self, model: BaseAlgorithm) -> None:
            if self._resumed is None:
                super().learn(model)
            else:
                self._continue_callbacks(model)
                # rl_zoo3 calls model.learn(self.n_timesteps): the steps still to go, counted on from the checkpoint's
                self.n_timesteps = self._target_timesteps - model.num_timesteps
                try:
                    with _counting_on(type(model)):
                        super().learn(model)
                finally:
                    self.n_timesteps = self._target_timesteps
            newest = latest_checkpoint(self._checkpoints.save_path)
            if model.num_timesteps >= self._target_timesteps and (newest is None or newest[2] < model.num_timesteps):
                self._checkpoints.save()  # marks the run finished for the next start of the command

        def _continue_callbacks(self, model: BaseAlgorithm) -> None:
            """The callbacks' step counts (their frequencies count env.step() calls) and the evaluations so far."""
            assert model.env is not None
            calls = model.num_timesteps // model.env.num_envs
            for callback in self.callbacks:
                callback.n_calls = calls
                if isinstance(callback, EvalCallback) and callback.log_path is not None:
                    _keep_evaluations(callback, f"{callback.log_path}.npz", model.num_timesteps)
            self._checkpoints._calls_at_last_save = calls

    return ResumableExperimentManager


def _continue_monitor_clocks(env: VecEnv, folder: str) -> None:
    """
    Env i's ``Monitor`` times its games from the start in the header of ``{folder}/{i}.monitor.csv``, the file it
    appends to, so that the rows stay in time order for ``load_results`` (SB3's ``Monitor`` starts its clock anew).
    Envs without such files (EnvPool keeps its own) are left as they are.
    """
    for index in range(env.num_envs):
        path = os.path.join(folder, f"{index}.monitor.csv")
        if not os.path.isfile(path):
            return
        start = monitor_start_time(path)
        if start is not None:
            env.env_method("set_wrapper_attr", "t_start", start, indices=index)


def _keep_evaluations(callback: EvalCallback, path: str, steps: int) -> None:
    """Give ``callback`` the evaluations of ``path`` up to ``steps``, which it saves again with its next ones."""
    if not os.path.isfile(path):
        return
    with np.load(path) as saved:
        kept = saved["timesteps"] <= steps
        callback.evaluations_timesteps = saved["timesteps"][kept].tolist()
        callback.evaluations_results = saved["results"][kept].tolist()
        callback.evaluations_length = saved["ep_lengths"][kept].tolist()
        if "successes" in saved:
            callback.evaluations_successes = saved["successes"][kept].tolist()
    if callback.evaluations_results:
        callback.best_mean_reward = max(float(np.mean(results)) for results in callback.evaluations_results)


@contextlib.contextmanager
def _counting_on(algorithm_class: type[BaseAlgorithm]) -> Iterator[None]:
    """Within the block, ``learn(n, ...)`` of ``algorithm_class`` trains n more steps on from the model's step count."""
    own = vars(algorithm_class).get("learn")
    learn = algorithm_class.learn

    def continued(self: BaseAlgorithm, *args: Any, **kwargs: Any) -> Any:
        return learn(self, *args, **{**kwargs, "reset_num_timesteps": False})

    algorithm_class.learn = continued  # type: ignore[method-assign]
    try:
        yield
    finally:
        if own is None:
            del algorithm_class.learn
        else:
            algorithm_class.learn = own  # type: ignore[method-assign]


__all__ = ["CHECKPOINTS", "FLAGS_HELP", "manager_class", "split_args"]
