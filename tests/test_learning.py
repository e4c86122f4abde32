"""VPG learns: identity envs and CartPole-v1 with the packaged hyperparameters, on fixed seeds."""

import numpy as np
import pytest
import torch as th
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.envs import IdentityEnv, IdentityEnvBox, IdentityEnvMultiDiscrete
from stable_baselines3.common.evaluation import evaluate_policy

from sb3_vpg import VPG
from sb3_vpg.hyperparams import load_hyperparams


@pytest.fixture(autouse=True)
def one_torch_thread():
    # Same float reductions on every machine and under pytest-xdist, so fixed seeds give fixed results
    threads = th.get_num_threads()
    th.set_num_threads(1)
    yield
    th.set_num_threads(threads)


@pytest.mark.parametrize(
    "env_fn, n_timesteps",
    [
        (lambda: IdentityEnv(dim=10), 8_000),
        (lambda: IdentityEnvBox(eps=0.5), 24_000),
        (lambda: IdentityEnvMultiDiscrete(dim=2), 8_000),
    ],
    ids=["Discrete", "Box", "MultiDiscrete"],
)
@pytest.mark.parametrize("seed", [0, 1])
def test_identity(env_fn, n_timesteps, seed):
    # Each action only earns its own reward, so a short horizon (gamma 0.5) keeps the return's noise low
    env = make_vec_env(env_fn, n_envs=4, seed=seed)
    model = VPG("MlpPolicy", env, n_steps=100, learning_rate=1e-2, gamma=0.5, seed=seed).learn(n_timesteps)
    mean_reward, _ = evaluate_policy(model, make_vec_env(env_fn, n_envs=1, seed=100 + seed), n_eval_episodes=10)
    assert mean_reward >= 90  # out of 100


# Seeds other than those the packaged entry was tuned on (docs/misc/notes.rst)
CARTPOLE_SEEDS = [0, 1]


@pytest.mark.slow
@pytest.mark.parametrize("seed", CARTPOLE_SEEDS)
def test_cartpole_with_packaged_hyperparameters(seed):
    run, kwargs = load_hyperparams("CartPole-v1")
    assert run["n_timesteps"] <= 100_000
    env = make_vec_env("CartPole-v1", n_envs=run["n_envs"], seed=seed)
    model = VPG(run["policy"], env, seed=seed, **kwargs).learn(run["n_timesteps"])
    eval_env = make_vec_env("CartPole-v1", n_envs=1, seed=1_000 + seed)
    episode_rewards, _ = evaluate_policy(model, eval_env, n_eval_episodes=20, deterministic=True, return_episode_rewards=True)
    assert np.mean(episode_rewards) >= 475, episode_rewards
