"""The examples run end to end with a tiny budget (they run fully by hand)."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

# Subprocesses that train: part of the full suite, left out of the fast one (-m "not slow")
pytestmark = pytest.mark.slow

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run_example(*args: str) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return result


@pytest.mark.parametrize("script", ["cartpole.py", "continuous_control.py", "returns_callback.py"])
def test_example_runs(script, tmp_path):
    extra = ["--save", str(tmp_path / "models")] if script == "continuous_control.py" else []
    result = run_example(str(EXAMPLES / script), "--tiny", "--logdir", str(tmp_path), *extra)
    assert (tmp_path / "VPG_1").is_dir()
    assert "tensorboard --logdir" in result.stdout
    if script == "continuous_control.py":  # the VecNormalize statistics are saved beside the model
        assert sorted(path.name for path in (tmp_path / "models").iterdir()) == [
            "vpg_HalfCheetah-v5.zip",
            "vpg_HalfCheetah-v5_vecnormalize.pkl",
        ]
    if script == "returns_callback.py":  # the callback read the returns of both rollouts
        assert result.stdout.count(" returns, median ") == 2


def test_plot_run_draws_a_finished_run(tmp_path):
    run_example(str(EXAMPLES / "cartpole.py"), "--tiny", "--logdir", str(tmp_path))
    result = run_example(str(EXAMPLES / "plot_run.py"), str(tmp_path / "VPG_1"))
    assert (tmp_path / "VPG_1.png").stat().st_size > 10_000
    assert "points of rollout/ep_rew_mean" in result.stdout


def test_pong_example_runs_the_sources_experiment_and_resumes(tmp_path):
    # The PongNoFrameskip-v4 entry: no baseline, the return restarts at each point, and the samples after an env's
    # last point are dropped
    out = tmp_path / "pong"
    result = run_example(str(EXAMPLES / "pong.py"), "--tiny", "--out", str(out))
    fractions = [float(line.split("|")[2]) for line in result.stdout.splitlines() if "used_fraction" in line]
    assert fractions and all(0.0 < fraction < 1.0 for fraction in fractions), fractions
    assert "value_loss" not in result.stdout  # no critic
    assert (out / "checkpoints" / "rl_model_512_steps.zip").is_file() and (out / "progress_0.csv").is_file()
    # started again with a larger budget, it resumes from the checkpoint and logs a second segment
    result = run_example(str(EXAMPLES / "pong.py"), "--tiny", "--out", str(out), "--steps", "1024")
    assert "Resuming" in result.stdout and (out / "progress_512.csv").is_file()
    run_example(str(EXAMPLES / "pong.py"), "--plot", str(out), "--png", str(tmp_path / "curve.png"))
    assert (tmp_path / "curve.png").stat().st_size > 5_000


def test_pong_params_replace_the_entrys_arguments(tmp_path):
    # The entry has no critic; with --params use_baseline:True the run fits one and logs its loss. A policy_kwargs
    # string and a lin_ rate are read as the zoo reads them
    from sb3_vpg import VPG

    params = ["use_baseline:True", "learning_rate:lin_0.001", "policy_kwargs:dict(optimizer_class=th.optim.RMSprop)"]
    result = run_example(str(EXAMPLES / "pong.py"), "--tiny", "--out", str(tmp_path), "--params", *params)
    assert "value_loss" in result.stdout
    model = VPG.load(tmp_path / "checkpoints" / "rl_model_512_steps.zip")
    assert type(model.policy.optimizer).__name__ == "RMSprop"
    assert model.lr_schedule(1.0) == pytest.approx(1e-3) and model.lr_schedule(0.5) == pytest.approx(5e-4)
    bad = subprocess.run(
        [sys.executable, str(EXAMPLES / "pong.py"), "--tiny", "--params", "n_steps"], capture_output=True, text=True
    )
    assert bad.returncode != 0 and "--params takes NAME:VALUE items, got 'n_steps'" in bad.stderr
    bad = subprocess.run(
        [sys.executable, str(EXAMPLES / "pong.py"), "--tiny", "--params", "policy_kwargs:[64]"],
        capture_output=True,
        text=True,
    )
    assert bad.returncode != 0 and "policy_kwargs of --params must give a dict, got [64]" in bad.stderr


def test_pong_plot_reads_a_zoo_runs_monitor_file(tmp_path):
    # A benchmark run of rl_zoo3's A2C on EnvPool: its games are rows of monitor.csv, below the run's folder
    from stable_baselines3.common.monitor import ResultsWriter

    run = tmp_path / "runs" / "PongNoFrameskip-v4" / "a2c" / "seed0"
    writer = ResultsWriter(str(run / "a2c" / "PongNoFrameskip-v4_1" / "monitor.csv"), header={"t_start": 0.0})
    scores = np.repeat([-21.0, -5.0, 7.0], 60)  # 180 games, 1000 steps each
    for game, score in enumerate(scores):
        writer.write_row({"r": score, "l": 1000, "t": float(game)})
    writer.close()
    spec = importlib.util.spec_from_file_location("pong_example", EXAMPLES / "pong.py")
    pong = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pong)
    steps, means, _ = pong.read_curve(str(run))
    np.testing.assert_array_equal(steps, 1000 * np.arange(1, 181))
    expected = [scores[max(0, game - 99) : game + 1].mean() for game in range(180)]  # the last 100 games
    np.testing.assert_allclose(means, expected)
    result = run_example(str(EXAMPLES / "pong.py"), "--plot", str(run), "--png", str(tmp_path / "curve.png"))
    row = next(line for line in result.stdout.splitlines() if line.startswith("| a2c/seed0 |"))
    first = 1000 * (1 + next(game for game in range(180) if expected[game] >= 0))
    assert f"| {first / 1e6:.2f}M, " in row and row.endswith(f"| {expected[-1]:.2f} |")
