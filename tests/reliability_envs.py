"""
Small environments for the reliability tests. This module imports only gymnasium and numpy, so that
SubprocVecEnv workers, which import it to build their env, start fast.
"""

import os
import signal

import gymnasium as gym
import numpy as np
from gymnasium import spaces

EPISODE_LENGTH = 16


class AlternateEnv(gym.Env):
    """
    Reward 3 for the action ``t % 2``, else 0; episodes of exactly ``EPISODE_LENGTH`` steps, and a reset that
    does not depend on any random state. With ``n_steps`` a multiple of the episode length, every rollout
    ends on an episode boundary, so a run resumed from a rollout-boundary checkpoint sees the same envs.
    The observation (time, previous action) follows the sampled actions, so it depends on the random stream.
    """

    observation_space = spaces.Box(-10.0, 10.0, (2,), np.float32)
    action_space = spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(2, dtype=np.float32), {}

    def step(self, action):
        reward = 3.0 if int(action) == self.t % 2 else 0.0
        self.t += 1
        obs = np.array([self.t / EPISODE_LENGTH, float(action)], dtype=np.float32)
        return obs, reward, self.t == EPISODE_LENGTH, False, {}


class FaultyEnv(gym.Env):
    """
    Episodes of 5 steps and reward 1, until the ``at``-th call of ``step`` (counted from 1 over the env's
    life), which commits ``fault``:

    - ``"raise"``: raise a RuntimeError
    - ``"kill"``: SIGKILL its own process (the OOM killer's way)
    - ``"nan_reward"``, ``"inf_reward"``, ``"huge_reward"`` (1e39: finite, beyond float32)
    - ``"nan_obs"``, ``"inf_obs"``: a NaN (or -inf) in the observation
    - ``"nan_reset_obs"``: the first reset's observation holds a NaN (``at`` is ignored)

    With ``dict_obs``, observations are ``{"pos": float vector, "count": integer}`` and the faults hit ``"pos"``.
    ``reward`` is the reward of every other step.
    """

    action_space = spaces.Discrete(2)

    def __init__(self, fault: str = "none", at: int = 3, dict_obs: bool = False, reward: float = 1.0):
        self.fault, self.at, self.dict_obs, self.reward = fault, at, dict_obs, reward
        box = spaces.Box(-np.inf, np.inf, (3,), np.float32)
        self.observation_space = spaces.Dict({"pos": box, "count": spaces.Discrete(10)}) if dict_obs else box
        self.calls = 0
        self.resets = 0

    def _obs(self, value: float):
        pos = np.full(3, value, dtype=np.float32)
        return {"pos": pos, "count": self.t % 10} if self.dict_obs else pos

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        self.resets += 1
        return self._obs(np.nan if self.fault == "nan_reset_obs" and self.resets == 1 else 0.0), {}

    def step(self, action):
        self.calls += 1
        self.t += 1
        reward, value = self.reward, float(self.t)
        if self.calls == self.at:
            if self.fault == "raise":
                raise RuntimeError("the env broke")
            if self.fault == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            reward = {"nan_reward": np.nan, "inf_reward": np.inf, "huge_reward": 1e39}.get(self.fault, reward)
            value = {"nan_obs": np.nan, "inf_obs": -np.inf}.get(self.fault, value)
        return self._obs(value), reward, self.t == 5, False, {}
