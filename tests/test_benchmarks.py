"""The benchmark scripts run end to end with tiny budgets (their full runs are commands in benchmarks/RESULTS.md)."""

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from stable_baselines3 import A2C

from sb3_vpg import VPG

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import benchmark  # benchmarks/ is a folder of scripts, not a package


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


def test_report_lists_seeds_in_numeric_order(tmp_path):
    for seed, final in ((10, 100.0), (2, 20.0)):
        folder = tmp_path / "runs" / "CartPole-v1" / "vpg" / f"seed{seed}"
        (folder / "vpg" / "CartPole-v1_1").mkdir(parents=True)
        (folder / "done.json").write_text("{}")
        np.savez(folder / "vpg" / "CartPole-v1_1" / "evaluations.npz", timesteps=np.array([10, 20]), results=[[0.0], [final]])
    table = run_script(str(BENCHMARKS / "benchmark.py"), "report", "--out", str(tmp_path))
    assert "| CartPole-v1 | vpg | 2 | 20 | 60.0 +- 40.0 | 30.0 +- 20.0 | 20, 100 |" in table


def test_atari_curve_resumes_a_saved_run(tmp_path):
    command = [str(BENCHMARKS / "atari_curve.py"), "--algo", "vpg", "--n-envs", "2", "--steps", "128", "--device", "cpu"]
    command += ["--out", str(tmp_path), "--resume", "--set", "n_steps=32"]
    assert "128 in all" in run_script(*command)
    second = run_script(*command)
    assert "resuming" in second and "256 in all" in second
    assert (tmp_path / "PongNoFrameskip-v4_vpg_seed0.zip").is_file()
    table = run_script(str(BENCHMARKS / "atari_curve.py"), "--probe", str(tmp_path / "PongNoFrameskip-v4_vpg_seed0.zip"))
    row = table.strip().splitlines()[-1].split("|")
    assert row[1].strip() == "PongNoFrameskip-v4_vpg_seed0.zip" and row[2].strip() == "256"
    entropy, uniform = row[3].split()  # uniform: log(6) for Pong's 6 actions
    # 256 steps leave the policy near uniform (the table rounds to 3 digits: log(6) = 1.7918 prints as 1.792)
    assert uniform == "(1.79)" and 1.7 < float(entropy) <= round(np.log(6), 3)

    # pong_continue.py goes on from that model with a changed learning rate and a CNN of the critic's own, probing
    # every update
    out = tmp_path / "continued"
    log = run_script(
        str(BENCHMARKS / "pong_continue.py"), str(tmp_path / "PongNoFrameskip-v4_vpg_seed0.zip"), "--out", str(out),
        "--steps", "128", "--n-envs", "2", "--probe-every", "1", "--set", "learning_rate=2.5e-4", "--separate-critic", "--grad-split",
    )  # fmt: skip
    assert "s of it in updates (384 in all)" in log
    with open(out / "progress.csv") as file:
        rates = [row["train/learning_rate"] for row in csv.DictReader(file)]
    assert {float(rate) for rate in rates if rate} == {2.5e-4}  # an update's values are written with the next rollout
    with open(out / "probe.csv") as file:
        probes = list(csv.DictReader(file))
    assert [int(row["timesteps"]) for row in probes] == [320, 384]  # the end of both rollouts
    # the critic's own CNN: only the policy loss reaches the actor's
    assert all(float(row["cnn_grad_policy"]) > 0 and float(row["cnn_grad_value"]) == 0 for row in probes)
    continued = VPG.load(out / "model.zip")
    assert continued.learning_rate == 2.5e-4
    assert continued.policy.pi_features_extractor is not continued.policy.vf_features_extractor
    # --evaluate plays whole games, greedy then sampled, without training
    evaluated = tmp_path / "evaluated"
    log = run_script(
        str(BENCHMARKS / "pong_continue.py"), str(out / "model.zip"), "--evaluate", "1", "--n-envs", "1", "--out", str(evaluated),
    )  # fmt: skip
    assert "384 steps, deterministic=True" in log and "384 steps, deterministic=False" in log
    with open(evaluated / "evaluation.csv") as file:
        games = list(csv.DictReader(file))
    assert [(row["timesteps"], row["deterministic"], row["games"]) for row in games] == [
        ("384", "True", "1"),
        ("384", "False", "1"),
    ]
    for row in games:  # a whole game of Pong ends at 21 points for one side
        assert float(row["mean"]) == float(row["returns"]) and -21 <= float(row["mean"]) <= 21 and float(row["std"]) == 0
    assert [path.name for path in evaluated.iterdir()] == ["evaluation.csv"]  # nothing trained, nothing saved
    # --plot draws the games of a run's earlier (GPU) part before its continuation
    (out / "games.csv").write_text("algo,seed,timesteps,episode_return,episode_length,wall_s\nvpg,0,100,-21.0,90,1.0\n")
    assert run_script(str(BENCHMARKS / "pong_continue.py"), "--plot", str(out)).strip() == str(tmp_path / "continued.png")
    assert (tmp_path / "continued.png").stat().st_size > 0
    png = tmp_path / "elsewhere.png"
    assert run_script(str(BENCHMARKS / "pong_continue.py"), "--plot", str(out), "--png", str(png)).strip() == str(png)
    assert png.stat().st_size > 0

    # --fresh starts a new run from the atari entry, here with A2C's optimizer and a progress row every 2 updates
    fresh = tmp_path / "fresh"
    log = run_script(
        str(BENCHMARKS / "pong_continue.py"), "--fresh", "--zoo-optimizer", "--out", str(fresh), "--steps", "80",
        "--n-envs", "2", "--probe-every", "100", "--log-interval", "2", "--set", "n_steps=5", "batch_size=None",
    )  # fmt: skip
    assert "s of it in updates (80 in all)" in log
    with open(fresh / "progress.csv") as file:
        assert [int(row["time/iterations"]) for row in csv.DictReader(file)] == [2, 4, 6, 8]
    started = VPG.load(fresh / "model.zip")
    assert (started.n_steps, started.batch_size, started.num_timesteps) == (5, None, 80)
    assert type(started.policy.optimizer).__name__ == "RMSpropTFLike"
    # --fresh a2c: rl_zoo3's A2C Atari settings
    log = run_script(
        str(BENCHMARKS / "pong_continue.py"), "--fresh", "a2c", "--out", str(tmp_path / "a2c"), "--steps", "20",
        "--n-envs", "2", "--probe-every", "100",
    )  # fmt: skip
    a2c = A2C.load(tmp_path / "a2c" / "model.zip")
    assert (a2c.n_steps, a2c.vf_coef, a2c.ent_coef, a2c.num_timesteps) == (5, 0.25, 0.01, 20)


def test_throughput_reports_ratios_and_a_profile(tmp_path):
    algos = "random,collect,a2c,vpg,vpg_multinomial,vpg_fresh_buffer,vpg_serial,vpg_before,vpg_graph"
    log = run_script(
        str(BENCHMARKS / "throughput.py"), "--case", "cartpole", "--rounds", "1", "--steps", "2048", "--algos", algos,
        "--profile", "--out", str(tmp_path / "rounds.csv"),
    )  # fmt: skip
    # every Discrete VPG contender's sampler agrees with the policy's probabilities (vpg_graph runs eagerly on CPU)
    for name in ("vpg", "vpg_multinomial", "vpg_fresh_buffer", "vpg_serial", "vpg_before", "vpg_graph"):
        assert f"{name} sampler check: max |log_prob - policy's| = 0.0e+00" in log
    speeds, profile_table = log.split("| algo | steps/s under cProfile | ")
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
