"""
The preprocessing of Karpathy's "Pong from Pixels" (http://karpathy.github.io/2016/05/31/rl/), which the source
tutorial follows, as gymnasium and VecEnv wrappers; and a subset of a Discrete action space (Pong's UP, DOWN).

From a 210x160 RGB frame of Pong, :func:`binarize_frames` keeps the play field and the moving objects only::

    I = frame[35:195:2, ::2, 0]             # crop the score and the borders, keep every 2nd pixel of the red channel
    x = (I != 0) & (I != 144) & (I != 109)  # erase the two background colours: 1 on the paddles and the ball

and the observation is the difference of two consecutive such frames, ``x_t - x_(t-1)`` in {-1, 0, 1}
(:class:`PongFrameDifference`, :class:`VecPongFrameDifference`): one frame cannot show where the ball goes,
the difference does. It is zero on the first step of an episode (there is no previous frame). The result is
an ``int8`` array, flat (6400 values, for an MLP as in the source) or ``(1, 80, 80)`` (for a CNN, with
``policy_kwargs=dict(normalize_images=False)``: the values are not 0-255 pixels).

The frames come from :class:`AtariRawFrames` (ALE's frames with ``AtariWrapper``'s frame skip, no-op starts
and clipped rewards, neither resized nor grey) or from EnvPool's raw frames
(``sb3_vpg.common.envpool_env.make_envpool_atari_env(..., raw_frames=True)``), channels last or first.
"""

from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from stable_baselines3.common.atari_wrappers import ClipRewardEnv, EpisodicLifeEnv, FireResetEnv, MaxAndSkipEnv, NoopResetEnv
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper
from stable_baselines3.common.vec_env.base_vec_env import VecEnvObs, VecEnvStepReturn

#: Rows of the play field in a 210x160 Pong frame (above: the score; below: the bottom border).
PLAY_FIELD_ROWS = (35, 195)
#: Red-channel values of Pong's two background colours.
BACKGROUND = (144, 109)
FRAME_SHAPE = (210, 160, 3)


def _frames_layout(space: spaces.Space, name: str) -> bool:
    """True for channels-first (3, 210, 160) frames, False for channels-last (210, 160, 3); else a ValueError."""
    shape = getattr(space, "shape", None)
    if shape == FRAME_SHAPE:
        return False
    if shape == (3, 210, 160):
        return True
    raise ValueError(
        f"{name} needs ALE's raw RGB frames, shape (210, 160, 3) or (3, 210, 160), got the observation space {space}: "
        "use AtariRawFrames (not AtariWrapper) or make_envpool_atari_env(..., raw_frames=True)"
    )


def binarize_frames(frames: np.ndarray, channels_first: bool = False) -> np.ndarray:
    """
    The play field of Pong frames, halved, background erased: ``(..., 80, 80)`` ``int8`` of 0 and 1 (1 on the
    paddles and the ball), from frames ``(..., 210, 160, 3)`` (or ``(..., 3, 210, 160)`` when ``channels_first``).
    """
    top, bottom = PLAY_FIELD_ROWS
    red = frames[..., 0, top:bottom:2, ::2] if channels_first else frames[..., top:bottom:2, ::2, 0]
    foreground = red != 0
    for colour in BACKGROUND:
        foreground &= red != colour
    return foreground.view(np.int8)


def _difference_space(flatten: bool) -> spaces.Box:
    return spaces.Box(-1, 1, (80 * 80,) if flatten else (1, 80, 80), np.int8)


class PongFrameDifference(gym.Wrapper):
    """
    Observations ``x_t - x_(t-1)`` of :func:`binarize_frames` (see the module docstring), zero after a reset.

    :param env: an env of raw Pong frames (``AtariRawFrames``)
    :param flatten: a 6400-vector (for ``MlpPolicy``) instead of a ``(1, 80, 80)`` image (for ``CnnPolicy``)
    """

    def __init__(self, env: gym.Env, flatten: bool = True):
        self._channels_first = _frames_layout(env.observation_space, "PongFrameDifference")
        super().__init__(env)
        self.observation_space = _difference_space(flatten)
        self._previous: np.ndarray | None = None

    def reset(self, **kwargs: Any) -> tuple[np.ndarray, dict[str, Any]]:
        frame, info = self.env.reset(**kwargs)
        self._previous = binarize_frames(frame, self._channels_first)
        return np.zeros(self.observation_space.shape, np.int8), info

    def step(self, action: Any) -> tuple[np.ndarray, SupportsFloat, bool, bool, dict[str, Any]]:
        frame, reward, terminated, truncated, info = self.env.step(action)
        current = binarize_frames(frame, self._channels_first)
        difference = current - self._previous
        self._previous = current
        return difference.reshape(self.observation_space.shape), reward, terminated, truncated, info


class VecPongFrameDifference(VecEnvWrapper):
    """
    :class:`PongFrameDifference` for a whole VecEnv at once (one numpy pass over the batch): each env's
    observation is ``x_t - x_(t-1)``, zero on the first step of each episode; ``terminal_observation`` in
    ``infos`` is the difference of the episode's last frame.

    :param venv: a VecEnv of raw Pong frames (EnvPool's ``raw_frames``, or ``AtariRawFrames`` envs)
    :param flatten: a 6400-vector (for ``MlpPolicy``) instead of a ``(1, 80, 80)`` image (for ``CnnPolicy``)
    """

    def __init__(self, venv: VecEnv, flatten: bool = True):
        self._channels_first = _frames_layout(venv.observation_space, "VecPongFrameDifference")
        super().__init__(venv, observation_space=_difference_space(flatten))
        self._previous = np.zeros((venv.num_envs, 80, 80), np.int8)

    def reset(self) -> VecEnvObs:
        self._previous = binarize_frames(self.venv.reset(), self._channels_first)
        return np.zeros((self.num_envs, *self.observation_space.shape), np.int8)

    def step_wait(self) -> VecEnvStepReturn:
        frames, rewards, dones, infos = self.venv.step_wait()
        current = binarize_frames(frames, self._channels_first)  # a new array, which becomes _previous
        difference = current - self._previous
        for index in np.flatnonzero(dones):
            # frames[index] starts the next episode: its difference is zero; the last frame's goes to infos
            terminal = infos[index].get("terminal_observation")
            if terminal is not None:
                last = binarize_frames(terminal, self._channels_first) - self._previous[index]
                infos[index]["terminal_observation"] = last.reshape(self.observation_space.shape)
            difference[index] = 0
        self._previous = current
        return difference.reshape(self.num_envs, *self.observation_space.shape), rewards, dones, infos


def _check_action_subset(action_space: spaces.Space, actions: Any, name: str) -> np.ndarray:
    if not isinstance(action_space, spaces.Discrete):
        raise TypeError(f"{name} needs a Discrete action space, got {action_space}")
    table = np.asarray(actions)
    if table.ndim != 1 or len(table) == 0 or table.dtype.kind not in "iu":
        raise ValueError(f"actions must be a non-empty list of action indices, got {actions!r}")
    start, n = int(action_space.start), int(action_space.n)
    if ((table < start) | (table >= start + n)).any():
        raise ValueError(f"actions must be actions of the env, {start} to {start + n - 1}, got {actions!r}")
    return table


class DiscreteActionSubset(gym.ActionWrapper):
    """
    Only some actions of a Discrete action space: action ``i`` of the wrapped env is ``actions[i]`` of the env.
    Pong's ``actions=[2, 3]`` are UP and DOWN in ALE's minimal action set (NOOP, FIRE, UP, DOWN, ...).

    :param env: an env with a Discrete action space
    :param actions: the env's actions to keep, in order
    """

    def __init__(self, env: gym.Env, actions: list[int]):
        self._table = _check_action_subset(env.action_space, actions, "DiscreteActionSubset")
        super().__init__(env)
        self.action_space = spaces.Discrete(len(self._table))

    def action(self, action: Any) -> int:
        return int(self._table[int(action)])


class VecDiscreteActionSubset(VecEnvWrapper):
    """:class:`DiscreteActionSubset` for a whole VecEnv: action ``i`` of each env is ``actions[i]`` of the env."""

    def __init__(self, venv: VecEnv, actions: list[int]):
        self._table = _check_action_subset(venv.action_space, actions, "VecDiscreteActionSubset")
        super().__init__(venv, action_space=spaces.Discrete(len(self._table)))

    def step_async(self, actions: np.ndarray) -> None:
        self.venv.step_async(self._table[np.asarray(actions).astype(np.int64).reshape(-1)])

    def reset(self) -> VecEnvObs:
        return self.venv.reset()

    def step_wait(self) -> VecEnvStepReturn:
        return self.venv.step_wait()


class AtariRawFrames(gym.Wrapper):
    """
    SB3's ``AtariWrapper`` without its last step: no-op starts, frame skip with max-pooling, optional end of
    episode at a life loss, FIRE at reset where the game needs it, clipped rewards; the frames stay ALE's
    210x160 RGB, for a preprocessing of one's own (:class:`PongFrameDifference`). EnvPool's
    ``raw_frames=True`` gives the same frames.

    :param env: an ALE env without frame skip (``PongNoFrameskip-v4``)
    :param noop_max: at most this many no-ops at reset
    :param frame_skip: frames per action (max-pooled over the last two)
    :param terminal_on_life_loss: a life loss ends the episode (off by default: the source plays whole games)
    :param clip_reward: rewards clipped to their sign
    """

    def __init__(
        self,
        env: gym.Env,
        noop_max: int = 30,
        frame_skip: int = 4,
        terminal_on_life_loss: bool = False,
        clip_reward: bool = True,
    ):
        if noop_max > 0:
            env = NoopResetEnv(env, noop_max=noop_max)
        if frame_skip > 1:
            env = MaxAndSkipEnv(env, skip=frame_skip)
        if terminal_on_life_loss:
            env = EpisodicLifeEnv(env)
        if "FIRE" in env.unwrapped.get_action_meanings():  # type: ignore[attr-defined]
            env = FireResetEnv(env)
        if clip_reward:
            env = ClipRewardEnv(env)
        super().__init__(env)


__all__ = [
    "AtariRawFrames",
    "DiscreteActionSubset",
    "PongFrameDifference",
    "VecDiscreteActionSubset",
    "VecPongFrameDifference",
    "binarize_frames",
]
