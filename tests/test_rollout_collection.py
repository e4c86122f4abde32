"""
Where the returns come from: VPG's rollout data path (sb3_vpg.common.buffers), and the speed work on it
(sb3_vpg.common.fast_buffers), which must leave every number as SB3's own loop and add() give it.
"""

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import DictRolloutBuffer, RolloutBuffer
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.envs import IdentityEnv, IdentityEnvBox, IdentityEnvMultiBinary, IdentityEnvMultiDiscrete
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.vec_env import SubprocVecEnv, VecEnvWrapper, VecFrameStack

import sb3_vpg
from sb3_vpg import VPG
from sb3_vpg.common.buffers import VecRecordEnvSteps, VPGDictRolloutBuffer, VPGRolloutBuffer
from tests.conftest import SeededImageEnv, dict_cartpole


def test_no_callback_and_no_loop_variable_carries_the_data():
    # The returns are built from what VecRecordEnvSteps records: SB3's callback setup is VPG's as it is, and no code
    # reads the loop's local variables
    assert "_init_callback" not in VPG.__dict__
    sources = sorted(Path(sb3_vpg.__file__).parent.rglob("*.py"))
    assert sources and not [path.name for path in sources if ".locals[" in path.read_text()]


def test_a_step_must_be_recorded_before_it_is_added():
    buffer = VPGRolloutBuffer(4, spaces.Box(-1, 1, (2,)), spaces.Discrete(2), n_envs=2)
    step = (np.zeros((2, 2)), np.zeros((2, 1)), np.zeros(2), np.zeros(2), th.zeros(2), th.zeros(2))
    with pytest.raises(RuntimeError, match="record_step"):
        buffer.add(*step)
    buffer.record_step(np.ones(2), np.zeros(2))
    buffer.add(*step)
    assert buffer.pos == 1 and buffer.raw_rewards[0].tolist() == [1, 1]


class FreshObservations:
    """A VPG buffer that allocates new observation arrays for every rollout, as SB3's buffers do."""

    def reset(self):
        self._observation_storage = None
        super().reset()


class FreshObservationsBuffer(FreshObservations, VPGRolloutBuffer):
    pass


class FreshObservationsDictBuffer(FreshObservations, VPGDictRolloutBuffer):
    pass


@pytest.mark.parametrize(
    "policy, env_fn, fresh",
    [
        ("MlpPolicy", lambda: gym.make("CartPole-v1"), FreshObservationsBuffer),
        ("MultiInputPolicy", lambda: dict_cartpole(), FreshObservationsDictBuffer),
    ],
    ids=["flat", "Dict"],
)
def test_rollouts_reuse_the_observation_arrays(policy, env_fn, fresh, rollout_capture):
    # The observations of every rollout go into the first rollout's arrays (new ones page-fault on every first
    # write), with the same result as new arrays
    def observation_arrays(model):
        observations = model.rollout_buffer.observations
        return {"arrays": list(observations.values()) if isinstance(observations, dict) else [observations]}

    def train(**kwargs):
        # each rollout's observation arrays (held, so that no allocation can reuse their memory)
        capture = rollout_capture(also=observation_arrays)
        model = VPG(policy, make_vec_env(env_fn, n_envs=2, seed=0), n_steps=100, use_baseline=True, seed=0, **kwargs)
        model.learn(2 * 100 * 4, callback=capture)
        arrays = [rollout["arrays"] for rollout in capture.rollouts]
        assert len(arrays) == 4
        same = [all(a is b for a, b in zip(arrays[0], later, strict=True)) for later in arrays[1:]]
        return th.nn.utils.parameters_to_vector(model.policy.parameters()).detach(), same

    kept, kept_same = train()
    new, new_same = train(rollout_buffer_class=fresh)
    assert all(kept_same)
    assert not any(new_same)  # the comparison can tell the buffers apart
    assert th.equal(kept, new)


class SB3Collection:
    """VPG's buffer filled as SB3 fills its own: the whole step written by SB3's add(), after the env step."""

    def add(self, *args, **kwargs):
        (DictRolloutBuffer if isinstance(self.observations, dict) else RolloutBuffer).add(self, *args, **kwargs)


class SB3CollectionBuffer(SB3Collection, VPGRolloutBuffer):
    pass


class SB3CollectionDictBuffer(SB3Collection, VPGDictRolloutBuffer):
    pass


class SB3CollectionVPG(VPG):
    """SB3's collection loop with the recording of the rewards and episode ends only: no observation staged."""

    def collect_rollouts(self, env, callback, rollout_buffer, n_rollout_steps):
        env = VecRecordEnvSteps(env, rollout_buffer, self.num_timesteps)
        return OnPolicyAlgorithm.collect_rollouts(self, env, callback, rollout_buffer, n_rollout_steps)


def observation_copies(model) -> dict:
    """The rollout's observation arrays, copied, by key (``obs`` for a flat observation space)."""
    observations = model.rollout_buffer.observations
    items = observations.items() if isinstance(observations, dict) else [("obs", observations)]
    return {key: array.copy() for key, array in items}


def rollouts_and_parameters(algo, policy, env, rollout_capture, **kwargs):
    """Every array of every rollout's buffer, and the parameters after the last update."""
    arrays = ("actions", "rewards", "episode_starts", "values", "log_probs", "returns", "has_return")
    capture = rollout_capture(arrays, also=observation_copies)
    model = algo(policy, env, n_steps=32, seed=0, **kwargs)
    try:
        model.learn(3 * 32 * env.num_envs, callback=capture)
    finally:
        env.close()
    return capture.rollouts, th.nn.utils.parameters_to_vector(model.policy.parameters()).detach()


def frame_stacked_images():
    """Channels-last images stacked by VecFrameStack, which VPG transposes (a view), as on Atari."""
    return VecFrameStack(make_vec_env(SeededImageEnv, n_envs=2, seed=0), n_stack=2)


@pytest.mark.parametrize(
    "policy, make_env, buffer_class",
    [
        ("MlpPolicy", lambda: make_vec_env(lambda: IdentityEnv(dim=3, ep_length=10), 2, 0), SB3CollectionBuffer),
        ("MlpPolicy", lambda: make_vec_env(lambda: IdentityEnvBox(ep_length=10), 2, 0), SB3CollectionBuffer),
        ("MlpPolicy", lambda: make_vec_env(lambda: IdentityEnvMultiDiscrete(dim=3, ep_length=10), 2, 0), SB3CollectionBuffer),
        ("MlpPolicy", lambda: make_vec_env(lambda: IdentityEnvMultiBinary(dim=3, ep_length=10), 2, 0), SB3CollectionBuffer),
        ("MultiInputPolicy", lambda: make_vec_env(dict_cartpole, 2, 0), SB3CollectionDictBuffer),
        ("MlpPolicy", lambda: make_vec_env("CartPole-v1", 2, 0, vec_env_cls=SubprocVecEnv), SB3CollectionBuffer),
        ("CnnPolicy", frame_stacked_images, SB3CollectionBuffer),
    ],
    ids=["Discrete", "Box", "MultiDiscrete", "MultiBinary", "Dict", "SubprocVecEnv", "VecFrameStack"],
)
def test_staged_observations_fill_the_buffer_as_sb3s_add(policy, make_env, buffer_class, rollout_capture):
    # Observations copied into the buffer during the env step, the rest by VPG's add(): the same rollouts, bit for
    # bit, as SB3's collection loop and add() on the same seed (Discrete observations in the first case)
    staged, staged_parameters = rollouts_and_parameters(VPG, policy, make_env(), rollout_capture, use_baseline=True)
    sb3, sb3_parameters = rollouts_and_parameters(
        SB3CollectionVPG, policy, make_env(), rollout_capture, use_baseline=True, rollout_buffer_class=buffer_class
    )
    assert len(staged) == len(sb3) == 3
    for staged_rollout, sb3_rollout in zip(staged, sb3, strict=True):
        assert staged_rollout.keys() == sb3_rollout.keys()
        for name in staged_rollout:
            assert np.array_equal(staged_rollout[name], sb3_rollout[name]), name
    assert th.equal(staged_parameters, sb3_parameters)


class CheckStaged(VecEnvWrapper):
    """Under VPG's staging: blanks the buffer's row when the actions go out, and counts the steps whose row holds the
    observation by the time the envs return."""

    def __init__(self, venv):
        super().__init__(venv)
        self.model, self.staged, self.steps = None, 0, 0

    def step_async(self, actions):
        buffer = self.model.rollout_buffer
        buffer.observations[buffer.pos] = np.nan
        super().step_async(actions)

    def step_wait(self):
        buffer = self.model.rollout_buffer
        self.staged += np.array_equal(buffer.observations[buffer.pos], self.model._last_obs)
        self.steps += 1
        return self.venv.step_wait()

    def reset(self):
        return self.venv.reset()


class OwnStep(VecEnvWrapper):
    """A VecEnv whose step() does more than step_async() and step_wait()."""

    def __init__(self, venv):
        super().__init__(venv)
        self.calls = 0

    def step(self, actions):
        self.calls += 1
        return super().step(actions)

    def step_wait(self):
        return self.venv.step_wait()

    def reset(self):
        return self.venv.reset()


def test_a_vec_env_with_its_own_step_is_stepped_by_it():
    # VPG's staging calls step_async/step_wait; a VecEnv that overrides step() is left to SB3's loop instead
    env = OwnStep(make_vec_env("CartPole-v1", n_envs=2, seed=0))
    VPG("MlpPolicy", env, n_steps=32, seed=0).learn(2 * 32 * 2)
    assert env.calls == 2 * 32


def test_observations_reach_the_buffer_while_the_envs_step():
    env = CheckStaged(make_vec_env("CartPole-v1", n_envs=2, seed=0))
    model = VPG("MlpPolicy", env, n_steps=32, seed=0)
    env.model = model
    model.learn(2 * 32 * 2)
    assert env.steps == 2 * 32
    assert env.staged == env.steps
