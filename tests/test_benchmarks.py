"""The benchmark scripts run end to end with tiny budgets (their full runs are commands in benchmarks/RESULTS.md)."""

import argparse
import csv
import inspect
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from sb3_vpg import VPG

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import benchmark  # noqa: E402 (benchmarks/ is a folder of scripts, not a package: importable once on sys.path)


def run_script(*args: str) -> str:
    result = subprocess.run([sys.executable, *args], check=False, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.mark.parametrize("algo", ["a2c", "ppo"])
def test_zoo_entry_of_another_version(algo, tmp_path):
    # rl_zoo3 2.9 publishes A2C/PPO settings for HalfCheetah-v4, not -v5: the benchmark writes the -v4 entry as -v5
    arguments = benchmark.zoo_entry_file(algo, "HalfCheetah-v5", str(tmp_path))
    assert arguments == ["--conf-file", str(tmp_path / "zoo_conf.yml")]
    entry = yaml.safe_load((tmp_path / "zoo_conf.yml").read_text())
    assert list(entry) == ["HalfCheetah-v5"] and entry["HalfCheetah-v5"]["normalize"] is True
    assert benchmark.zoo_entry_file(algo, "CartPole-v1", str(tmp_path)) == []  # published as it is
    assert benchmark.zoo_entry_file(algo, "NoSuchEnv-v5", str(tmp_path)) == []  # the zoo's own error follows
    assert benchmark.zoo_entry_file("vpg", "HalfCheetah-v5", str(tmp_path)) == []  # vpg.yml has it


@pytest.mark.slow
def test_benchmark_runs_resumes_and_reports(tmp_path):
    command = [str(BENCHMARKS / "benchmark.py"), "run", "--env", "CartPole-v1", "--algo", "vpg,a2c", "--seeds", "0"]
    command += ["--steps", "4000", "--eval-freq", "2000", "--eval-episodes", "2", "--out", str(tmp_path)]
    assert "2 runs to do" in run_script(*command)
    assert "0 runs to do" in run_script(*command)  # finished runs are skipped
    table = run_script(str(BENCHMARKS / "benchmark.py"), "report", "--out", str(tmp_path))
    assert "| CartPole-v1 | vpg | 1 | 4000 |" in table and "| CartPole-v1 | a2c | 1 | 4000 |" in table
    assert (tmp_path / "CartPole-v1.png").stat().st_size > 10_000
    with open(tmp_path / "curves.csv") as file:
        rows = list(csv.DictReader(file))
    assert {(row["algo"], row["timesteps"]) for row in rows} == {(a, t) for a in ("vpg", "a2c") for t in ("2000", "4000")}


@pytest.mark.slow
def test_a_run_that_another_process_trains_is_left_to_it(tmp_path):
    command = [str(BENCHMARKS / "benchmark.py"), "run", "--env", "CartPole-v1", "--algo", "vpg", "--seeds", "0,1"]
    command += ["--steps", "1000", "--eval-freq", "500", "--eval-episodes", "1", "--out", str(tmp_path)]
    command += ["--params", "n_envs:1", "n_steps:500", "batch_size:500"]
    taken, free = (tmp_path / "runs" / "CartPole-v1" / "vpg" / f"seed{seed}" for seed in (0, 1))
    taken.mkdir(parents=True)
    hold = f"import sys, time; sys.path.insert(0, {str(BENCHMARKS)!r}); import benchmark; "
    hold += f"lock = benchmark.take_run({str(taken)!r}); print(lock is not None, flush=True); time.sleep(600)"
    holder = subprocess.Popen([sys.executable, "-c", hold], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "True"
        assert benchmark.take_run(str(taken)) is None  # held by the other process
        assert "2 runs to do" in run_script(*command)
        # seed 0 is left to the process that holds it, seed 1 is trained
        assert not (taken / "done.json").exists() and not (taken / "train.log").exists()
        assert (free / "done.json").exists()
    finally:
        holder.kill()
        holder.wait()
    # The holder is gone, and with it its lock: the next run takes seed 0
    assert "1 runs to do" in run_script(*command)
    assert (taken / "done.json").exists()


def test_a_run_finished_after_the_listing_is_not_trained_again(tmp_path):
    folder = tmp_path / "runs" / "CartPole-v1" / "vpg" / "seed0"
    folder.mkdir(parents=True)
    (folder / "done.json").write_text("{}")  # another process finished it after this one listed its runs
    args = benchmark.argparse.Namespace(out=str(tmp_path), tag="")
    assert benchmark.train_if_free(args, "CartPole-v1", "vpg", 0) is None
    assert sorted(path.name for path in folder.iterdir()) == ["done.json", "running.lock"]


def test_report_lists_seeds_in_numeric_order(tmp_path):
    for seed, final in ((10, 100.0), (2, 20.0)):
        folder = tmp_path / "runs" / "CartPole-v1" / "vpg" / f"seed{seed}"
        (folder / "vpg" / "CartPole-v1_1").mkdir(parents=True)
        (folder / "done.json").write_text("{}")
        np.savez(folder / "vpg" / "CartPole-v1_1" / "evaluations.npz", timesteps=np.array([10, 20]), results=[[0.0], [final]])
    table = run_script(str(BENCHMARKS / "benchmark.py"), "report", "--out", str(tmp_path))
    assert "| CartPole-v1 | vpg | 2 | 20 | 60.0 +- 40.0 | 30.0 +- 20.0 | 20, 100 |" in table


@pytest.mark.slow
def test_throughput_reports_ratios_and_a_profile(tmp_path):
    algos = "random,collect,a2c,vpg,vpg_multinomial,vpg_fresh_buffer,vpg_serial,vpg_before,vpg_graph,vpg_minibatch"
    log = run_script(
        str(BENCHMARKS / "throughput.py"), "--case", "cartpole", "--rounds", "1", "--steps", "2048", "--algos", algos,
        "--profile", "--updates", "2", "--out", str(tmp_path / "rounds.csv"),
    )  # fmt: skip
    # every Discrete VPG contender's sampler agrees with the policy's probabilities (vpg_graph runs eagerly on CPU)
    for name in ("vpg", "vpg_multinomial", "vpg_fresh_buffer", "vpg_serial", "vpg_before", "vpg_graph", "vpg_minibatch"):
        assert f"{name} sampler check: max |log_prob - policy's| = 0.0e+00" in log
    speeds, profile_table = log.split("| algo | steps/s under cProfile | ")
    speeds, updates = speeds.split("| algo | ms per update (median of 2) | min-max | samples per update | vs vpg |")
    timed = {row.split("|")[1].strip(): row.split("|")[4:6] for row in updates.splitlines() if row.startswith("| vpg")}
    assert set(timed) == {name for name in algos.split(",") if name.startswith("vpg")}  # every VPG contender, alone
    rollout = 8 * inspect.signature(VPG).parameters["n_steps"].default  # the case's 8 envs
    assert timed["vpg"] == [f" {rollout} ", " 1.00x "] and all(cells[1].strip().endswith("x") for cells in timed.values())
    ratios = {row.split("|")[1].strip(): row.split("|")[4].strip() for row in speeds.splitlines() if row.startswith("| ")}
    assert ratios["a2c"] == "1.00x" and ratios["collect"].endswith("x") and set(ratios) == {"algo", *algos.split(",")}
    with open(tmp_path / "rounds.csv") as file:
        assert {row["algo"] for row in csv.DictReader(file)} == set(algos.split(","))
    # the profile finds each part of the training loop where it is (the function names of this SB3 version)
    header, *_, rows = profile_table.split("\n", 3)
    columns, profile = [column.strip() for column in header.split("|")[:-1]], {}
    for row in rows.strip().splitlines():
        cells = [cell.strip() for cell in row.split("|")[1:-1]]
        profile[cells[0]] = dict(zip(columns, map(float, cells[2:]), strict=True))
    assert columns == [
        "env step",
        "obs to device",
        "policy forward",
        "actions to host",
        "buffer add",
        "callbacks",
        "update",
        "other",
        "obs to buffer (in env step)",
    ]
    assert profile["random"]["env step"] > 0 and profile["random"]["policy forward"] == 0
    for name in ("collect", "a2c", "vpg"):
        assert all(profile[name][part] > 0 for part in ("env step", "policy forward", "buffer add")), profile[name]
    assert profile["a2c"]["update"] > profile["vpg"]["update"] > 0 and profile["collect"]["update"] == 0
    # VPG copies the observations into the buffer during the env step; SB3's loop (vpg_serial, vpg_before) after it
    assert profile["vpg"]["obs to buffer (in env step)"] > 0
    assert profile["vpg_serial"]["obs to buffer (in env step)"] == profile["vpg_before"]["obs to buffer (in env step)"] == 0


def test_throughput_cpu_time_counts_the_env_workers():
    # a SubprocVecEnv's CPU time is in its worker processes: the CPU bound must count them while they live
    import throughput

    start = throughput.cpu_seconds()
    burn = "import time\nend = time.process_time() + 0.5\nwhile time.process_time() < end: pass\ntime.sleep(30)"
    worker = subprocess.Popen([sys.executable, "-c", burn])
    try:
        deadline = time.monotonic() + 20
        while throughput.cpu_seconds() - start < 0.5 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert throughput.cpu_seconds() - start >= 0.5
    finally:
        worker.kill()
        worker.wait()


def test_throughput_vpg_sparse_before_is_the_entry_with_the_float_copy_and_in_place_reads():
    import gymnasium as gym
    import throughput
    from gymnasium import spaces
    from stable_baselines3.common.vec_env import DummyVecEnv

    from sb3_vpg.common.sparse_input import SparseInputLinear

    class SourceFrames(gym.Env):  # the spaces of the source's preprocessed Pong: difference frames, UP/DOWN
        observation_space = spaces.Box(-1, 1, shape=(6400,), dtype=np.int8)
        action_space = spaces.Discrete(2)

    env = DummyVecEnv([SourceFrames])
    before, entry = (throughput.build(name, "pong-source", env, 0, "cpu") for name in ("vpg_sparse_before", "vpg"))

    def thresholds(model):
        return [layer.contiguous_from for layer in model.policy.modules() if isinstance(layer, SparseInputLinear)]

    assert thresholds(before) == [float("inf")] * 2  # the actor's and the critic's first layers
    assert entry.policy.integer_features and not before.policy.integer_features
    assert thresholds(entry) == [SparseInputLinear.contiguous_from] * 2
    ours, theirs = before.policy.state_dict(), entry.policy.state_dict()
    assert list(ours) == list(theirs) and all(np.array_equal(ours[name], theirs[name]) for name in ours)  # same seed


def test_report_gives_the_steps_at_which_each_seed_first_reaches_a_return(tmp_path):
    curves = {("Pong", "vpg"): {0: (np.array([250_000, 500_000, 1_750_000]), np.array([-20.0, 0.0, 19.5])),
                                1: (np.array([250_000, 500_000, 1_750_000]), np.array([-21.0, -3.0, 15.0]))}}  # fmt: skip
    benchmark.write_report(curves, str(tmp_path), reach=[0, 19])
    header, _, row = (tmp_path / "summary.md").read_text().splitlines()
    assert header.endswith("| first evaluation >= 0, per seed | first evaluation >= 19, per seed |")
    assert row.endswith("| 20, 15 | 500k, 1.75M | 1.75M, - |")
    assert benchmark.steps_label(10_000_000) == "10M" and benchmark.steps_label(900) == "900"
    with pytest.raises(argparse.ArgumentTypeError, match="expected returns separated by commas"):
        benchmark.comma_floats("0,high")
