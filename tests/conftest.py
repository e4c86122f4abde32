import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces


class ScriptedEnv(gym.Env):
    """
    Plays a fixed script of episodes, whatever the actions: each episode is ``(rewards, how_it_ends)`` with
    ``how_it_ends`` in ``{"terminated", "truncated"}``. The observation is the step index inside the episode,
    so a critic sees distinct states.
    """

    observation_space = spaces.Box(low=0.0, high=100.0, shape=(1,), dtype=np.float32)
    action_space = spaces.Discrete(2)

    def __init__(self, script):
        self.script = script
        self.episode = -1
        self.t = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.episode = (self.episode + 1) % len(self.script)
        self.t = 0
        return np.array([0.0], dtype=np.float32), {}

    def step(self, action):
        rewards, how_it_ends = self.script[self.episode]
        reward = rewards[self.t]
        self.t += 1
        ended = self.t == len(rewards)
        terminated = ended and how_it_ends == "terminated"
        truncated = ended and how_it_ends == "truncated"
        return np.array([float(self.t)], dtype=np.float32), float(reward), terminated, truncated, {}


@pytest.fixture
def scripted_env_cls():
    return ScriptedEnv


class SeededImageEnv(gym.Env):
    """SB3's FakeImageEnv made reproducible (its images follow the reset seed) and informative (the reward
    is the image's mean brightness). Episodes last 10 steps."""

    def __init__(self, discrete: bool = True, size: int = 36):
        from stable_baselines3.common.envs import FakeImageEnv

        self._fake = FakeImageEnv(screen_height=size, screen_width=size, n_channels=1, discrete=discrete)
        self.observation_space, self.action_space = self._fake.observation_space, self._fake.action_space

    def reset(self, *, seed=None, options=None):
        if seed is not None:
            self.observation_space.seed(seed)
        return self._fake.reset(seed=seed)

    def step(self, action):
        obs, _, terminated, truncated, info = self._fake.step(action)
        return obs, float(obs.mean()) / 255.0, terminated, truncated, info
