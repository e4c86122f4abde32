"""
EnvPool's C++ Atari engine behind Stable-Baselines3's ``VecEnv`` interface (the ``envpool`` extra).

EnvPool (https://github.com/sail-sg/envpool) steps a batch of ALE games in C++ threads and returns the batch
as arrays, with none of ``SubprocVecEnv``'s per-env pipes and pickling. :class:`EnvPoolVecEnv` gives its
synchronous pool SB3's conventions, so any SB3 algorithm, callback or ``evaluate_policy`` uses it as it uses
``make_atari_env``:

- **Auto-reset**: when an env's episode ends, ``step_wait`` returns the next episode's first observation and
  puts the last one in ``infos[i]["terminal_observation"]``. EnvPool itself resets a finished env on its *next*
  step (the action is ignored there); this class takes that step at once for the finished envs only, so a
  life loss under ``episodic_life`` continues the game as SB3's ``EpisodicLifeEnv`` does, and a game over
  starts a new game with EnvPool's no-op starts.
- **Truncation**: ``infos[i]["TimeLimit.truncated"]`` is True when the time limit ended a game that was not over.
- **Episode statistics**: at the end of each *game* (not each life), ``infos[i]["episode"]`` holds
  ``{"r": score, "l": agent steps, "t": seconds}``, the score summed from the unclipped rewards, as SB3's
  ``Monitor`` under ``AtariWrapper`` reports it, so ``rollout/ep_rew_mean``, ``EvalCallback`` and
  ``evaluate_policy`` read game scores. ``env_is_wrapped(Monitor)`` answers True for that reason.
  (``Monitor`` under ``AtariWrapper`` counts emulator frames in ``"l"``; here it is agent steps.) With
  ``monitor_file``, each game is also a row of a ``monitor.csv`` file in ``Monitor``'s format, one file for the
  pool, which ``stable_baselines3.common.monitor.load_results`` and rl_zoo3's training plots read.
- **Seeding**: ``seed(s)`` gives env ``i`` the seed ``s + i`` at the next ``reset()``, which rebuilds the pool
  (EnvPool takes its seeds at construction); the same seed and actions give the same games.

:func:`make_envpool_atari_env` builds it with the settings of SB3's ``make_atari_env`` (``AtariWrapper``:
no-op starts, frame skip 4 with max-pooling, a life loss ends the episode, clipped rewards, 84x84 grey
frames), ``frame_stack`` frames stacked channels-first, or with the raw 210x160 RGB frames
(``raw_frames=True``) that a preprocessing of one's own (:mod:`sb3_vpg.common.atari_wrappers`) needs.
"""

import json
import re
import time
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.monitor import Monitor, ResultsWriter
from stable_baselines3.common.vec_env.base_vec_env import VecEnv, VecEnvIndices, VecEnvObs, VecEnvStepReturn

from sb3_vpg.common.reliability import monitor_start_time

#: ``AtariWrapper``'s settings in EnvPool's names (SB3 ``make_atari_env`` defaults).
ATARI_WRAPPER_SETTINGS: dict[str, Any] = {
    "noop_max": 30,
    "frame_skip": 4,
    "episodic_life": True,
    "reward_clip": True,
    "img_height": 84,
    "img_width": 84,
    "gray_scale": True,
    "repeat_action_probability": 0.0,
}

#: Raw frames as ALE renders them, for one's own preprocessing: (3, 210, 160) RGB, one frame.
RAW_FRAME_SETTINGS: dict[str, Any] = {"img_height": 210, "img_width": 160, "gray_scale": False, "stack_num": 1}


def _import_envpool() -> Any:
    try:
        import envpool
    except ImportError as error:
        raise ImportError("EnvPool is not installed: pip install 'sb3-vpg[envpool]' (or pip install envpool)") from error
    return envpool


def envpool_atari_task(env_id: str) -> str:
    """
    EnvPool's task id for an Atari env id: ``PongNoFrameskip-v4``, ``ALE/Pong-v5`` and ``Pong-v5`` all give
    ``Pong-v5``. Raises a ValueError naming the id when EnvPool has no such Atari game.
    """
    envpool = _import_envpool()
    name = re.sub(r"^ALE/", "", env_id)
    name = re.sub(r"(NoFrameskip)?(-ram)?-v\d+$", "", name)
    task = f"{name}-v5"
    if task not in envpool.list_all_envs():
        raise ValueError(
            f"env_id {env_id!r} is not an Atari game that EnvPool knows (looked for {task!r}); "
            "EnvPool's Atari ids look like 'Pong-v5', SB3's like 'PongNoFrameskip-v4'"
        )
    return task


class EnvPoolVecEnv(VecEnv):
    """
    A synchronous EnvPool pool as an SB3 ``VecEnv`` (see the module docstring for the conventions).

    :param task_id: EnvPool's task id, e.g. ``"Pong-v5"``
    :param num_envs: number of envs in the pool
    :param seed: seed of env 0 (env ``i`` gets ``seed + i``); None draws one
    :param num_threads: EnvPool's worker threads (0: one per env, as EnvPool decides)
    :param monitor_file: where to write each game as a row of a ``monitor.csv`` file (a folder or a path, as
        ``Monitor``'s ``filename``); None writes none
    :param override_existing: start ``monitor_file`` anew (True) or append to it (False: a resumed run)
    :param envpool_kwargs: the other arguments of ``envpool.make`` (``frame_skip``, ``episodic_life``, ...)
    """

    def __init__(
        self,
        task_id: str,
        num_envs: int,
        seed: int | None = None,
        num_threads: int = 0,
        monitor_file: str | None = None,
        override_existing: bool = True,
        **envpool_kwargs: Any,
    ):
        if isinstance(num_envs, bool) or not isinstance(num_envs, int | np.integer) or num_envs < 1:
            raise ValueError(f"num_envs must be an integer >= 1, got {num_envs!r}")
        self.task_id = task_id
        self.num_threads = num_threads
        self.envpool_kwargs = envpool_kwargs
        self._seed = int(np.random.SeedSequence().generate_state(1)[0] >> 1) if seed is None else int(seed)
        self.pool = self._make_pool(num_envs)
        self._fresh = True  # built and never reset
        super().__init__(num_envs, self.pool.observation_space, self.pool.action_space)
        self._actions: np.ndarray | None = None
        self._episode_returns = np.zeros(num_envs, dtype=np.float64)
        self._episode_lengths = np.zeros(num_envs, dtype=np.int64)
        self._start_time = time.time()
        self.results_writer = None
        if monitor_file is not None:
            header = {"t_start": self._start_time, "env_id": task_id}
            self.results_writer = ResultsWriter(monitor_file, header=header, override_existing=override_existing)
            if not override_existing:
                self._start_time = self._continue_monitor_file(header)

    def _continue_monitor_file(self, header: dict[str, Any]) -> float:
        """
        The start time of the monitor file appended to: the time its games count from, so that its rows stay in
        order. A file that is not there yet gets ``Monitor``'s header first (``ResultsWriter`` writes none when
        appending).
        """
        assert self.results_writer is not None
        handler = self.results_writer.file_handler
        if handler.tell() == 0:
            handler.write(f"#{json.dumps(header)}\n")
            self.results_writer.logger.writeheader()
            handler.flush()
            return header["t_start"]
        start = monitor_start_time(handler.name)
        return header["t_start"] if start is None else start

    def _make_pool(self, num_envs: int) -> Any:
        envpool = _import_envpool()
        return envpool.make(
            self.task_id,
            env_type="gymnasium",
            num_envs=num_envs,
            batch_size=num_envs,  # synchronous: every step returns every env
            num_threads=self.num_threads,
            seed=self._seed,
            **self.envpool_kwargs,
        )

    def seed(self, seed: int | None = None) -> Sequence[int | None]:
        # Overridden: EnvPool takes its seeds when built, so the next reset() builds the pool anew
        if seed is None:
            seed = int(np.random.SeedSequence().generate_state(1)[0] >> 1)
        self._seeds = [seed + index for index in range(self.num_envs)]
        return self._seeds

    def reset(self) -> VecEnvObs:
        if self._seeds[0] is not None:
            # A pool never reset since it was built with this very seed is as good as a new one (saves a rebuild)
            if not (self._fresh and int(self._seeds[0]) == self._seed):
                self.pool.close()
                self._seed = int(self._seeds[0])
                self.pool = self._make_pool(self.num_envs)
            self._reset_seeds()
        self._fresh = False
        observations, _ = self.pool.reset()
        self.reset_infos = [{} for _ in range(self.num_envs)]
        self._episode_returns[:] = 0.0
        self._episode_lengths[:] = 0
        return observations

    def step_async(self, actions: np.ndarray) -> None:
        # EnvPool's threads step while the caller goes on (VPG copies the last observation into its buffer meanwhile)
        self._actions = np.asarray(actions)
        self.pool.send(self._actions)

    def step_wait(self) -> VecEnvStepReturn:
        observations, rewards, terminated, truncated, info = self.pool.recv(reset=False, return_info=True)
        dones = terminated | truncated
        self._episode_returns += info["reward"]  # the unclipped rewards: the game's score
        self._episode_lengths += 1
        infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        if dones.any():
            finished = np.flatnonzero(dones)
            game_over = info["terminated"].astype(bool) | truncated
            # EnvPool resets a finished env on its next step, ignoring the action: take that step now
            next_observations, *_ = self.pool.step(np.zeros_like(self._actions[finished]), env_id=finished)
            for index in finished:
                infos[index]["terminal_observation"] = observations[index]
                infos[index]["TimeLimit.truncated"] = bool(truncated[index] and not terminated[index])
                if game_over[index]:
                    infos[index]["episode"] = {
                        "r": float(self._episode_returns[index]),
                        "l": int(self._episode_lengths[index]),
                        "t": round(time.time() - self._start_time, 6),
                    }
                    if self.results_writer is not None:
                        self.results_writer.write_row(infos[index]["episode"])
                    self._episode_returns[index] = 0.0
                    self._episode_lengths[index] = 0
            observations = observations.copy()  # the terminal observations in infos keep their own rows
            observations[finished] = next_observations
        return observations, rewards.astype(np.float32), dones, infos

    def close(self) -> None:
        self.pool.close()
        if self.results_writer is not None:
            self.results_writer.close()

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        if attr_name == "render_mode":
            return [None for _ in self._get_indices(indices)]
        raise AttributeError(f"EnvPoolVecEnv has no per-env attribute {attr_name!r}: its envs live in EnvPool's C++ pool")

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        raise AttributeError(f"EnvPoolVecEnv cannot set {attr_name!r} on its envs: they live in EnvPool's C++ pool")

    def env_method(
        self, method_name: str, *method_args: Any, indices: VecEnvIndices = None, **method_kwargs: Any
    ) -> list[Any]:
        raise AttributeError(f"EnvPoolVecEnv cannot call {method_name!r} on its envs: they live in EnvPool's C++ pool")

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None) -> list[bool]:
        # The episode statistics are Monitor's (evaluate_policy reads them when it finds a Monitor)
        return [issubclass(Monitor, wrapper_class) for _ in self._get_indices(indices)]


def make_envpool_atari_env(
    env_id: str,
    n_envs: int = 1,
    seed: int | None = None,
    frame_stack: int = 1,
    raw_frames: bool = False,
    num_threads: int = 0,
    monitor_file: str | None = None,
    override_existing: bool = True,
    **envpool_kwargs: Any,
) -> EnvPoolVecEnv:
    """
    An Atari game on EnvPool as an SB3 ``VecEnv``, with ``AtariWrapper``'s settings (see the module docstring):
    observations ``(frame_stack, 84, 84)`` uint8, channels first (SB3's ``make_atari_env`` + ``VecFrameStack``
    gives the same frames channels last), or ``(3, 210, 160)`` RGB frames with ``raw_frames=True``.

    :param env_id: an Atari id, ``PongNoFrameskip-v4``, ``ALE/Pong-v5`` or ``Pong-v5``
    :param n_envs: number of envs
    :param seed: seed of env 0 (env ``i`` gets ``seed + i``)
    :param frame_stack: frames stacked per observation (ignored with ``raw_frames``)
    :param raw_frames: 210x160 RGB frames, one at a time, instead of the 84x84 grey stack
    :param num_threads: EnvPool's worker threads (0: EnvPool's default)
    :param monitor_file: a ``monitor.csv`` file of the games (see :class:`EnvPoolVecEnv`); None writes none
    :param override_existing: start ``monitor_file`` anew (True) or append to it (False)
    :param envpool_kwargs: overrides of the settings (``episodic_life=False``, ``reward_clip=False``, ...)
    """
    if isinstance(frame_stack, bool) or not isinstance(frame_stack, int | np.integer) or frame_stack < 1:
        raise ValueError(f"frame_stack must be an integer >= 1, got {frame_stack!r}")
    settings = {**ATARI_WRAPPER_SETTINGS, "stack_num": int(frame_stack)}
    if raw_frames:
        settings.update(RAW_FRAME_SETTINGS)
    settings.update(envpool_kwargs)
    monitor = {"monitor_file": monitor_file, "override_existing": override_existing}
    return EnvPoolVecEnv(envpool_atari_task(env_id), n_envs, seed=seed, num_threads=num_threads, **monitor, **settings)


def _atari_wrapper_settings(kwargs: dict[str, Any]) -> dict[str, Any]:
    """EnvPool's names for the arguments of SB3's ``AtariWrapper`` and of ``AtariRawFrames``."""
    names = {
        "noop_max": "noop_max",
        "frame_skip": "frame_skip",
        "terminal_on_life_loss": "episodic_life",
        "clip_reward": "reward_clip",
        "action_repeat_probability": "repeat_action_probability",
    }
    settings = {names[key]: value for key, value in kwargs.items() if key in names}
    if "screen_size" in kwargs:
        settings["img_height"] = settings["img_width"] = kwargs["screen_size"]
    unknown = set(kwargs) - set(names) - {"screen_size"}
    if unknown:
        raise ValueError(f"EnvPool has no setting for the wrapper arguments {sorted(unknown)}")
    return settings


def make_envpool_env(
    env_id: str,
    n_envs: int,
    seed: int | None = None,
    env_wrappers: Sequence[tuple[type, dict[str, Any]]] = (),
    frame_stack: int | None = None,
    num_threads: int = 0,
    monitor_file: str | None = None,
    override_existing: bool = True,
) -> VecEnv:
    """
    The EnvPool counterpart of an Atari env built with gymnasium wrappers (an rl_zoo3 entry's ``env_wrapper``):
    SB3's ``AtariWrapper`` or :class:`~sb3_vpg.common.atari_wrappers.AtariRawFrames` becomes the pool's own
    settings (with their arguments), and the wrappers after it become their VecEnv counterparts
    (``PongFrameDifference`` -> ``VecPongFrameDifference``, ``DiscreteActionSubset`` -> ``VecDiscreteActionSubset``).

    :param env_id: an Atari id (``PongNoFrameskip-v4``)
    :param n_envs: number of envs
    :param seed: seed of env 0
    :param env_wrappers: ``(wrapper class, keyword arguments)`` in the order they wrap the env; the first must be
        ``AtariWrapper`` or ``AtariRawFrames``
    :param frame_stack: frames stacked (EnvPool's own stack after ``AtariWrapper``; ``VecFrameStack`` otherwise)
    :param num_threads: EnvPool's worker threads (0: EnvPool's default)
    :param monitor_file: a ``monitor.csv`` file of the games (see :class:`EnvPoolVecEnv`); None writes none
    :param override_existing: start ``monitor_file`` anew (True) or append to it (False)
    :return: the VecEnv, wrapped
    """
    from stable_baselines3.common.atari_wrappers import AtariWrapper
    from stable_baselines3.common.vec_env import VecFrameStack

    from sb3_vpg.common import atari_wrappers

    vec_counterparts = {
        atari_wrappers.PongFrameDifference: atari_wrappers.VecPongFrameDifference,
        atari_wrappers.DiscreteActionSubset: atari_wrappers.VecDiscreteActionSubset,
    }
    if not env_wrappers or env_wrappers[0][0] not in (AtariWrapper, atari_wrappers.AtariRawFrames):
        first = env_wrappers[0][0].__name__ if env_wrappers else "no wrapper"
        raise ValueError(
            f"EnvPool builds Atari envs from AtariWrapper or AtariRawFrames settings; the env_wrapper starts with {first}"
        )
    (base, base_kwargs), rest = env_wrappers[0], env_wrappers[1:]
    pool = {"num_threads": num_threads, "monitor_file": monitor_file, "override_existing": override_existing}
    if base is AtariWrapper:
        venv: VecEnv = make_envpool_atari_env(
            env_id, n_envs, seed, frame_stack or 1, **pool, **_atari_wrapper_settings(base_kwargs)
        )
    else:
        settings = {"episodic_life": False, **_atari_wrapper_settings(base_kwargs)}  # AtariRawFrames' defaults
        venv = make_envpool_atari_env(env_id, n_envs, seed, raw_frames=True, **pool, **settings)
    for wrapper, kwargs in rest:
        if wrapper not in vec_counterparts:
            raise ValueError(f"The gymnasium wrapper {wrapper.__name__} has no VecEnv counterpart to run on EnvPool")
        venv = vec_counterparts[wrapper](venv, **kwargs)
    if base is not AtariWrapper and frame_stack:
        venv = VecFrameStack(venv, frame_stack)
    return venv


__all__ = [
    "ATARI_WRAPPER_SETTINGS",
    "RAW_FRAME_SETTINGS",
    "EnvPoolVecEnv",
    "envpool_atari_task",
    "make_envpool_atari_env",
    "make_envpool_env",
]
