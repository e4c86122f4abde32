"""Bad input gets a clear error that names the parameter; bad data never reaches the weights."""

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.envs import IdentityEnv
from stable_baselines3.common.vec_env import DummyVecEnv

from sb3_vpg import VPG


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(gamma=0.0), "gamma"),
        (dict(gamma=1.5), "gamma"),
        (dict(gamma=float("nan")), "gamma"),
        (dict(n_steps=0), "n_steps"),
        (dict(n_steps=2.5), "n_steps"),
        (dict(batch_size=0), "batch_size"),
        (dict(ent_coef=-0.1), "ent_coef"),
        (dict(vf_coef=-1.0), "vf_coef"),
        (dict(learning_rate=0.0), "learning_rate"),
        (dict(max_grad_norm=0.0), "max_grad_norm"),
        (dict(incomplete_episodes="ignore"), "incomplete_episodes"),
        (dict(incomplete_episodes="bootstrap"), "use_baseline"),
        (dict(n_critic_updates=-1), "n_critic_updates"),
        (dict(n_steps=1), "normalize_returns"),
        (dict(use_sde=True), "gSDE"),  # SB3's own check
        ({"policy_kwargs": {"categorical_sampler": "argmax"}}, "categorical_sampler"),
    ],
)
def test_bad_hyperparameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        VPG("MlpPolicy", "CartPole-v1", **kwargs)


def test_one_sample_rollout_is_fine_without_normalization():
    model = VPG("MlpPolicy", "CartPole-v1", n_steps=1, normalize_returns=False, incomplete_episodes="truncate").learn(4)
    assert model._n_updates == 4


class TupleActionEnv(IdentityEnv):
    def __init__(self):
        super().__init__(dim=2)
        self.action_space = spaces.Tuple([spaces.Discrete(2), spaces.Discrete(2)])


class TupleObservationEnv(IdentityEnv):
    def __init__(self):
        super().__init__(dim=2)
        self.observation_space = spaces.Tuple([spaces.Discrete(2), spaces.Discrete(2)])


@pytest.mark.parametrize("env_cls, match", [(TupleActionEnv, "action_space"), (TupleObservationEnv, "observation_space")])
def test_unsupported_spaces(env_cls, match):
    with pytest.raises(TypeError, match=match):
        VPG("MlpPolicy", DummyVecEnv([env_cls]))


def test_rollout_buffer_class_must_compute_monte_carlo_returns():
    with pytest.raises(TypeError, match="rollout_buffer_class"):
        VPG("MlpPolicy", "CartPole-v1", rollout_buffer_class=RolloutBuffer)


class NaNRewardEnv(gym.Wrapper):
    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs, float("nan") if self.env.unwrapped.current_step == 3 else reward, terminated, truncated, info


def test_non_finite_reward_raises_with_env_index_and_step():
    env = DummyVecEnv([lambda: IdentityEnv(dim=2), lambda: NaNRewardEnv(IdentityEnv(dim=2))])
    model = VPG("MlpPolicy", env, n_steps=8)
    with pytest.raises(ValueError, match=r"Env 1 returned a non-finite reward \(nan\) at step 6"):
        model.learn(16)
    assert all(np.isfinite(param.detach().numpy()).all() for param in model.policy.parameters())


@pytest.mark.parametrize("name", ["learning_rate", "gamma", "ent_coef", "vf_coef", "max_grad_norm"])
def test_non_number_hyperparameter_is_a_type_error(name):
    # YAML 1.1 reads 7e-4 (no dot) as a string: it must fail by name, not in a comparison deep inside
    with pytest.raises(TypeError, match=name):
        VPG("MlpPolicy", "CartPole-v1", **{name: "7e-4"})


class SpaceEnv(gym.Env):
    """An env whose observation space SB3's VecEnvs cannot hold."""

    action_space = spaces.Discrete(2)

    def __init__(self, observation_space):
        self.observation_space = observation_space

    def reset(self, *, seed=None, options=None):
        return self.observation_space.sample(), {}

    def step(self, action):
        return self.observation_space.sample(), 0.0, True, False, {}


@pytest.mark.parametrize(
    "space",
    [spaces.Text(5), spaces.Sequence(spaces.Discrete(2)), spaces.Graph(spaces.Box(0, 1, (2,)), spaces.Discrete(2))],
    ids=["Text", "Sequence", "Graph"],
)
def test_spaces_sb3s_vec_envs_cannot_hold_are_named_before_wrapping(space):
    # SB3 would wrap the env in a DummyVecEnv first, which fails with "'NoneType' object is not iterable"
    with pytest.raises(TypeError, match="observation_space is " + type(space).__name__):
        VPG("MlpPolicy", SpaceEnv(space))


def test_unknown_policy_name_lists_the_valid_ones():
    with pytest.raises(ValueError, match="'CNNPolicy' is not one of VPG's policies: MlpPolicy, CnnPolicy, MultiInputPolicy"):
        VPG("CNNPolicy", "CartPole-v1")


def test_batch_size_larger_than_the_rollout_warns_with_both_numbers():
    with pytest.warns(UserWarning, match=r"batch_size=64 is larger than the rollout, n_steps \* n_envs = 8 \* 1 = 8"):
        VPG("MlpPolicy", "CartPole-v1", n_steps=8, batch_size=64)


def test_learning_rate_schedule_turning_negative_stops_at_that_update():
    # progress_remaining - 0.5 is negative in the second half of training: gradient ascent if applied
    model = VPG("MlpPolicy", "CartPole-v1", n_steps=64, learning_rate=lambda progress: progress - 0.5, seed=0)
    with pytest.raises(ValueError, match=r"learning_rate schedule returned -0.25 at progress_remaining=0.25 \(step 192\)"):
        model.learn(256)
    assert model.num_timesteps == 192  # the update of the third rollout never ran
    model = VPG(
        "MlpPolicy", "CartPole-v1", n_steps=64, learning_rate=lambda progress: 1e-3 if progress > 0.5 else float("nan")
    )
    with pytest.raises(ValueError, match=r"learning_rate schedule returned nan at progress_remaining=0.5 \(step 128\)"):
        model.learn(256)


def test_atari_ids_work_without_registering_them():
    # gymnasium 1.x needs gym.register_envs(ale_py) for ALE's ids; VPG does it when given an id
    import subprocess
    import sys

    script = "from sb3_vpg import VPG; print(VPG('CnnPolicy', 'PongNoFrameskip-v4', n_steps=8).observation_space.shape)"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "(3, 210, 160)" in result.stdout


def test_a_last_rollout_past_the_budget_reads_the_schedule_at_progress_zero():
    # rl_zoo3's linear schedule is progress * initial value: below 0 when SB3's progress does (-1 here: 128 of 64
    # steps); the overshooting rollout ends the budget, so it gets the schedule's final rate, 0, not -lr
    model = VPG("MlpPolicy", "CartPole-v1", n_steps=128, learning_rate=lambda progress: progress * 1e-3, seed=0)
    before = [parameter.detach().clone() for parameter in model.policy.parameters()]
    model.learn(64)
    assert model.logger.name_to_value["train/learning_rate"] == 0.0
    assert all(th.equal(a, b) for a, b in zip(before, model.policy.parameters(), strict=True))
