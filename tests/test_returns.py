"""The Monte-Carlo returns, against hand computations and a naive reference."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch as th
from hypothesis import given, settings
from hypothesis import strategies as st
from stable_baselines3.common.vec_env import DummyVecEnv

from sb3_vpg import VPG, discounted_reward_to_go

GAMMA = 0.5
# One env, 10 steps: a terminated episode, a time-limit truncated one, then one still running at the end.
SCRIPT = [([1, 2, 3], "terminated"), ([0, 0, 5, 0], "truncated"), ([1, 1, 1, 1, 1], "terminated")]
N_STEPS = 10


def values_the_bootstrap_needs(model) -> dict:
    """V of the truncated episode's terminal observation and of the observation after the last step."""
    with th.no_grad():
        obs = th.tensor([[4.0], [3.0]])
        v_truncated, v_tail = model.policy.predict_values(obs).flatten().tolist()
    return {"v_truncated": v_truncated, "v_tail": v_tail}


def run_one_rollout(env_cls, rollout_capture, **kwargs) -> SimpleNamespace:
    """What the buffer holds after one rollout of the script, and V of the states the bootstrap needs."""
    env = DummyVecEnv([lambda: env_cls(SCRIPT)])
    model = VPG("MlpPolicy", env, n_steps=N_STEPS, gamma=GAMMA, seed=0, **kwargs)
    capture = rollout_capture(("returns", "has_return", "values", "advantages"), also=values_the_bootstrap_needs)
    model.learn(N_STEPS, callback=capture)
    (rollout,) = capture.rollouts
    return SimpleNamespace(
        **{name: value[:, 0] if isinstance(value, np.ndarray) else value for name, value in rollout.items()}
    )


@pytest.mark.parametrize(
    "kwargs, expected_returns, expected_has_return",
    [
        # Pure REINFORCE: the truncated episode is summed from its raw rewards, the running tail has no return
        (dict(), [2.75, 3.5, 3, 1.25, 2.5, 5, 0, 0, 0, 0], [1] * 7 + [0] * 3),
        # The tail's partial sum, as if the episode had ended at the rollout's end
        (dict(incomplete_episodes="truncate"), [2.75, 3.5, 3, 1.25, 2.5, 5, 0, 1.75, 1.5, 1], [1] * 10),
        # Pong: every non-zero reward closes the return, so the tail's steps (reward 1) have one too
        (dict(reset_on_reward=True), [1, 2, 3, 1.25, 2.5, 5, 0, 1, 1, 1], [1] * 10),
    ],
)
def test_pure_returns_match_hand_computation(scripted_env_cls, rollout_capture, kwargs, expected_returns, expected_has_return):
    capture = run_one_rollout(scripted_env_cls, rollout_capture, **kwargs)
    has_return = np.array(expected_has_return, dtype=bool)
    np.testing.assert_array_equal(capture.has_return, has_return)
    np.testing.assert_allclose(capture.returns[has_return], np.array(expected_returns)[has_return], rtol=1e-6)
    # No value estimate anywhere: the weights are the returns themselves
    np.testing.assert_allclose(capture.advantages, capture.returns)


@pytest.mark.parametrize("reset_on_reward", [False, True])
def test_baseline_returns_bootstrap_truncation_and_tail(scripted_env_cls, rollout_capture, reset_on_reward):
    capture = run_one_rollout(scripted_env_cls, rollout_capture, use_baseline=True, reset_on_reward=reset_on_reward)
    v_trunc, v_tail = capture.v_truncated, capture.v_tail
    # The truncated episode's last reward carries gamma * V(terminal obs), as in Spinning Up's VPG
    last = 0 + GAMMA * v_trunc
    truncated_episode = [0 + GAMMA * (0 + GAMMA * (5 + GAMMA * last)), 0 + GAMMA * (5 + GAMMA * last), 5 + GAMMA * last, last]
    if reset_on_reward:
        expected = [1, 2, 3, 1.25, 2.5, 5, last, 1, 1, 1]  # the reward 5 closes the return before the truncation
    else:
        tail = [1 + GAMMA * (1 + GAMMA * (1 + GAMMA * v_tail)), 1 + GAMMA * (1 + GAMMA * v_tail), 1 + GAMMA * v_tail]
        expected = [2.75, 3.5, 3, *truncated_episode, *tail]
    np.testing.assert_array_equal(capture.has_return, np.ones(N_STEPS, dtype=bool))
    np.testing.assert_allclose(capture.returns, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(capture.advantages, capture.returns - capture.values, rtol=1e-5, atol=1e-6)


def test_baseline_can_drop_the_tail(scripted_env_cls, rollout_capture):
    capture = run_one_rollout(scripted_env_cls, rollout_capture, use_baseline=True, incomplete_episodes="drop")
    np.testing.assert_array_equal(capture.has_return, [1] * 7 + [0] * 3)


def naive_reward_to_go(rewards, episode_ends, gamma, last_values):
    """One env at a time, one episode at a time, summing discounted future rewards explicitly."""
    n_steps, n_envs = rewards.shape
    returns = np.zeros((n_steps, n_envs))
    has_return = np.zeros((n_steps, n_envs), dtype=bool)
    for env in range(n_envs):
        for t in range(n_steps):
            total, discount, k = 0.0, 1.0, t
            while True:
                total += discount * rewards[k, env]
                discount *= gamma
                if episode_ends[k, env]:
                    has_return[t, env] = True
                    break
                k += 1
                if k == n_steps:
                    if last_values is not None:
                        total += discount * last_values[env]
                        has_return[t, env] = True
                    break
            returns[t, env] = total
    return returns, has_return


@settings(max_examples=200, deadline=None)
@given(
    data=st.data(),
    n_steps=st.integers(1, 12),
    n_envs=st.integers(1, 4),
    gamma=st.floats(0.01, 1.0),
    bootstrap=st.booleans(),
)
def test_reward_to_go_matches_naive_reference(data, n_steps, n_envs, gamma, bootstrap):
    floats = st.floats(-100, 100, allow_nan=False, width=32)
    rewards = np.array(data.draw(st.lists(floats, min_size=n_steps * n_envs, max_size=n_steps * n_envs))).reshape(
        n_steps, n_envs
    )
    ends = np.array(data.draw(st.lists(st.booleans(), min_size=n_steps * n_envs, max_size=n_steps * n_envs))).reshape(
        n_steps, n_envs
    )
    last_values = np.array(data.draw(st.lists(floats, min_size=n_envs, max_size=n_envs))) if bootstrap else None

    returns, has_return = discounted_reward_to_go(rewards, ends, gamma, last_values)
    expected_returns, expected_has_return = naive_reward_to_go(rewards, ends, gamma, last_values)

    np.testing.assert_array_equal(has_return, expected_has_return)
    np.testing.assert_allclose(returns[has_return], expected_returns[has_return], rtol=1e-9, atol=1e-6)
    assert np.all(np.isfinite(returns))


def test_atari_life_loss_ends_the_return(rollout_capture):
    ale_py = pytest.importorskip("ale_py")
    import gymnasium as gym
    from stable_baselines3.common.env_util import make_atari_env

    gym.register_envs(ale_py)
    # SB3's AtariWrapper reports each lost life as an episode end; Monitor still counts whole games
    env = make_atari_env("BreakoutNoFrameskip-v4", n_envs=1, seed=0)
    model = VPG("CnnPolicy", env, n_steps=300, seed=0)
    capture = rollout_capture(
        ("episode_ends", "raw_rewards", "returns"), also=lambda model: {"games": len(model.ep_info_buffer)}
    )
    model.learn(300, callback=capture)
    env.close()
    (rollout,) = capture.rollouts
    seen = {
        "ends": rollout["episode_ends"][:, 0],
        "rewards": rollout["raw_rewards"][:, 0],
        "returns": rollout["returns"][:, 0],
        "games": rollout["games"],
    }
    n_ends = int(seen["ends"].sum())
    assert n_ends >= 3 and n_ends > seen["games"]  # lives were lost inside games
    # The return restarts at each lost life: at an end, it is that step's reward alone
    np.testing.assert_allclose(seen["returns"][seen["ends"]], seen["rewards"][seen["ends"]])


@pytest.mark.parametrize("dict_obs", [False, True])
@pytest.mark.parametrize("used_fraction", [1.0, 0.6])
def test_one_batch_equals_sb3_gather(dict_obs, used_fraction):
    # A rollout whose samples are all used is handed over without SB3's copy of every sample; same samples
    from gymnasium import spaces

    from sb3_vpg.common.buffers import VPGDictRolloutBuffer, VPGRolloutBuffer

    image = spaces.Box(0, 255, (3, 8, 8), np.uint8)
    obs_space = spaces.Dict({"img": image, "vec": spaces.Box(-1, 1, (2,))}) if dict_obs else image
    buffer_cls = VPGDictRolloutBuffer if dict_obs else VPGRolloutBuffer
    buffer = buffer_cls(6, obs_space, spaces.Discrete(3), n_envs=4, use_baseline=True, incomplete_episodes="drop")
    rng = np.random.default_rng(0)
    for step in range(6):
        obs = obs_space.sample()
        obs = (
            {key: np.stack([obs_space[key].sample() for _ in range(4)]) for key in obs}
            if dict_obs
            else np.stack([obs_space.sample() for _ in range(4)])
        )
        last_ends = np.array([True, True, used_fraction == 1, used_fraction == 1])  # envs 2-3 may keep a tail
        buffer.record_step(rng.normal(size=4), rng.random(4) < 0.3 if step < 5 else last_ends)
        buffer.add(obs, rng.integers(3, size=(4, 1)), rng.normal(size=4), np.zeros(4), th.randn(4), th.randn(4))
    buffer.compute_returns_and_advantage(th.zeros(4), np.ones(4))
    (whole,) = buffer.get()
    indices = np.flatnonzero(buffer.has_return)
    assert (len(indices) < buffer.has_return.size) == (used_fraction < 1)
    expected = buffer._get_samples(indices)
    for ours, theirs in zip(whole, expected, strict=True):
        if dict_obs and isinstance(ours, dict):
            assert ours.keys() == theirs.keys() and all(th.equal(ours[key], theirs[key]) for key in ours)
        else:
            assert ours.dtype == theirs.dtype and th.equal(ours, theirs)
    images = whole.observations["img"] if dict_obs else whole.observations
    buffer_images = buffer.observations["img"] if dict_obs else buffer.observations
    assert np.shares_memory(images.numpy(), buffer_images) == (used_fraction == 1)
    assert [len(batch.returns) for batch in buffer.get(5)] == [5] * (len(indices) // 5) + (
        [len(indices) % 5] if len(indices) % 5 else []
    )
