"""EnvPool's Atari engine as an SB3 VecEnv: SB3's conventions, checked against SB3's own Atari stack and EnvPool itself."""

import sys
import warnings

import envpool
import numpy as np
import pytest
from gymnasium import spaces
from stable_baselines3.common.env_util import make_atari_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.monitor import load_results
from stable_baselines3.common.vec_env import VecFrameStack

from sb3_vpg import VPG
from sb3_vpg.common.atari_wrappers import AtariRawFrames, DiscreteActionSubset, PongFrameDifference
from sb3_vpg.common.envpool_env import (
    ATARI_WRAPPER_SETTINGS,
    EnvPoolVecEnv,
    envpool_atari_task,
    make_envpool_atari_env,
    make_envpool_env,
)
from sb3_vpg.hyperparams import register_atari_envs

register_atari_envs()
ENV_ID = "PongNoFrameskip-v4"


def play(venv, steps, seed=0):
    """Random actions for ``steps`` steps: the (obs, rewards, dones, infos) of each step."""
    rng = np.random.default_rng(seed)
    trace = []
    for _ in range(steps):
        trace.append(venv.step(rng.integers(venv.action_space.n, size=venv.num_envs)))
    return trace


def test_spaces_and_dtypes_match_sb3s_atari_stack():
    pool = make_envpool_atari_env(ENV_ID, n_envs=2, seed=0, frame_stack=4)
    sb3 = VecFrameStack(make_atari_env(ENV_ID, n_envs=2, seed=0), 4)
    try:
        assert pool.action_space == sb3.action_space == spaces.Discrete(6)
        # the same 84x84x4 grey frames, EnvPool's channels first
        assert pool.observation_space.shape == (4, 84, 84) and sb3.observation_space.shape == (84, 84, 4)
        assert pool.observation_space.dtype == sb3.observation_space.dtype == np.uint8
        obs = pool.reset()
        assert obs.shape == (2, 4, 84, 84) and obs.dtype == np.uint8
        obs, rewards, dones, infos = pool.step(np.zeros(2, dtype=np.int64))
        assert rewards.dtype == np.float32 and dones.dtype == bool and len(infos) == 2
    finally:
        pool.close()
        sb3.close()


def test_raw_frames_match_ales_raw_frames():
    pool = make_envpool_atari_env(ENV_ID, n_envs=1, seed=0, raw_frames=True)
    try:
        assert pool.observation_space == spaces.Box(0, 255, (3, 210, 160), np.uint8)
        assert pool.reset().shape == (1, 3, 210, 160)
    finally:
        pool.close()


def test_episodes_report_their_summed_rewards_lengths_and_truncation():
    # 60-step games (time limit): many episodes end inside the test
    pool = make_envpool_atari_env(ENV_ID, n_envs=3, seed=1, max_episode_steps=60)
    pool.reset()
    returns, lengths, episodes = np.zeros(3), np.zeros(3, dtype=int), 0
    for _obs, rewards, dones, infos in play(pool, 200):
        returns += rewards  # Pong's points are +-1: clipping keeps them
        lengths += 1
        for index in np.flatnonzero(dones):
            info = infos[index]
            assert info["episode"]["r"] == returns[index] and info["episode"]["l"] == lengths[index]
            assert info["TimeLimit.truncated"] is True  # the time limit, not the game, ended it
            assert info["terminal_observation"].shape == (1, 84, 84)
            returns[index], lengths[index] = 0, 0
            episodes += 1
        for index in np.flatnonzero(~dones):
            assert "episode" not in infos[index] and "terminal_observation" not in infos[index]
    pool.close()
    assert episodes == 3 * (200 // 60)


def test_games_are_rows_of_a_monitor_file_that_sb3_reads(tmp_path):
    def games(monitor_file, override_existing):
        pool = make_envpool_atari_env(
            ENV_ID, n_envs=2, seed=1, max_episode_steps=60, monitor_file=monitor_file, override_existing=override_existing
        )
        pool.reset()
        episodes = [info["episode"] for *_, infos in play(pool, 130) for info in infos if "episode" in info]
        pool.close()
        return episodes

    first = games(str(tmp_path), override_existing=True)
    assert len(first) == 4  # two 60-step games per env
    rows = load_results(str(tmp_path))  # reads tmp_path/monitor.csv, Monitor's format, sorted by time
    assert sorted(rows["r"]) == sorted(game["r"] for game in first) and rows["l"].tolist() == [60] * 4
    # A resumed run appends its games under the same header, timed from the first start: after the first games
    second = games(str(tmp_path), override_existing=False)
    rows = load_results(str(tmp_path))
    assert sorted(rows["r"]) == sorted(game["r"] for game in first + second)
    assert max(game["t"] for game in first) < min(game["t"] for game in second)
    assert (tmp_path / "monitor.csv").read_text().count("#{") == 1
    # A resumed run whose file is not there yet starts one, with Monitor's header
    new = tmp_path / "new"
    resumed = games(str(new / "monitor.csv"), override_existing=False)
    assert sorted(load_results(str(new))["r"]) == sorted(game["r"] for game in resumed)


def test_auto_reset_returns_the_next_episodes_first_observation():
    # EnvPool alone resets a finished env on the next step; the VecEnv returns that observation at once
    settings = {**ATARI_WRAPPER_SETTINGS, "stack_num": 1, "max_episode_steps": 30}
    raw = envpool.make("Pong-v5", env_type="gymnasium", num_envs=2, batch_size=2, seed=3, **settings)
    pool = make_envpool_atari_env(ENV_ID, n_envs=2, seed=3, max_episode_steps=30)
    np.testing.assert_array_equal(raw.reset()[0], pool.reset())
    actions = np.random.default_rng(0).integers(6, size=(30, 2))
    for action in actions:
        raw_obs, *_ = raw.step(action)
        obs, _, dones, infos = pool.step(action)
    assert dones.all()
    np.testing.assert_array_equal(infos[0]["terminal_observation"], raw_obs[0])
    next_obs, _, _, _, info = raw.step(np.zeros(2, dtype=np.int64))  # EnvPool's own reset step
    assert (info["elapsed_step"] == 0).all()
    np.testing.assert_array_equal(obs, next_obs)
    raw.close()
    pool.close()


def test_same_seed_same_games_other_seed_other_games():
    def trace(seed):
        pool = make_envpool_atari_env(ENV_ID, n_envs=2, seed=seed, raw_frames=True)
        first = pool.reset()
        frames = [first] + [step[0] for step in play(pool, 50)]
        pool.close()
        return np.stack(frames)

    np.testing.assert_array_equal(trace(5), trace(5))
    assert not np.array_equal(trace(5), trace(6))


def test_seed_then_reset_replays_a_pool_built_with_that_seed():
    pool = make_envpool_atari_env(ENV_ID, n_envs=2, seed=0)
    assert pool.seed(11) == [11, 12]
    reseeded = [pool.reset()] + [step[0] for step in play(pool, 40)]
    fresh = make_envpool_atari_env(ENV_ID, n_envs=2, seed=11)
    expected = [fresh.reset()] + [step[0] for step in play(fresh, 40)]
    np.testing.assert_array_equal(np.stack(reseeded), np.stack(expected))
    pool.close()
    fresh.close()


def test_seeding_a_new_pool_with_its_own_seed_keeps_it():
    # VPG(seed=s) seeds the env before its first reset: a pool built with that seed needs no rebuild
    pool = make_envpool_atari_env(ENV_ID, n_envs=2, seed=4)
    built = pool.pool
    pool.seed(4)
    first = pool.reset()
    assert pool.pool is built
    fresh = make_envpool_atari_env(ENV_ID, n_envs=2, seed=4)
    np.testing.assert_array_equal(first, fresh.reset())
    pool.seed(4)  # after a reset the same seed does rebuild: the games start over
    np.testing.assert_array_equal(pool.reset(), first)
    assert pool.pool is not built
    pool.close()
    fresh.close()


def test_vpg_logs_game_scores_and_evaluate_policy_reads_them(tmp_path):
    pool = make_envpool_atari_env(ENV_ID, n_envs=2, seed=0, max_episode_steps=100)
    model = VPG("CnnPolicy", pool, n_steps=128, seed=0, policy_kwargs=dict(features_extractor_kwargs=dict(features_dim=32)))
    model.learn(256)
    assert len(model.ep_info_buffer) == 2  # 128 steps per env: one 100-step game each
    assert all(-21 <= info["r"] <= 21 and info["l"] == 100 for info in model.ep_info_buffer)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "not wrapped with a Monitor" warning
        rewards, lengths = evaluate_policy(model, pool, n_eval_episodes=2, return_episode_rewards=True)
    assert lengths == [100, 100] and all(-21 <= reward <= 21 for reward in rewards)
    pool.close()


def test_pong_entry_on_envpool_equals_the_gym_wrappers():
    wrappers = [(AtariRawFrames, {}), (PongFrameDifference, {}), (DiscreteActionSubset, {"actions": [2, 3]})]
    venv = make_envpool_env(ENV_ID, 2, 0, wrappers)
    assert venv.observation_space == spaces.Box(-1, 1, (6400,), np.int8)
    assert venv.action_space == spaces.Discrete(2)
    assert not venv.reset().any()
    values = set()
    for obs, *_ in play(venv, 60):
        values |= set(np.unique(obs).tolist())
    assert values == {-1, 0, 1}
    venv.close()


def test_atari_wrapper_settings_reach_the_pool():
    from stable_baselines3.common.atari_wrappers import AtariWrapper

    venv = make_envpool_env(ENV_ID, 1, 0, [(AtariWrapper, {"terminal_on_life_loss": False, "screen_size": 64})], 2)
    assert venv.observation_space.shape == (2, 64, 64)
    assert venv.pool.config["episodic_life"] is False
    venv.close()


def test_non_atari_ids_and_unknown_wrappers_are_refused():
    with pytest.raises(ValueError, match="'CartPole-v1' is not an Atari game"):
        envpool_atari_task("CartPole-v1")
    assert envpool_atari_task("ALE/Pong-v5") == envpool_atari_task("Pong-v5") == "Pong-v5"
    with pytest.raises(ValueError, match="starts with PongFrameDifference"):
        make_envpool_env(ENV_ID, 1, 0, [(PongFrameDifference, {})])
    with pytest.raises(ValueError, match="num_envs must be an integer >= 1"):
        EnvPoolVecEnv("Pong-v5", 0)


def test_a_missing_envpool_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "envpool", None)
    with pytest.raises(ImportError, match=r"pip install 'sb3-vpg\[envpool\]'"):
        make_envpool_atari_env(ENV_ID)
