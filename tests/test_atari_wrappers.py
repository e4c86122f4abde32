"""The source's Pong preprocessing (Karpathy's "Pong from Pixels") and the action subset, on real Pong frames."""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import DummyVecEnv

from sb3_vpg.common.atari_wrappers import (
    AtariRawFrames,
    DiscreteActionSubset,
    PongFrameDifference,
    VecDiscreteActionSubset,
    VecPongFrameDifference,
    binarize_frames,
)
from sb3_vpg.hyperparams import register_atari_envs

register_atari_envs()
ENV_ID = "PongNoFrameskip-v4"


def karpathy_prepro(frame):
    """The source's preprocessing, as Karpathy's pg-pong.py writes it (a float 80x80 of 0 and 1)."""
    image = frame[35:195]
    image = image[::2, ::2, 0].astype(float)
    image[image == 144] = 0
    image[image == 109] = 0
    image[image != 0] = 1
    return image


class RecordFrames(gym.Wrapper):
    """Keeps every raw frame the env returns, to compute the expected observations independently."""

    def __init__(self, env):
        super().__init__(env)
        self.frames = []

    def reset(self, **kwargs):
        frame, info = self.env.reset(**kwargs)
        self.frames = [frame]
        return frame, info

    def step(self, action):
        frame, *rest = self.env.step(action)
        self.frames.append(frame)
        return (frame, *rest)


def raw_pong(max_episode_steps=None):
    return AtariRawFrames(gym.make(ENV_ID, max_episode_steps=max_episode_steps))


@pytest.fixture(scope="module")
def pong_frames():
    """Raw frames of a Pong game with random actions, from the first one on."""
    env = raw_pong()
    frame, _ = env.reset(seed=0)
    frames = [frame]
    rng = np.random.default_rng(0)
    for _ in range(150):
        frames.append(env.step(int(rng.integers(6)))[0])
    env.close()
    return np.stack(frames)


def test_raw_frames_are_ales_frames_with_frame_skip():
    env = raw_pong()
    assert env.observation_space.shape == (210, 160, 3) and env.observation_space.dtype == np.uint8
    assert env.action_space == spaces.Discrete(6)
    names = []
    wrapper = env.env
    while isinstance(wrapper, gym.Wrapper):
        names.append(type(wrapper).__name__)
        wrapper = wrapper.env
    assert names[:4] == ["ClipRewardEnv", "FireResetEnv", "MaxAndSkipEnv", "NoopResetEnv"]


def test_binarize_frames_is_the_sources_preprocessing(pong_frames):
    binary = binarize_frames(pong_frames)
    assert binary.shape == (len(pong_frames), 80, 80) and binary.dtype == np.int8
    for frame, mine in zip(pong_frames, binary, strict=True):
        np.testing.assert_array_equal(mine, karpathy_prepro(frame))
    # channels first (EnvPool's layout) gives the same
    np.testing.assert_array_equal(binarize_frames(pong_frames.transpose(0, 3, 1, 2), channels_first=True), binary)


def test_the_paddles_and_the_ball_remain(pong_frames):
    binary = binarize_frames(pong_frames)
    late = binary[-1]
    columns = late.sum(axis=0)
    assert columns[70:73].sum() >= 4, "the agent's paddle (right, columns ~70-72)"
    assert columns[7:10].sum() >= 4, "the opponent's paddle (left, columns ~7-9)"
    # the ball: a foreground pixel between the paddles in some frame
    assert any(frame[:, 12:68].sum() > 0 for frame in binary), "the ball"
    # the background is gone: far fewer foreground pixels than the field
    assert binary.mean() < 0.05


def test_frame_difference_is_x_t_minus_x_t_minus_1(pong_frames):
    env = PongFrameDifference(RecordFrames(raw_pong()))
    assert env.observation_space == spaces.Box(-1, 1, (6400,), np.int8)
    obs, _ = env.reset(seed=0)
    np.testing.assert_array_equal(obs, np.zeros(6400, np.int8))
    recorder = env.env
    rng = np.random.default_rng(1)
    seen = set()
    for _ in range(100):
        obs, *_ = env.step(int(rng.integers(6)))
        expected = karpathy_prepro(recorder.frames[-1]) - karpathy_prepro(recorder.frames[-2])
        np.testing.assert_array_equal(obs, expected.ravel())
        seen |= set(np.unique(obs).tolist())
    assert seen == {-1, 0, 1}


def test_image_layout_for_a_cnn():
    env = PongFrameDifference(raw_pong(), flatten=False)
    assert env.observation_space == spaces.Box(-1, 1, (1, 80, 80), np.int8)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (1, 80, 80)
    assert env.step(0)[0].shape == (1, 80, 80)


def test_reset_clears_the_previous_frame():
    env = PongFrameDifference(raw_pong())
    env.reset(seed=0)
    for _ in range(60):
        env.step(0)
    obs, _ = env.reset(seed=1)
    assert not obs.any()
    first, *_ = env.step(0)
    # the difference after a reset is taken against the new episode's first frame, not the old episode's last
    recorder_env = PongFrameDifference(RecordFrames(raw_pong()))
    recorder_env.reset(seed=1)
    np.testing.assert_array_equal(first, recorder_env.step(0)[0])


def test_vec_frame_difference_equals_the_gym_wrapper_across_episode_ends():
    # 40-step episodes (time limit), so that episodes end and restart inside the test
    n_envs, seed = 3, 7
    gym_venv = make_vec_env(
        lambda: raw_pong(max_episode_steps=40), n_envs, seed, wrapper_class=PongFrameDifference, vec_env_cls=DummyVecEnv
    )
    vec_venv = VecPongFrameDifference(make_vec_env(lambda: raw_pong(max_episode_steps=40), n_envs, seed))
    assert vec_venv.observation_space == gym_venv.observation_space
    np.testing.assert_array_equal(vec_venv.reset(), gym_venv.reset())
    rng = np.random.default_rng(0)
    ends = 0
    for _ in range(100):
        actions = rng.integers(6, size=n_envs)
        obs_g, rew_g, done_g, infos_g = gym_venv.step(actions)
        obs_v, rew_v, done_v, infos_v = vec_venv.step(actions)
        np.testing.assert_array_equal(obs_v, obs_g)
        np.testing.assert_array_equal(done_v, done_g)
        np.testing.assert_array_equal(rew_v, rew_g)
        for index in np.flatnonzero(done_g):
            ends += 1
            np.testing.assert_array_equal(infos_v[index]["terminal_observation"], infos_g[index]["terminal_observation"])
            assert not obs_v[index].any()
    assert ends >= n_envs


def test_frames_of_another_shape_are_refused():
    from stable_baselines3.common.atari_wrappers import AtariWrapper

    with pytest.raises(ValueError, match=r"raw RGB frames.*AtariRawFrames"):
        PongFrameDifference(AtariWrapper(gym.make(ENV_ID)))
    with pytest.raises(ValueError, match="VecPongFrameDifference needs ALE's raw RGB frames"):
        VecPongFrameDifference(make_vec_env("CartPole-v1", 1))


def test_action_subset_maps_to_the_envs_actions():
    class Actions(gym.Env):
        observation_space = spaces.Discrete(1)
        action_space = spaces.Discrete(6)

        def reset(self, *, seed=None, options=None):
            return 0, {}

        def step(self, action):
            return 0, float(action), False, False, {}

    env = DiscreteActionSubset(Actions(), [2, 3])
    assert env.action_space == spaces.Discrete(2)
    env.reset()
    assert [env.step(action)[1] for action in (0, 1)] == [2.0, 3.0]
    venv = VecDiscreteActionSubset(DummyVecEnv([Actions, Actions]), [2, 3])
    assert venv.action_space == spaces.Discrete(2)
    venv.reset()
    np.testing.assert_array_equal(venv.step(np.array([1, 0]))[1], [3.0, 2.0])


@pytest.mark.parametrize(
    "actions, error, match",
    [
        ([2, 6], ValueError, "actions must be actions of the env, 0 to 5"),
        ([], ValueError, "non-empty"),
        ([0.5], ValueError, "indices"),
    ],
)
def test_action_subset_refuses_bad_actions(actions, error, match):
    with pytest.raises(error, match=match):
        DiscreteActionSubset(gym.make(ENV_ID), actions)


def test_action_subset_needs_a_discrete_space():
    with pytest.raises(TypeError, match="needs a Discrete action space"):
        DiscreteActionSubset(gym.make("Pendulum-v1"), [0])
