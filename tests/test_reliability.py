"""
Long runs: interruption and exact resume, environment faults, numerical edge cases, bad model files, soak.

Tests that could hang (a dead SubprocVecEnv worker) run under an alarm, so a hang fails the test instead of
blocking CI. The soak test is marked ``soak``: CI runs it briefly, ``SB3_VPG_SOAK_CYCLES`` makes it longer.
"""

import base64
import contextlib
import functools
import gc
import io
import json
import multiprocessing
import os
import pickle
import re
import signal
import subprocess
import sys
import threading
import time
import warnings
import zipfile

import numpy as np
import pytest
import torch as th
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from stable_baselines3 import A2C, DQN, PPO
from stable_baselines3.common.callbacks import BaseCallback, CheckpointCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecNormalize
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import sb3_vpg
from sb3_vpg import VPG
from sb3_vpg.common.reliability import (
    AtomicCheckpointCallback,
    ReliabilityMixin,
    drop_games_after,
    latest_checkpoint,
    load_checkpoint,
)
from tests.reliability_envs import EPISODE_LENGTH, AlternateEnv, FaultyEnv

# SubprocVecEnv workers start from a forkserver, which imports SB3 (and torch) once instead of once per worker.
# Only speed changes; this must run before any forkserver starts, hence at import.
multiprocessing.set_forkserver_preload(["stable_baselines3.common.vec_env.subproc_vec_env", "tests.reliability_envs"])

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
N_STEPS = EPISODE_LENGTH  # every rollout ends on an episode boundary of AlternateEnv
TOTAL = 6 * N_STEPS * 2  # six rollouts of two envs


@contextlib.contextmanager
def fails_if_hung(seconds: int):
    """Raise TimeoutError in the test if its body runs longer than ``seconds`` (a hang), instead of blocking."""

    def on_alarm(signum, frame):
        raise TimeoutError(f"hung for more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def parameters(model) -> list[th.Tensor]:
    return [param.detach().clone() for param in model.policy.parameters()]


def all_finite(model) -> bool:
    return all(bool(th.isfinite(param).all()) for param in model.policy.parameters())


def process_alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not yet reaped by its parent, does not)."""
    try:
        with open(f"/proc/{pid}/stat") as file:
            return file.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def open_fds() -> list[str]:
    return sorted(os.listdir("/proc/self/fd"))


# --- Interruption and resume ---------------------------------------------------------------------------------


class InterruptAt(BaseCallback):
    """Ctrl-C at a given step."""

    def __init__(self, step: int):
        super().__init__()
        self.step = step

    def _on_step(self) -> bool:
        if self.num_timesteps >= self.step:
            raise KeyboardInterrupt
        return True


def make_env(normalize: str | None, seed: int = 0):
    env = make_vec_env(AlternateEnv, n_envs=2, seed=seed)
    if normalize == "reward":
        return VecNormalize(env, norm_obs=False, norm_reward=True)
    if normalize == "obs_and_reward":
        return VecNormalize(env)
    return env


@pytest.mark.parametrize(
    "use_baseline, normalize", [(False, None), (True, None), (False, "reward"), (False, "obs_and_reward")]
)
def test_interrupted_run_resumes_exactly(tmp_path, use_baseline, normalize):
    kwargs = {"n_steps": N_STEPS, "learning_rate": lambda progress: 0.03 * progress, "use_baseline": use_baseline, "seed": 0}
    uninterrupted = VPG("MlpPolicy", make_env(normalize), **kwargs).learn(TOTAL)

    model = VPG("MlpPolicy", make_env(normalize), tensorboard_log=str(tmp_path / "tb"), **kwargs)
    checkpoints = AtomicCheckpointCallback(N_STEPS, str(tmp_path / "checkpoints"), save_vecnormalize=True)
    with pytest.raises(KeyboardInterrupt):
        model.learn(TOTAL, callback=[checkpoints, InterruptAt(100)])  # in the fourth rollout

    # The last checkpoint is the rollout boundary before the interruption, with the VecNormalize statistics
    _, vec_normalize_path, steps = latest_checkpoint(str(tmp_path / "checkpoints"))
    assert steps == 96
    assert (vec_normalize_path is not None) == (normalize is not None)

    resumed = load_checkpoint(VPG, str(tmp_path / "checkpoints"), make_env(None, seed=1))  # a new process would do this
    assert resumed.num_timesteps == 96 and resumed._n_updates == 3
    resumed.learn(TOTAL - resumed.num_timesteps, reset_num_timesteps=False)

    assert resumed.num_timesteps == TOTAL and resumed._n_updates == uninterrupted._n_updates == 6
    for expected, actual in zip(parameters(uninterrupted), parameters(resumed), strict=True):
        assert th.equal(expected, actual)
    if normalize is not None:  # the statistics went on too, no step counted twice
        resumed_env, uninterrupted_env = resumed.get_env(), uninterrupted.get_env()
        assert resumed_env.ret_rms.count == uninterrupted_env.ret_rms.count
        if resumed_env.norm_obs:
            assert resumed_env.obs_rms.count == uninterrupted_env.obs_rms.count

    # The same TensorBoard run goes on, its step counter continued
    assert os.listdir(tmp_path / "tb") == ["VPG_1"]
    events = EventAccumulator(str(tmp_path / "tb" / "VPG_1"))
    events.Reload()
    # (two event files, read in file-name order: within one second the names differ by a writer counter compared as
    # text, "10" before "9", so that order need not be the order of creation)
    assert sorted(event.step for event in events.Scalars("time/fps")) == [32, 64, 96, 128, 160, 192]


def test_sb3_checkpoint_resumes_with_one_update_fewer(tmp_path):
    # What the docs say of SB3's own CheckpointCallback: its files load, and the step counter goes on, but the
    # checkpoint was taken before the update of its rollout, which the resumed run collects again
    model = VPG("MlpPolicy", make_env("obs_and_reward"), n_steps=N_STEPS, seed=0)
    checkpoints = CheckpointCallback(N_STEPS, str(tmp_path), save_vecnormalize=True)
    with pytest.raises(KeyboardInterrupt):
        model.learn(TOTAL, callback=[checkpoints, InterruptAt(100)])
    env = VecNormalize.load(str(tmp_path / "rl_model_vecnormalize_96_steps.pkl"), make_env(None))
    resumed = VPG.load(tmp_path / "rl_model_96_steps.zip", env=env)
    assert (resumed.num_timesteps, resumed._n_updates) == (96, 2)
    resumed.learn(TOTAL - 96, reset_num_timesteps=False)
    assert (resumed.num_timesteps, resumed._n_updates) == (TOTAL, 5)  # 6 without the interruption


def test_plain_load_resumes_exactly_without_vecnormalize(tmp_path):
    kwargs = {"n_steps": N_STEPS, "seed": 3}
    uninterrupted = VPG("MlpPolicy", make_env(None), **kwargs).learn(TOTAL)
    model = VPG("MlpPolicy", make_env(None), **kwargs)
    model.learn(TOTAL // 2)
    model.save(tmp_path / "half")
    resumed = VPG.load(tmp_path / "half", env=make_env(None))
    resumed.learn(TOTAL // 2, reset_num_timesteps=False)
    for expected, actual in zip(parameters(uninterrupted), parameters(resumed), strict=True):
        assert th.equal(expected, actual)


def test_load_checkpoint_takes_the_algorithm_class(tmp_path):
    VPG("MlpPolicy", make_env(None), n_steps=N_STEPS, seed=0).learn(
        2 * N_STEPS * 2, callback=AtomicCheckpointCallback(N_STEPS, str(tmp_path))
    )
    with pytest.raises(TypeError, match="algorithm_class must be a Stable-Baselines3 algorithm class"):
        load_checkpoint(str(tmp_path), make_env(None), "rl_model")  # the order of sb3_vpg.load_checkpoint
    # sb3_vpg.load_checkpoint is this one with VPG
    model = sb3_vpg.load_checkpoint(str(tmp_path), make_env(None))
    assert isinstance(model, VPG) and model.num_timesteps == 2 * N_STEPS * 2


class CheckedPPO(ReliabilityMixin, PPO):
    model_file_keys = ("clip_range",)


class CorruptCritic(BaseCallback):
    """Puts NaN in the critic's weights at the end of each rollout."""

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        self.model.policy.value_net.weight.data.fill_(float("nan"))


def test_the_hardening_applies_to_another_algorithm(tmp_path):
    # ReliabilityMixin over PPO: its checkpoints resume through load_checkpoint, its load refuses other files, and a
    # diverged optimizer step stops its training
    model = CheckedPPO("MlpPolicy", make_env(None), n_steps=N_STEPS, batch_size=N_STEPS, seed=0)
    model.learn(2 * N_STEPS * 2, callback=AtomicCheckpointCallback(N_STEPS, str(tmp_path)))
    resumed = load_checkpoint(CheckedPPO, str(tmp_path), make_env(None))
    assert isinstance(resumed, CheckedPPO) and resumed.num_timesteps == 2 * N_STEPS * 2
    VPG("MlpPolicy", make_env(None), n_steps=N_STEPS).save(tmp_path / "vpg.zip")
    with pytest.raises(ValueError, match=r"vpg\.zip was saved by another algorithm, not CheckedPPO"):
        CheckedPPO.load(tmp_path / "vpg.zip")
    with pytest.raises(ValueError, match="optimizer step of the update at step 96 left NaN or inf"):
        resumed.learn(N_STEPS * 2, callback=CorruptCritic(), reset_num_timesteps=False)


def test_load_restores_the_random_state_unless_given_a_new_seed(tmp_path):
    VPG("MlpPolicy", make_env(None), n_steps=N_STEPS, seed=0).save(tmp_path / "model")
    saved_state = th.get_rng_state()  # saving draws nothing
    th.manual_seed(999)
    VPG.load(tmp_path / "model")
    assert th.equal(th.get_rng_state(), saved_state)
    th.manual_seed(999)
    VPG.load(tmp_path / "model", seed=123)  # SB3 re-seeds with the given seed, and VPG leaves it so
    assert not th.equal(th.get_rng_state(), saved_state)


class PartialSave:
    """A model.save that writes half a file, then is interrupted."""

    def __init__(self, model):
        self.model = model

    def __call__(self, path, *args, **kwargs):
        path.write(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt


def test_interrupted_save_never_leaves_a_partial_checkpoint(tmp_path):
    model = VPG("MlpPolicy", make_env(None), n_steps=N_STEPS, seed=0)
    checkpoints = AtomicCheckpointCallback(N_STEPS, str(tmp_path))
    model.learn(2 * N_STEPS * 2, callback=checkpoints)  # saves at the rollout boundary and at the end
    saved = ["rl_model_32_steps.zip", "rl_model_64_steps.zip"]
    assert sorted(os.listdir(tmp_path)) == saved

    model.save = PartialSave(model)
    with pytest.raises(KeyboardInterrupt):
        model.learn(2 * N_STEPS * 2, callback=checkpoints, reset_num_timesteps=False)
    assert sorted(os.listdir(tmp_path)) == saved  # no partial rl_model_96_steps.zip, not even a temporary file
    assert VPG.load(tmp_path / "rl_model_64_steps.zip").num_timesteps == 64


def test_games_after_a_checkpoint_leave_the_monitor_file_in_place(tmp_path):
    # A Monitor file whose games ended 1, 2, 3 and 4 s after its start; the last row is what a killed process was
    # writing, without its line end
    path = tmp_path / "0.monitor.csv"
    start = 1000.0
    header = json.dumps({"t_start": start, "env_id": "CartPole-v1"})
    path.write_text(f"#{header}\nr,l,t\n10.0,10,1.0\n20.0,20,2.0\n30.0,30,3.0\n40.0,4")
    with open(path, "a") as appending:  # a process that appends to the file, as a Monitor does, goes on at its end
        assert drop_games_after(str(path), until=start + 2.0) == 2
        appending.write("50.0,50,5.0\n")
    assert path.read_text() == f"#{header}\nr,l,t\n10.0,10,1.0\n20.0,20,2.0\n50.0,50,5.0\n"
    assert drop_games_after(str(path), until=start + 10.0) == 0

    no_header = tmp_path / "plain.csv"
    no_header.write_text("r,l,t\n10.0,10,1.0\n")
    assert drop_games_after(str(no_header), until=0.0) == 0 and no_header.read_text() == "r,l,t\n10.0,10,1.0\n"


SIGTERM_SCRIPT = """
import multiprocessing
import sys
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import SubprocVecEnv, VecNormalize
from sb3_vpg import VPG
from sb3_vpg.common.reliability import AtomicCheckpointCallback
from tests.reliability_envs import AlternateEnv

if __name__ == "__main__":
    multiprocessing.set_forkserver_preload(["stable_baselines3.common.vec_env.subproc_vec_env", "tests.reliability_envs"])
    env = VecNormalize(make_vec_env(AlternateEnv, n_envs=2, seed=0, vec_env_cls=SubprocVecEnv))
    print(" ".join(str(process.pid) for process in env.venv.processes), flush=True)
    model = VPG("MlpPolicy", env, n_steps=16, seed=0)
    model.learn(10**9, callback=AtomicCheckpointCallback(16, sys.argv[1], save_vecnormalize=True))
"""


def test_sigterm_leaves_loadable_checkpoints_and_no_workers(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(SIGTERM_SCRIPT)
    save_path = tmp_path / "checkpoints"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([REPO_ROOT, os.environ.get("PYTHONPATH", "")])}
    process = subprocess.Popen(
        [sys.executable, str(script), str(save_path)], cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        with fails_if_hung(300):  # against a broken run only: training reaches 3 checkpoints within seconds
            worker_pids = [int(pid) for pid in process.stdout.readline().split()]
            while len(list(save_path.glob("*_steps.zip"))) < 3:
                assert process.poll() is None, "the training process ended"
                time.sleep(0.05)
            process.send_signal(signal.SIGTERM)  # while it trains and saves
            assert process.wait() == -signal.SIGTERM
    finally:
        if process.poll() is None:
            process.kill()
        process.stdout.close()

    assert len(worker_pids) == 2
    deadline = time.monotonic() + 60  # the workers see their pipe close and exit
    while any(process_alive(pid) for pid in worker_pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(process_alive(pid) for pid in worker_pids)

    # Every checkpoint under its final name is whole: the model and its VecNormalize statistics load
    for model_path in save_path.glob("*_steps.zip"):
        VPG.load(model_path)
        statistics = model_path.with_name(model_path.name.replace("rl_model_", "rl_model_vecnormalize_")).with_suffix(".pkl")
        VecNormalize.load(str(statistics), make_env(None))
    resumed = load_checkpoint(VPG, str(save_path), make_env(None))
    steps = resumed.num_timesteps
    assert steps >= 96 and steps % 32 == 0
    resumed.learn(32, reset_num_timesteps=False)
    assert resumed.num_timesteps == steps + 32


# --- Environment faults --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "start_method, fault, exit_description",
    [
        ("forkserver", "raise", "exit code 1"),  # SB3's default start method on Linux
        # Hangs forever without the guard: other workers keep the pipe open. A forked child of a multi-threaded parent
        # (torch's and earlier tests' threads) may crash while it prints the traceback and exits: either is reported.
        ("fork", "raise", "exit code 1|killed by SIGSEGV"),
        ("forkserver", "kill", "killed by SIGKILL"),  # the OOM killer
    ],
)
def test_dead_subproc_worker_names_env_and_step(start_method, fault, exit_description):
    env_fns = [FaultyEnv, functools.partial(FaultyEnv, fault, at=4), FaultyEnv]
    env = SubprocVecEnv(env_fns, start_method=start_method)
    try:
        with fails_if_hung(60):
            model = VPG("MlpPolicy", env, n_steps=8, seed=0)
            message = rf"worker of env 1 \(({exit_description})\) died during training, after step 9 \(num_timesteps=9\)"
            with pytest.raises(RuntimeError, match=message) as error:
                model.learn(48)
            assert isinstance(error.value.__cause__, EOFError | BrokenPipeError | ConnectionResetError)
            # The broken env is closed: its other workers are stopped, and close() returns
            assert env.closed and not any(process.is_alive() for process in env.processes)
            env.close()
    finally:
        for process in env.processes:
            if process.is_alive():
                process.kill()
    assert all_finite(model)
    assert "sb3_vpg-worker-guard" not in [thread.name for thread in threading.enumerate()]


@pytest.mark.filterwarnings("ignore:overflow encountered in cast")  # 1e39 into DummyVecEnv's float32 rewards
@pytest.mark.parametrize(
    "fault, dict_obs, message",
    [
        ("nan_reward", False, r"Env 1 returned a non-finite reward \(nan\) at step 6"),
        ("inf_reward", False, r"Env 1 returned a non-finite reward \(inf\) at step 6"),
        ("huge_reward", False, r"Env 1 returned a non-finite reward \(inf\) at step 6"),  # DummyVecEnv: float32
        ("nan_obs", False, r"Env 1 returned an observation with NaN or inf values at step 6"),
        ("inf_obs", False, r"Env 1 returned an observation with NaN or inf values at step 6"),
        ("nan_obs", True, r"Env 1 returned an observation with NaN or inf values \(key 'pos'\) at step 6"),
        ("nan_reset_obs", False, r"Env 1 returned a reset observation with NaN or inf values at step 0"),
        ("nan_reset_obs", True, r"Env 1 returned a reset observation with NaN or inf values \(key 'pos'\) at step 0"),
    ],
)
def test_non_finite_env_output_stops_training(fault, dict_obs, message):
    env = DummyVecEnv([lambda: FaultyEnv(dict_obs=dict_obs), lambda: FaultyEnv(fault, at=3, dict_obs=dict_obs)])
    model = VPG("MultiInputPolicy" if dict_obs else "MlpPolicy", env, n_steps=8, seed=0)
    before = parameters(model)
    with pytest.raises(ValueError, match=message):
        model.learn(32)
    assert all(th.equal(a, b) for a, b in zip(before, parameters(model), strict=True))  # never reached the weights


@pytest.mark.parametrize(
    "fault, shown",
    [("nan_reward", "nan"), ("huge_reward", "1e+39, beyond float32's range")],  # SubprocVecEnv keeps float64 rewards
)
def test_bad_reward_in_subproc_worker_names_env(fault, shown):
    env = SubprocVecEnv([FaultyEnv, functools.partial(FaultyEnv, fault, at=3)])
    try:
        with (
            fails_if_hung(60),
            pytest.raises(ValueError, match=rf"Env 1 returned a non-finite reward \({re.escape(shown)}\) at step 6"),
        ):
            VPG("MlpPolicy", env, n_steps=8, seed=0).learn(32)
    finally:
        env.close()


@pytest.mark.filterwarnings("ignore:overflow encountered in cast")  # the buffer's float64 returns into float32
def test_returns_beyond_float32_stop_training():
    # Each reward, 1e38, is finite in float32; the undiscounted sum of an episode's five is not
    env = DummyVecEnv([lambda: FaultyEnv(reward=1e38)] * 2)
    model = VPG("MlpPolicy", env, n_steps=8, gamma=1.0, seed=0)
    before = parameters(model)
    with pytest.raises(ValueError, match="discounted returns of the rollout ending at step 16 are not finite"):
        model.learn(16)
    assert all(th.equal(a, b) for a, b in zip(before, parameters(model), strict=True))


def diverging_model():
    """Plain SGD with an absurd learning rate, raw returns of 1e9, no clipping: the first update overflows float32."""
    env = DummyVecEnv([lambda: FaultyEnv(reward=1e9)] * 2)
    policy_kwargs = {"optimizer_class": th.optim.SGD, "optimizer_kwargs": {}}
    return VPG(
        "MlpPolicy",
        env,
        n_steps=8,
        learning_rate=1e38,
        normalize_returns=False,
        max_grad_norm=None,
        policy_kwargs=policy_kwargs,
        seed=0,
    )


def test_diverging_update_is_caught_at_the_optimizer_step():
    # Without the check, the next forward pass fails inside torch.distributions on NaN logits
    model = diverging_model()
    with pytest.raises(ValueError, match=r"optimizer step of the update at step 16 left NaN or inf"):
        model.learn(64)
    assert model._n_updates == 0  # stopped inside the first update


@pytest.mark.parametrize(
    ("broken", "raises"),
    [
        (None, False),
        (float("nan"), True),
        (float("inf"), True),
        ((float("inf"), -float("inf")), True),  # their sum is NaN
        ((3e38, 3e38), False),  # finite, though their sum is not: the element-wise check decides
    ],
    ids=["finite", "nan", "inf", "inf-and-minus-inf", "finite-sum-overflows"],
)
def test_the_parameter_check_finds_exactly_nan_and_inf(broken, raises):
    from sb3_vpg.common.reliability.finite_checks import check_parameters

    weight, bias = th.zeros(4, 3), th.zeros(3, dtype=th.float64)
    if broken is not None:
        weight.view(-1)[: np.size(broken)] = th.tensor(broken)
    if raises:
        with pytest.raises(ValueError, match="update at step 7 left NaN or inf"):
            check_parameters([bias, weight], 7)
    else:
        check_parameters([bias, weight], 7)
    check_parameters([], 7)


def test_non_finite_policy_output_is_caught_before_the_update():
    # The action distributions skip torch's validation (a device sync per step on GPU), so NaN means reach a Box
    # env; IdentityEnvBox tolerates NaN actions, and the rollout-end check must stop training before any update.
    from stable_baselines3.common.envs import IdentityEnvBox

    model = VPG("MlpPolicy", IdentityEnvBox(ep_length=4), n_steps=8, seed=0)
    model.policy.action_net.register_forward_hook(lambda module, args, output: output * float("nan"))
    before = parameters(model)
    with pytest.raises(ValueError, match=r"non-finite action probabilities in the rollout ending at step 8"):
        model.learn(16)
    assert model._n_updates == 0
    assert all(th.equal(a, b) for a, b in zip(before, parameters(model), strict=True))


# --- Numerical edge cases ------------------------------------------------------------------------------------


def learn_script(scripted_env_cls, script, n_envs=1, **kwargs):
    """One or more rollouts on scripted episodes; returns the model and the parameters before learning."""
    env = DummyVecEnv([lambda: scripted_env_cls(script)] * n_envs)
    kwargs = {"n_steps": 8, "seed": 0, "policy_kwargs": {"net_arch": [8]}, **kwargs}
    model = VPG("MlpPolicy", env, **kwargs)
    before = parameters(model)
    model.learn(kwargs.get("total", 2 * kwargs["n_steps"] * n_envs))
    return model, before


def logged_values_are_finite(model) -> bool:
    # Explained variance, 1 - Var(G - V) / Var(G), is undefined (NaN) for constant returns: see the docs
    values = {key: value for key, value in model.logger.name_to_value.items() if key != "train/explained_variance"}
    return all(np.isfinite(value) for value in values.values())


@pytest.mark.parametrize(
    "script",
    [
        [([0, 0, 0], "terminated")],  # all-zero rewards: every weight is 0
        [([1], "terminated")],  # one-step episodes, constant returns: std 0, every weight is 0
        [([0, 2], "terminated"), ([2], "truncated")],  # different rewards, the same return 2 (gamma 1)
    ],
)
def test_constant_returns_give_no_update(scripted_env_cls, script):
    model, before = learn_script(scripted_env_cls, script, gamma=1.0)
    assert model._n_updates == 2 and logged_values_are_finite(model)
    assert model.logger.name_to_value["train/return_std"] == 0
    # (G - mean) / (std + 1e-8) is 0, so is the gradient, and so is Adam's step
    for expected, actual in zip(before, parameters(model), strict=True):
        assert th.equal(expected, actual)


def test_constant_raw_returns_still_update(scripted_env_cls):
    # Without normalization, a constant positive return raises the log-probability of every action taken
    model, before = learn_script(scripted_env_cls, [([1], "terminated")], normalize_returns=False)
    assert all_finite(model) and logged_values_are_finite(model)
    assert not all(th.equal(a, b) for a, b in zip(before, parameters(model), strict=True))


@pytest.mark.parametrize(
    "kwargs, updates",
    [
        ({}, 0),  # drop: no sample has a return, the update is skipped with a warning
        ({"incomplete_episodes": "truncate"}, 2),
        ({"use_baseline": True}, 2),  # bootstrap with V
    ],
)
def test_episode_longer_than_the_rollout(scripted_env_cls, kwargs, updates):
    script = [([1.0] * 50, "terminated")]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model, before = learn_script(scripted_env_cls, script, **kwargs)
    assert model._n_updates == updates and all_finite(model) and logged_values_are_finite(model)
    skipped = [w for w in caught if "No episode ended within the rollout" in str(w.message)]
    assert len(skipped) == (2 if updates == 0 else 0)
    if updates == 0:
        assert all(th.equal(a, b) for a, b in zip(before, parameters(model), strict=True))


@pytest.mark.parametrize("use_baseline", [False, True])
@pytest.mark.parametrize("normalize_returns", [True, False])
@pytest.mark.parametrize("max_grad_norm", [0.5, None])
def test_extreme_rewards_stay_finite(scripted_env_cls, use_baseline, normalize_returns, max_grad_norm):
    # Returns up to about 1e11: float32 holds them, Adam's steps stay of the learning rate's size
    script = [([1e9] * 40, "terminated"), ([-1e9, 1e9, 0.0], "truncated")]
    model, _ = learn_script(
        scripted_env_cls,
        script,
        n_envs=2,
        n_steps=64,
        gamma=0.999,
        use_baseline=use_baseline,
        normalize_returns=normalize_returns,
        max_grad_norm=max_grad_norm,
    )
    assert model._n_updates == 2 and all_finite(model) and logged_values_are_finite(model)
    assert model.logger.name_to_value["train/return_mean"] > 1e9


rewards = st.one_of(st.just(0.0), st.sampled_from([1e9, -1e9, 1e-9]), st.floats(-100, 100, allow_nan=False, width=32))
episodes = st.tuples(st.lists(rewards, min_size=1, max_size=12), st.sampled_from(["terminated", "truncated"]))


@settings(max_examples=30, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    scripts=st.lists(st.lists(episodes, min_size=1, max_size=4), min_size=1, max_size=3),
    n_steps=st.integers(2, 16),
    gamma=st.one_of(st.just(1.0), st.floats(0.01, 1.0)),
    use_baseline=st.booleans(),
    normalize_returns=st.booleans(),
    reset_on_reward=st.booleans(),
    incomplete=st.sampled_from([None, "drop", "truncate"]),
    batch_size=st.sampled_from([None, 1, 3]),
)
def test_fuzz_returns_and_losses_stay_finite(
    scripted_env_cls, scripts, n_steps, gamma, use_baseline, normalize_returns, reset_on_reward, incomplete, batch_size
):
    # Random episode layouts (one script per env), rewards from 0 to 1e9, gammas, and settings, through the
    # buffer and train(): the returns, losses, gradient norm and parameters stay finite
    env = DummyVecEnv([functools.partial(scripted_env_cls, script) for script in scripts])
    model = VPG(
        "MlpPolicy",
        env,
        n_steps=n_steps,
        batch_size=batch_size,
        gamma=gamma,
        use_baseline=use_baseline,
        normalize_returns=normalize_returns,
        reset_on_reward=reset_on_reward,
        incomplete_episodes=incomplete,
        n_critic_updates=1,
        policy_kwargs={"net_arch": [8]},
        seed=0,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "No episode ended within the rollout"
        model.learn(2 * n_steps * len(scripts))
    buffer = model.rollout_buffer
    assert np.all(np.isfinite(buffer.returns)) and np.all(np.isfinite(buffer.advantages))
    assert all_finite(model) and logged_values_are_finite(model)
    assert model.logger.name_to_value["train/used_fraction"] == pytest.approx(buffer.has_return.mean())


# --- Bad model files -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def vpg_zip(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("vpg") / "vpg.zip"
    VPG("MlpPolicy", "CartPole-v1", n_steps=8, seed=0).save(path)
    return path.read_bytes()


def corrupt_member(data: bytes, member: str) -> bytes:
    """Flip a byte in the middle of a stored (uncompressed) member of the zip."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        info = archive.getinfo(member)
    header = 30 + len(info.filename.encode()) + len(info.extra)  # the local header precedes the member's bytes
    position = info.header_offset + header + info.compress_size // 2
    return data[:position] + bytes([data[position] ^ 0xFF]) + data[position + 1 :]


def rewrite_data(data: bytes, edit) -> bytes:
    """The zip with its 'data' JSON rewritten by ``edit``."""
    target = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(target, "w") as archive:
        for info in source.infolist():
            content = source.read(info.filename)
            archive.writestr(info, edit(content) if info.filename == "data" else content)
    return target.getvalue()


BAD_FILES = {
    # name: (how to make it from a good VPG zip, what the error says)
    "truncated in the middle": (lambda data: data[: len(data) // 2], "truncated"),
    "truncated by a few bytes": (lambda data: data[:-10], "truncated"),
    "empty": (lambda data: b"", "truncated"),
    "random bytes": (lambda data: np.random.default_rng(0).bytes(4000), "not a model saved by Stable-Baselines3"),
    "corrupted parameters": (lambda data: corrupt_member(data, "policy.pth"), "CRC of its entry 'policy.pth'"),
    "corrupted data": (lambda data: corrupt_member(data, "data"), "CRC of its entry 'data'"),
    "data not JSON": (lambda data: rewrite_data(data, lambda content: b"{not json"), "not valid JSON"),
}


@pytest.mark.parametrize("case", BAD_FILES)
def test_bad_model_file_gives_a_clear_error(tmp_path, vpg_zip, case):
    make, message = BAD_FILES[case]
    path = tmp_path / "model.zip"
    path.write_bytes(make(vpg_zip))
    with pytest.raises(ValueError, match=rf"{re.escape(str(path))} is not a readable model file.*{re.escape(message)}"):
        VPG.load(path)


def test_missing_model_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"No model file at .*absent \(nor at .*absent\.zip\)"):
        VPG.load(tmp_path / "absent")


@pytest.mark.parametrize("algorithm", [PPO, A2C, DQN, "TRPO"])
def test_model_of_another_algorithm_is_refused(tmp_path, algorithm):
    if algorithm == "TRPO":
        algorithm = pytest.importorskip("sb3_contrib").TRPO
    # PPO's, A2C's and TRPO's files even hold an ActorCriticPolicy that VPG could load without noticing
    algorithm("MlpPolicy", "CartPole-v1").save(tmp_path / "other.zip")
    name = algorithm.__name__
    with pytest.raises(ValueError, match=rf"other\.zip was saved by {name}, not VPG"):
        VPG.load(tmp_path / "other.zip")


def test_bad_file_is_refused_before_anything_is_unpickled(tmp_path, vpg_zip):
    # A file of another algorithm whose data would run code when unpickled: the check reads JSON keys only
    marker = tmp_path / "code_ran"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    def other_algorithm_with_payload(content: bytes) -> bytes:
        data = {key: value for key, value in json.loads(content).items() if key != "use_baseline"}
        data["policy_class"] = {":type:": "<class 'type'>", ":serialized:": base64.b64encode(pickle.dumps(Payload())).decode()}
        return json.dumps(data).encode()

    path = tmp_path / "payload.zip"
    path.write_bytes(rewrite_data(vpg_zip, other_algorithm_with_payload))
    with pytest.raises(ValueError, match="not VPG"):
        VPG.load(path)
    assert not marker.exists()


def test_load_from_file_object_and_weights_alone(tmp_path):
    # CartPole's episodes outlast 8 steps: "truncate" gives the updates returns to learn from
    model = VPG("MlpPolicy", "CartPole-v1", n_steps=8, incomplete_episodes="truncate", seed=0).learn(16)
    model.save(tmp_path / "model.zip")
    with open(tmp_path / "model.zip", "rb") as file:
        assert VPG.load(file).num_timesteps == 16

    # The docs' safe ways to take the weights alone: set_parameters reads tensors with weights_only=True,
    # and a state dict saved with th.save loads with weights_only=True
    fresh = VPG("MlpPolicy", "CartPole-v1", n_steps=8, seed=1)
    fresh.set_parameters(str(tmp_path / "model.zip"))
    th.save(model.policy.state_dict(), tmp_path / "policy.pt")
    other = VPG("MlpPolicy", "CartPole-v1", n_steps=8, seed=2)
    other.policy.load_state_dict(th.load(tmp_path / "policy.pt", weights_only=True))
    for expected, a, b in zip(parameters(model), parameters(fresh), parameters(other), strict=True):
        assert th.equal(expected, a) and th.equal(expected, b)


# --- Soak ----------------------------------------------------------------------------------------------------


@pytest.mark.soak
def test_soak_learn_save_load_cycles_leak_nothing(tmp_path):
    cycles = int(os.environ.get("SB3_VPG_SOAK_CYCLES", "5"))

    def cycle(index: int) -> list[int]:
        env = make_vec_env(AlternateEnv, n_envs=2, seed=index, vec_env_cls=SubprocVecEnv)
        model = VPG("MlpPolicy", env, n_steps=N_STEPS, seed=index, tensorboard_log=str(tmp_path / "tb"))
        model.learn(2 * N_STEPS * 2, callback=AtomicCheckpointCallback(N_STEPS, str(tmp_path / "checkpoints")))
        model.save(tmp_path / "model.zip")
        loaded = VPG.load(tmp_path / "model.zip", env=env)
        loaded.learn(N_STEPS * 2, reset_num_timesteps=False)
        assert loaded.num_timesteps == 3 * N_STEPS * 2 and all_finite(loaded)
        pids = [process.pid for process in env.processes]
        env.close()
        return pids

    cycle(1000)  # first use: the forkserver starts, and libraries open what they keep open
    gc.collect()
    fds, threads = open_fds(), threading.active_count()
    pids = [pid for index in range(cycles) for pid in cycle(index)]
    gc.collect()

    assert len(open_fds()) <= len(fds), sorted(set(open_fds()) - set(fds))
    assert threading.active_count() <= threads
    assert multiprocessing.active_children() == []
    deadline = time.monotonic() + 30
    while any(process_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(process_alive(pid) for pid in pids)
