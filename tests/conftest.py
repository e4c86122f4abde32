import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.envs import IdentityEnv, IdentityEnvBox, IdentityEnvMultiBinary, IdentityEnvMultiDiscrete


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


class RolloutCapture(BaseCallback):
    """
    Copies, at the end of every rollout and before its update, the rollout buffer's arrays named in ``arrays`` (a
    Dict observation space's ``observations`` as a dict of arrays) and what ``also(model)`` returns: ``rollouts``
    holds one dict per rollout.
    """

    def __init__(self, arrays=(), also=None):
        super().__init__()
        self.arrays, self.also, self.rollouts = arrays, also, []

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        buffer = self.model.rollout_buffer
        rollout = {}
        for name in self.arrays:
            value = getattr(buffer, name)
            rollout[name] = {key: array.copy() for key, array in value.items()} if isinstance(value, dict) else value.copy()
        if self.also is not None:
            rollout.update(self.also(self.model))
        self.rollouts.append(rollout)


@pytest.fixture
def rollout_capture():
    """``rollout_capture(arrays, also=None)``: a callback that copies what each rollout leaves in the buffer."""
    return RolloutCapture


#: An env of each supported action space, with 10-step episodes.
ACTION_SPACE_ENVS = {
    "Discrete": lambda: IdentityEnv(dim=3, ep_length=10),
    "Box": lambda: IdentityEnvBox(ep_length=10),
    "MultiDiscrete": lambda: IdentityEnvMultiDiscrete(dim=3, ep_length=10),
    "MultiBinary": lambda: IdentityEnvMultiBinary(dim=3, ep_length=10),
}
EVERY_ACTION_SPACE = pytest.mark.parametrize("env_fn", list(ACTION_SPACE_ENVS.values()), ids=list(ACTION_SPACE_ENVS))


def dict_cartpole():
    """CartPole whose observation is a Dict of positions and velocities (deterministic for a seed)."""
    env = gym.make("CartPole-v1")
    low, high = env.observation_space.low, env.observation_space.high
    space = spaces.Dict({"position": spaces.Box(low[::2], high[::2]), "velocity": spaces.Box(low[1::2], high[1::2])})
    return gym.wrappers.TransformObservation(env, lambda obs: {"position": obs[::2], "velocity": obs[1::2]}, space)


@pytest.fixture(scope="session")
def postgres_server():
    """A real PostgreSQL server on 127.0.0.1 for the session (tests/postgres.py), stopped and removed at the end.
    Skipped without the ``distributed`` extra, except in CI, where the test extra installs it."""
    import importlib.util
    import os

    from tests.postgres import PostgresServer, pgserver_install

    try:
        pgserver_install()
        if importlib.util.find_spec("psycopg2") is None:
            raise ModuleNotFoundError("psycopg2 is not installed: pip install 'sb3-vpg[distributed]'")
    except (ModuleNotFoundError, FileNotFoundError) as error:
        if os.environ.get("CI"):
            raise
        pytest.skip(str(error))
    server = PostgresServer().start()
    yield server
    server.remove()
