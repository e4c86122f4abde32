"""Save/load, TensorBoard output and logged values."""

import numpy as np
import pytest
import torch as th
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.envs import IdentityEnvBox
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from sb3_vpg import VPG


@pytest.mark.parametrize("use_baseline", [False, True])
def test_save_load_predict_and_continue(tmp_path, use_baseline):
    env = make_vec_env("CartPole-v1", n_envs=2, seed=0)
    model = VPG("MlpPolicy", env, n_steps=64, use_baseline=use_baseline, reset_on_reward=True, gamma=0.95, seed=0)
    model.learn(256)
    observations = np.stack([env.observation_space.sample() for _ in range(20)])
    actions, _ = model.predict(observations, deterministic=True)
    model.save(tmp_path / "vpg")

    loaded = VPG.load(tmp_path / "vpg", env=env, device="cpu")
    assert loaded.device == th.device("cpu")
    assert (loaded.use_baseline, loaded.reset_on_reward, loaded.gamma, loaded.n_steps) == (use_baseline, True, 0.95, 64)
    assert loaded.rollout_buffer.reset_on_reward
    np.testing.assert_array_equal(loaded.predict(observations, deterministic=True)[0], actions)
    for original, restored in zip(model.policy.parameters(), loaded.policy.parameters(), strict=True):
        assert th.equal(original, restored)

    # Continue learning, with the step counter kept
    loaded.learn(128, reset_num_timesteps=False)
    assert loaded.num_timesteps == model.num_timesteps + 128


def test_set_env_and_load_without_env(tmp_path):
    model = VPG("MlpPolicy", make_vec_env(lambda: IdentityEnvBox(ep_length=10), n_envs=2), n_steps=20, seed=0).learn(40)
    model.save(tmp_path / "vpg.zip")

    loaded = VPG.load(tmp_path / "vpg.zip")
    assert loaded.get_env() is None
    loaded.set_env(make_vec_env(lambda: IdentityEnvBox(ep_length=10), n_envs=2))
    loaded.learn(40)
    assert loaded._n_updates == model._n_updates + 1  # one rollout of 20 steps x 2 envs


def test_tensorboard_run_and_scalars(tmp_path):
    model = VPG("MlpPolicy", "Pendulum-v1", n_steps=400, use_baseline=True, tensorboard_log=str(tmp_path), seed=0)
    model.learn(1200)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["VPG_1"]

    events = EventAccumulator(str(tmp_path / "VPG_1"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    expected = {
        "train/policy_gradient_loss",
        "train/entropy_loss",
        "train/approx_kl",
        "train/grad_norm",
        "train/return_mean",
        "train/return_std",
        "train/used_fraction",
        "train/value_loss",
        "train/explained_variance",
        "train/std",
        "train/learning_rate",
        "rollout/ep_rew_mean",
        "rollout/ep_len_mean",
        "time/fps",
    }
    assert expected <= tags, expected - tags
    # Pendulum's episodes are 200 steps, so a rollout of 400 ends two of them: every sample has a return
    assert [event.value for event in events.Scalars("train/used_fraction")] == [1.0, 1.0]
    assert all(np.isfinite(event.value) for tag in expected for event in events.Scalars(tag))

    # A second learn() call starts VPG_2
    model.learn(400)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["VPG_1", "VPG_2"]


def test_pure_mode_logs_no_critic_values(tmp_path):
    VPG("MlpPolicy", "CartPole-v1", n_steps=256, tensorboard_log=str(tmp_path), seed=0).learn(512)
    events = EventAccumulator(str(tmp_path / "VPG_1"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert "train/policy_gradient_loss" in tags
    assert not {"train/value_loss", "train/explained_variance", "train/std"} & tags
    assert 0 < events.Scalars("train/used_fraction")[0].value < 1  # the last, unfinished episode is dropped


def test_a_file_without_the_optimizer_state_is_named(tmp_path):
    # SB3 would raise a bare KeyError: 'policy.optimizer' after unpickling the file
    import zipfile

    VPG("MlpPolicy", "CartPole-v1", n_steps=64).save(tmp_path / "model.zip")
    with zipfile.ZipFile(tmp_path / "model.zip") as source, zipfile.ZipFile(tmp_path / "weights.zip", "w") as target:
        for item in source.infolist():
            if item.filename != "policy.optimizer.pth":
                target.writestr(item, source.read(item.filename))
    with pytest.raises(
        ValueError, match=r"weights\.zip .*no policy\.optimizer\.pth entry.*set_parameters\(path, exact_match=False\)"
    ):
        VPG.load(tmp_path / "weights.zip")
    # the weights alone still load into a model
    model = VPG("MlpPolicy", "CartPole-v1", n_steps=64)
    model.set_parameters(str(tmp_path / "weights.zip"), exact_match=False)
