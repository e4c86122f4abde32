"""The benchmark scripts run end to end with tiny budgets (their full runs are commands in benchmarks/RESULTS.md)."""

import csv
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

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


def test_atari_curve_resumes_a_saved_run(tmp_path):
    command = [str(BENCHMARKS / "atari_curve.py"), "--algo", "vpg", "--n-envs", "2", "--steps", "128", "--device", "cpu"]
    command += ["--out", str(tmp_path), "--resume", "--set", "n_steps=32"]
    assert "128 in all" in run_script(*command)
    second = run_script(*command)
    assert "resuming" in second and "256 in all" in second
    assert (tmp_path / "PongNoFrameskip-v4_vpg_seed0.zip").is_file()
