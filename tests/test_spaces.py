"""VPG runs on every supported action and observation space, policy and VecEnv."""

import pytest
import torch as th
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.envs import SimpleMultiObsEnv
from stable_baselines3.common.vec_env import SubprocVecEnv

from sb3_vpg import VPG
from tests.conftest import EVERY_ACTION_SPACE, SeededImageEnv


@pytest.mark.parametrize("use_baseline", [False, True])
@EVERY_ACTION_SPACE
def test_action_spaces(env_fn, use_baseline):
    model = VPG("MlpPolicy", make_vec_env(env_fn, n_envs=2), n_steps=16, batch_size=7, use_baseline=use_baseline, seed=0)
    model.learn(64)
    assert model._n_updates == 2
    assert all(th.isfinite(param).all() for param in model.policy.parameters())


@pytest.mark.parametrize("sde_sample_freq", [-1, 4])
def test_gsde(sde_sample_freq):
    model = VPG("MlpPolicy", "Pendulum-v1", n_steps=200, use_sde=True, sde_sample_freq=sde_sample_freq, seed=0)
    model.learn(400)
    assert model._n_updates == 2


def test_subproc_vec_env():
    env = make_vec_env("CartPole-v1", n_envs=2, vec_env_cls=SubprocVecEnv, seed=0)
    try:
        model = VPG("MlpPolicy", env, n_steps=64, use_baseline=True, seed=0).learn(256)
        assert model._n_updates == 2
    finally:
        env.close()


def test_cnn_policy():
    env = make_vec_env(SeededImageEnv, n_envs=2, seed=0)
    model = VPG("CnnPolicy", env, n_steps=16, batch_size=8, use_baseline=True, n_critic_updates=2, seed=0)
    model.learn(64)
    assert model._n_updates == 2


@pytest.mark.parametrize("use_baseline", [False, True])
def test_dict_observations(use_baseline):
    model = VPG("MultiInputPolicy", SimpleMultiObsEnv(random_start=True), n_steps=128, use_baseline=use_baseline, seed=0)
    model.learn(256)  # episodes end within 100 steps
    assert model._n_updates == 2
