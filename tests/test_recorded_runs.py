"""
Seeded runs give, bit for bit, the parameters recorded from an earlier version of the library.

Each configuration trains two rollouts on CPU; the test compares a SHA-256 of the policy's parameters (and of
the last rollout's buffer arrays) with ``tests/data/recorded_runs.json``, so a refactoring that changes any
number of a seeded run fails here. Each recording holds the versions of torch and Stable-Baselines3 it was made
with, and the machine: the CPU's maker and the instruction set torch's kernels use (AVX2, AVX512). Their kernels and
random streams change the last bits of the numbers: an Intel AVX-512 machine and an AMD one differ by about 1e-7 of
a parameter sum, and two AMD machines, AVX2 and AVX-512, agree on the MLPs and differ on the CNNs. So a run is
compared with the recording of its own versions, maker and instruction set, and the comparison is skipped where there
is none.

To record on this machine (a machine not recorded yet, when the code is the one that passed on a recorded machine;
or, on every recorded machine, when a change of the numbers is intended, said so in the CHANGELOG)::

    python -m tests.test_recorded_runs
"""

import hashlib
import json
import platform
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import stable_baselines3
import torch as th
from gymnasium import spaces
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.envs import IdentityEnv, IdentityEnvMultiBinary, IdentityEnvMultiDiscrete
from stable_baselines3.common.vec_env import VecNormalize

from sb3_vpg import VPG
from tests.conftest import SeededImageEnv

RECORDING = Path(__file__).parent / "data" / "recorded_runs.json"


def dict_cartpole():
    """CartPole whose observation is a Dict of positions and velocities."""
    env = gym.make("CartPole-v1")
    low, high = env.observation_space.low, env.observation_space.high
    space = spaces.Dict({"position": spaces.Box(low[::2], high[::2]), "velocity": spaces.Box(low[1::2], high[1::2])})
    return gym.wrappers.TransformObservation(env, lambda obs: {"position": obs[::2], "velocity": obs[1::2]}, space)


def cartpole():
    return make_vec_env("CartPole-v1", n_envs=2, seed=0)


#: name: (policy, env factory, VPG arguments); each run is two rollouts of ``n_steps`` on every env
CONFIGS = {
    "pure": ("MlpPolicy", cartpole, {"n_steps": 64}),
    "pure_batch_size": ("MlpPolicy", cartpole, {"n_steps": 64, "batch_size": 24}),
    "pure_truncate_unnormalized": (
        "MlpPolicy",
        cartpole,
        {"n_steps": 64, "incomplete_episodes": "truncate", "normalize_returns": False, "ent_coef": 0.01},
    ),
    "baseline": ("MlpPolicy", cartpole, {"n_steps": 64, "use_baseline": True}),
    "baseline_batch_size": (
        "MlpPolicy",
        cartpole,
        {"n_steps": 64, "use_baseline": True, "batch_size": 24, "n_critic_updates": 3},
    ),
    "multinomial_sampler": ("MlpPolicy", cartpole, {"n_steps": 64, "policy_kwargs": {"categorical_sampler": "multinomial"}}),
    # Box actions; Pendulum's 200-step time limit truncates inside the second rollout (V bootstraps it)
    "box_baseline": (
        "MlpPolicy",
        lambda: make_vec_env("Pendulum-v1", n_envs=2, seed=0),
        {"n_steps": 128, "use_baseline": True},
    ),
    "box_truncate": (
        "MlpPolicy",
        lambda: make_vec_env("Pendulum-v1", n_envs=2, seed=0),
        {"n_steps": 128, "incomplete_episodes": "truncate", "batch_size": 100},
    ),
    "box_gsde": (
        "MlpPolicy",
        lambda: make_vec_env("Pendulum-v1", n_envs=2, seed=0),
        {"n_steps": 128, "use_sde": True, "sde_sample_freq": 16, "use_baseline": True},
    ),
    "discrete_obs_reset_on_reward": (
        "MlpPolicy",
        lambda: make_vec_env(lambda: IdentityEnv(dim=3, ep_length=10), n_envs=2, seed=0),
        {"n_steps": 16, "reset_on_reward": True},
    ),
    "multidiscrete": (
        "MlpPolicy",
        lambda: make_vec_env(lambda: IdentityEnvMultiDiscrete(dim=3, ep_length=10), n_envs=2, seed=0),
        {"n_steps": 16, "use_baseline": True},
    ),
    "multibinary": (
        "MlpPolicy",
        lambda: make_vec_env(lambda: IdentityEnvMultiBinary(dim=3, ep_length=10), n_envs=2, seed=0),
        {"n_steps": 16},
    ),
    "dict_obs": ("MultiInputPolicy", lambda: make_vec_env(dict_cartpole, n_envs=2, seed=0), {"n_steps": 64}),
    "dict_obs_baseline_batch_size": (
        "MultiInputPolicy",
        lambda: make_vec_env(dict_cartpole, n_envs=2, seed=0),
        {"n_steps": 64, "use_baseline": True, "batch_size": 48},
    ),
    "vec_normalize_baseline": (
        "MlpPolicy",
        lambda: VecNormalize(make_vec_env("CartPole-v1", n_envs=2, seed=0)),
        {"n_steps": 64, "use_baseline": True},
    ),
    # A CNN shared by actor and critic: the critic passes reuse its features (on the host with batch_size set)
    "cnn_shared_baseline": (
        "CnnPolicy",
        lambda: make_vec_env(SeededImageEnv, n_envs=2, seed=0),
        {"n_steps": 16, "use_baseline": True, "n_critic_updates": 2},
    ),
    "cnn_shared_baseline_batch_size": (
        "CnnPolicy",
        lambda: make_vec_env(SeededImageEnv, n_envs=2, seed=0),
        {"n_steps": 16, "use_baseline": True, "batch_size": 12, "n_critic_updates": 2},
    ),
    # The critic's own CNN, trained by the critic passes
    "cnn_own_critic_batch_size": (
        "CnnPolicy",
        lambda: make_vec_env(SeededImageEnv, n_envs=2, seed=0),
        {"n_steps": 16, "use_baseline": True, "batch_size": 12, "policy_kwargs": {"share_features_extractor": False}},
    ),
}

BUFFER_ARRAYS = ("actions", "values", "log_probs", "returns", "advantages", "has_return")


def digest(arrays) -> str:
    sha = hashlib.sha256()
    for array in arrays:
        array = np.ascontiguousarray(array)
        sha.update(f"{array.dtype}{array.shape}".encode())
        sha.update(array.tobytes())
    return sha.hexdigest()


def run(name: str) -> dict:
    """Two rollouts and their updates: digests and sums of the parameters and of the last rollout's buffer."""
    policy, make_env, kwargs = CONFIGS[name]
    env = make_env()
    threads = th.get_num_threads()
    th.set_num_threads(1)  # one summation order for the CPU kernels, whatever the machine's core count
    try:
        model = VPG(policy, env, seed=0, device="cpu", **kwargs)
        model.learn(2 * model.n_steps * env.num_envs)
    finally:
        th.set_num_threads(threads)
    parameters = [param.detach().numpy() for param in model.policy.parameters()]
    buffer = model.rollout_buffer
    observations = buffer.observations
    observations = [observations[key] for key in sorted(observations)] if isinstance(observations, dict) else [observations]
    return {
        "parameters": digest(parameters),
        "parameter_sum": float(sum(param.astype(np.float64).sum() for param in parameters)),
        "buffer": digest([*observations, *(getattr(buffer, array) for array in BUFFER_ARRAYS)]),
        "return_sum": float(buffer.returns.astype(np.float64).sum()),
        "num_timesteps": model.num_timesteps,
        "n_updates": model._n_updates,
    }


def cpu_vendor() -> str:
    """The CPU's maker as Linux names it (``GenuineIntel``, ``AuthenticAMD``), else the platform's processor."""
    try:
        with open("/proc/cpuinfo") as file:
            return next(line.split(":", 1)[1].strip() for line in file if line.startswith("vendor_id"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def versions() -> dict:
    """What a recording's numbers depend on besides the code."""
    return {
        "torch": th.__version__.split("+")[0],
        "stable_baselines3": stable_baselines3.__version__,
        "cpu": f"{cpu_vendor()} {th.backends.cpu.get_cpu_capability()}",
    }


@pytest.fixture(scope="module")
def recording() -> dict:
    recordings = json.loads(RECORDING.read_text())["recordings"]
    for recorded in recordings:
        if recorded["versions"] == versions():
            return recorded["runs"]
    pytest.skip(f"recorded under {[recorded['versions'] for recorded in recordings]}, running under {versions()}")


@pytest.mark.parametrize("name", CONFIGS)
def test_parameters_after_two_rollouts_match_the_recording(recording, name):
    result = run(name)
    expected = recording[name]
    # The sums first: on a mismatch they tell how far the numbers moved
    assert (result["num_timesteps"], result["n_updates"]) == (expected["num_timesteps"], expected["n_updates"])
    assert result["return_sum"] == expected["return_sum"]
    assert result["parameter_sum"] == expected["parameter_sum"]
    assert result["buffer"] == expected["buffer"]
    assert result["parameters"] == expected["parameters"]


if __name__ == "__main__":
    runs = {}
    for config in CONFIGS:
        runs[config] = run(config)
        print(config, runs[config], flush=True)
    # this machine's recording replaces its own, if any, and the other machines' stay
    others = [r for r in json.loads(RECORDING.read_text())["recordings"] if r["versions"] != versions()]
    recordings = [*others, {"versions": versions(), "runs": runs}]
    RECORDING.write_text(json.dumps({"recordings": recordings}, indent=1) + "\n")
