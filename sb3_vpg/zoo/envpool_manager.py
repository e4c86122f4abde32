"""
``--vec-env envpool`` for rl_zoo3's ``train``: the entry's Atari envs run on EnvPool's C++ engine.

rl_zoo3 builds its envs in ``ExperimentManager.create_envs`` with ``make_vec_env`` and gymnasium wrappers.
:class:`EnvPoolExperimentManager` builds them with :func:`sb3_vpg.common.envpool_env.make_envpool_env` from the
same entry instead: its ``env_wrapper`` (``AtariWrapper`` or ``AtariRawFrames``, then wrappers with a VecEnv
counterpart) and ``frame_stack``, then rl_zoo3's own ``vec_env_wrapper`` and ``normalize``. The training envs write
one ``monitor.csv`` of the games in the run's folder, where rl_zoo3 writes one per env.
"""

import os
from typing import Any

from rl_zoo3.exp_manager import ExperimentManager
from stable_baselines3.common.vec_env import VecEnv

from sb3_vpg.common.envpool_env import make_envpool_env
from sb3_vpg.hyperparams import resolve_wrappers


class EnvPoolExperimentManager(ExperimentManager):
    """rl_zoo3's ``ExperimentManager`` whose envs are EnvPool pools (see the module docstring)."""

    def _preprocess_hyperparams(self, hyperparams: dict[str, Any]) -> Any:
        # Overridden to keep the env_wrapper entry itself: rl_zoo3 turns it into one opaque callable
        self._env_wrapper_spec = hyperparams.get("env_wrapper")
        return super()._preprocess_hyperparams(hyperparams)

    def create_envs(self, n_envs: int, eval_env: bool = False, no_log: bool = False) -> VecEnv:
        # Overridden: EnvPool replaces make_vec_env, the gymnasium wrappers and VecFrameStack
        # the games of the training envs are logged as rl_zoo3 logs them, in the run's folder (appended to on a resume)
        monitor_file = None if eval_env or no_log else os.path.join(self.save_path, "monitor.csv")
        env = make_envpool_env(
            self.env_name.gym_id,
            n_envs,
            self.seed,
            resolve_wrappers(self._env_wrapper_spec),
            self.frame_stack,
            monitor_file=monitor_file,
            override_existing=self.monitor_kwargs.get("override_existing", True),
        )
        if self.vec_env_wrapper is not None:
            env = self.vec_env_wrapper(env)
        return self._maybe_normalize(env, eval_env)
