"""
``python -m sb3_vpg.zoo train --checkpoint-every STEPS``: a run killed with SIGKILL is continued by the same command,
in its folder, from its newest checkpoint, on its step count; compared with the same run uninterrupted.

The zoo runs in subprocesses (see tests/test_zoo.py); the kill is a callback of the entry (tests/zoo_callbacks.py)
at the first rollout from step 2500, after the checkpoint of step 2000.
"""

import pickle
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from stable_baselines3.common.save_util import load_from_zip_file

from sb3_vpg.common.reliability import monitor_start_time
from tests.processes import subprocess_env
from tests.test_zoo import run, zoo

STEPS, EVERY = 3000, 1000
TRAIN = [
    "train", "--algo", "vpg", "--env", "CartPole-v1", "-n", str(STEPS), "--seed", "0", "--num-threads", "1",
    "--eval-freq", "500", "--eval-episodes", "2", "--checkpoint-every", str(EVERY),
    "-params", "n_steps:500", "batch_size:500", "normalize:True",
]  # fmt: skip
KILL = "callback:[{'tests.zoo_callbacks.KillAt': {'steps': 2500}}]"
KILL_EARLY = "callback:[{'tests.zoo_callbacks.KillAt': {'steps': 500}}]"  # before the first checkpoint
RUN = Path("logs", "vpg", "CartPole-v1_1")


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Any]:
    """``killed``: the run killed, then the same command again; ``reference``: the run uninterrupted."""
    killed, reference = tmp_path_factory.mktemp("killed"), tmp_path_factory.mktemp("reference")
    crash = run("sb3_vpg.zoo", *TRAIN, KILL, cwd=killed)
    assert crash.returncode == -9, crash.stderr[-3000:]
    killed_at = time.time()
    resumed = zoo(*TRAIN, cwd=killed)
    zoo(*TRAIN, cwd=reference)
    return {"killed": killed, "reference": reference, "output": resumed.stdout, "killed_at": killed_at}


def evaluations(cwd: Path) -> tuple[np.ndarray, np.ndarray]:
    with np.load(cwd / RUN / "evaluations.npz") as saved:
        return saved["timesteps"], saved["results"]


def test_killed_run_resumes_in_its_folder_from_its_newest_checkpoint(runs):
    killed = runs["killed"]
    assert f"Resuming {RUN} from its checkpoint at 2000 steps" in runs["output"]
    assert sorted(path.name for path in (killed / "logs" / "vpg").iterdir()) == ["CartPole-v1_1"]
    checkpoints = sorted(path.name for path in (killed / RUN / "checkpoints").glob("*.zip"))
    assert checkpoints == [f"rl_model_{steps}_steps.zip" for steps in (1000, 2000, 3000)]
    # The final model counted on from the checkpoint: the learning-rate schedule's progress is steps / total
    data, _, _ = load_from_zip_file(killed / RUN / "CartPole-v1.zip", custom_objects={"learning_rate": 0.0})
    assert data["num_timesteps"] == STEPS and data["_total_timesteps"] == STEPS


def test_evaluations_continue_on_the_same_steps(runs):
    timesteps, results = evaluations(runs["killed"])
    reference_timesteps, reference_results = evaluations(runs["reference"])
    assert timesteps.tolist() == reference_timesteps.tolist() == list(range(500, STEPS + 1, 500))
    # Up to the checkpoint the killed run was the uninterrupted run (same seed), after it another continuation
    np.testing.assert_array_equal(results[:4], reference_results[:4])


def test_vec_normalize_statistics_continue_without_counting_the_restart(runs):
    def counts(cwd: Path) -> tuple[float, float]:
        with open(cwd / RUN / "CartPole-v1" / "vecnormalize.pkl", "rb") as file:
            statistics = pickle.load(file)
        return statistics.obs_rms.count, statistics.ret_rms.count

    # One observation per step and the first reset's, one return per step (the counts start at 1e-4)
    assert counts(runs["killed"]) == counts(runs["reference"]) == pytest.approx((STEPS + 1 + 1e-4, STEPS + 1e-4))


def games(path: Path) -> list[tuple[float, int, float]]:
    """(score, length, wall time of its end) of each game of a ``Monitor`` file."""
    start = monitor_start_time(str(path))
    lines = path.read_text().splitlines()
    assert sum(line.startswith("#") for line in lines) == 1 and lines.count("r,l,t") == 1, path.name
    return [(float(r), int(length), start + float(t)) for r, length, t in (line.split(",") for line in lines[2:])]


def test_monitor_files_keep_the_games_up_to_the_checkpoint_then_the_resumed_ones(runs):
    # The killed attempt's games that ended after the checkpoint of step 2000 were played by a model the resume
    # discards; the resumed attempt plays those steps again. Before the checkpoint, the killed run was the
    # uninterrupted run (same seed): the same games.
    checkpoint = (runs["killed"] / RUN / "checkpoints" / "rl_model_2000_steps.zip").stat().st_mtime
    files = sorted((runs["killed"] / RUN).glob("*.monitor.csv"))
    assert files
    for path in files:
        killed, reference = games(path), games(runs["reference"] / RUN / path.name)
        kept = [game[:2] for game in killed if game[2] <= checkpoint]
        assert kept and kept == [game[:2] for game in reference[: len(kept)]], path.name
        assert not [game for game in killed if checkpoint < game[2] < runs["killed_at"]], path.name
        assert [game for game in killed if game[2] > runs["killed_at"]], path.name  # the resumed attempt's follow


def test_monitor_times_go_on_from_the_first_start(runs):
    # load_results orders the games by their time: the resumed attempt's games come after the killed one's
    for path in (runs["killed"] / RUN).glob("*.monitor.csv"):
        times = [float(line.split(",")[2]) for line in path.read_text().splitlines()[2:]]
        assert times == sorted(times), path.name


def test_finished_run_is_not_resumed(runs):
    again = zoo(*TRAIN, cwd=runs["reference"])
    assert "Resuming" not in again.stdout
    assert sorted(path.name for path in (runs["reference"] / "logs" / "vpg").iterdir()) == ["CartPole-v1_1", "CartPole-v1_2"]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--checkpoint-every", "0"], "--checkpoint-every must be a positive number of env steps, got '0'"),
        (["--checkpoint-every", "ten"], "--checkpoint-every must be a positive number of env steps, got 'ten'"),
        (["--checkpoint-every", "100", "-optimize"], "--checkpoint-every does not go with -optimize"),
        (["--checkpoint-every", "100", "--algo", "dqn"], "--checkpoint-every needs an on-policy algorithm"),
    ],
)
def test_bad_use_is_named(flags, message, tmp_path):
    result = run("sb3_vpg.zoo", "train", "--env", "CartPole-v1", "-n", "100", *flags, cwd=tmp_path, timeout=120)
    assert result.returncode != 0 and message in result.stderr, result.stderr[-3000:]


def test_benchmark_run_resumes_an_interrupted_run(tmp_path):
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "benchmark.py"
    command = [sys.executable, str(script), "run", "--env", "CartPole-v1", "--algo", "vpg", "--seeds", "0"]
    command += ["--steps", str(STEPS), "--eval-freq", "500", "--eval-episodes", "2", "--out", str(tmp_path)]
    command += ["--checkpoint-every", str(EVERY)]
    params = ["--params", "n_steps:500", "batch_size:500"]

    def benchmark(*extra: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*command, *params, *extra], check=False, env=subprocess_env(), capture_output=True, text=True, timeout=600
        )

    folder = tmp_path / "runs" / "CartPole-v1" / "vpg" / "seed0"
    # Killed before its first checkpoint: the next attempt starts again in place of it, not beside it
    assert benchmark(KILL_EARLY).returncode != 0  # the killed run fails the benchmark
    assert not (folder / "done.json").exists()
    assert benchmark(KILL).returncode != 0
    assert not (folder / "done.json").exists()
    finished = benchmark()
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert (folder / "done.json").exists()
    log = (folder / "train.log").read_text()
    assert "from its checkpoint at 2000 steps" in log
    # the log keeps the attempt that wrote the checkpoint before the one that resumed from it
    assert log.count("# attempt started") == 2
    assert [path.name for path in (folder / "vpg").iterdir()] == ["CartPole-v1_1"]
