"""
Pong from pixels with VPG: the source tutorial's experiment (Karpathy's "Pong from Pixels") end to end.

The ``PongNoFrameskip-v4`` entry of the packaged ``vpg.yml``: ALE's frames preprocessed as in the source
(play field cropped and halved, background erased, difference of consecutive frames), two actions (UP, DOWN),
pure REINFORCE on normalized returns that restart at each point, on EnvPool's C++ engine when it is installed
(``pip install 'sb3-vpg[envpool]'``). ``--entry pong-baseline`` adds a learned baseline, ``--entry atari`` is the
generic Atari path (84x84x4 frames, CnnPolicy) with A2C's update, ``--entry atari-mc`` the same frames with a
Monte-Carlo update.

The run logs SB3's ``progress.csv`` and TensorBoard files into ``--out`` and saves an atomic checkpoint every
``--checkpoint-every`` steps; started again with the same ``--out``, it resumes from the newest checkpoint.
``rollout/ep_rew_mean`` is the mean score of the last 100 training games; ``--plot`` draws it, and tabulates it at a
few step counts. ``--plot`` also takes a zoo run's folder (``python -m sb3_vpg.zoo train``, or a run of
``benchmarks/benchmark.py``, e.g. rl_zoo3's A2C on the same engine): there the curve is the mean of the last 100 games
of its ``monitor.csv``, at the sum of the lengths of the games finished so far.

    python examples/pong.py --seed 0                        # 10M steps into runs/pong/PongNoFrameskip-v4_seed0
    python examples/pong.py --entry pong-baseline --seed 0
    python examples/pong.py --entry atari-mc --params use_baseline:False n_steps:128 batch_size:None   # other VPG arguments
    python examples/pong.py --plot runs/pong/*              # runs/pong/curves.png
    python examples/pong.py --plot runs/pong/* benchmarks/results/ladder/runs/PongNoFrameskip-v4/a2c/seed0
    python examples/pong.py --tiny                          # smoke test
"""

import argparse
import ast
import csv
import glob
import os
import re

import numpy as np
import torch as th
from stable_baselines3.common.logger import CSVOutputFormat, Logger, make_output_format
from stable_baselines3.common.vec_env import VecEnv

from sb3_vpg import VPG, AtomicCheckpointCallback, latest_checkpoint, load_checkpoint
from sb3_vpg.hyperparams import load_hyperparams, make_env, resolve_algo_kwargs

ENV_ID = "PongNoFrameskip-v4"


def default_engine() -> str:
    try:
        import envpool  # noqa: F401
    except ImportError:
        return "subproc"
    return "envpool"


def segment_start(path: str) -> int:
    """The step at which the segment logged in ``progress_<step>.csv`` started."""
    return int(os.path.basename(path)[len("progress_") : -len(".csv")])


def progress_files(out: str) -> list[str]:
    """The run's ``progress_<start step>.csv`` files, one per start or resume, oldest first."""
    return sorted(glob.glob(os.path.join(out, "progress_*.csv")), key=segment_start)


def read_monitor_curve(out: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """
    ``(timesteps, mean score of the last 100 games, seconds)`` of a zoo run in ``out`` (or a folder below it), from
    its monitor files: one point per game, at the sum of the lengths of the games finished by then.
    """
    from stable_baselines3.common.monitor import load_results

    files = glob.glob(os.path.join(out, "**", "*monitor.csv"), recursive=True)
    if not files:
        return np.zeros(0), np.zeros(0), np.zeros(0)
    games = load_results(os.path.dirname(files[0]))  # every monitor file of that folder, in the order of the games
    scores = games["r"].rolling(100, min_periods=1).mean()  # as SB3's rollout/ep_rew_mean
    return games["l"].cumsum().to_numpy(float), scores.to_numpy(float), games["t"].to_numpy(float)


def read_curve(out: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(timesteps, mean score of the last 100 games, seconds)`` of a run, across its resumes."""
    steps, scores, seconds = [], [], []
    files = progress_files(out)
    if not files:
        return read_monitor_curve(out)
    offset = 0.0
    for index, path in enumerate(files):
        # A resumed segment starts at its checkpoint: the rows of the one before it beyond that step are dropped
        end = segment_start(files[index + 1]) if index + 1 < len(files) else float("inf")
        with open(path, newline="") as file:
            rows = [row for row in csv.DictReader(file) if row.get("rollout/ep_rew_mean")]
        rows = [row for row in rows if float(row["time/total_timesteps"]) <= end]
        steps += [float(row["time/total_timesteps"]) for row in rows]
        scores += [float(row["rollout/ep_rew_mean"]) for row in rows]
        seconds += [float(row["time/time_elapsed"]) + offset for row in rows]
        offset = seconds[-1] if seconds else offset
    return np.array(steps), np.array(scores), np.array(seconds)


def run_name(out: str) -> str:
    """The run's folder name; with its algo's for a benchmark run (``a2c/seed0``)."""
    parent, name = os.path.split(os.path.normpath(out))
    return f"{os.path.basename(parent)}/{name}" if name.startswith("seed") else name


def summary(runs: list[str], marks: tuple[float, ...] = (1e6, 2e6, 3e6, 4e6, 6e6, 8e6)) -> None:
    """A Markdown table of the runs: the mean of the last 100 games at a few step counts, and when it first reached 0."""
    print("| run | steps | " + " | ".join(f"at {mark / 1e6:g}M" for mark in marks) + " | first >= 0: steps, minutes | last |")
    print("|---|---|" + "---|" * len(marks) + "---|---|")
    for out in runs:
        steps, scores, seconds = read_curve(out)
        if not len(steps):
            continue
        at = [f"{scores[np.searchsorted(steps, mark)]:.2f}" if steps[-1] >= mark else "" for mark in marks]
        reached = np.flatnonzero(scores >= 0)
        first = f"{steps[reached[0]] / 1e6:.2f}M, {seconds[reached[0]] / 60:.1f}" if len(reached) else "not yet"
        name = run_name(out)
        print(f"| {name} | {steps[-1] / 1e6:.2f}M | " + " | ".join(at) + f" | {first} | {scores[-1]:.2f} |")


def plot(runs: list[str], png: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(9, 4.5))
    # one colour per setting (the run's name without its seed), one line style per seed of it
    settings: dict[str, int] = {}
    for out in runs:
        name = run_name(out)
        setting = re.sub(r"[_/]?seed\d+$", "", name)
        seen = settings.setdefault(setting, 0)
        settings[setting] += 1
        steps, scores, _ = read_curve(out)
        color, style = f"C{list(settings).index(setting) % 10}", ["-", "--", ":", "-."][seen % 4]
        axis.plot(steps / 1e6, scores, color=color, linestyle=style, linewidth=1.2, label=name)
    axis.axhline(0, color="grey", linewidth=0.5)
    axis.set(xlabel="env steps (millions)", ylabel="mean score, last 100 training games", ylim=(-21.5, 21.5))
    axis.set_title("VPG on Pong from pixels")
    axis.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    figure.tight_layout()
    figure.savefig(png, dpi=100)
    print(f"Saved {png}")


def parse_params(items: list[str]) -> dict[str, object]:
    """``["use_baseline:False", "n_steps:128"]`` -> ``{"use_baseline": False, "n_steps": 128}`` (as rl_zoo3's ``-params``;
    a value that is not a Python literal stays a string, and ``learning_rate:lin_<value>`` and
    ``policy_kwargs:dict(...)`` are read as in the zoo: :func:`~sb3_vpg.hyperparams.resolve_algo_kwargs`)."""
    params: dict[str, object] = {}
    for item in items:
        key, colon, text = item.partition(":")
        if not colon or not key:
            raise SystemExit(f"pong.py: --params takes NAME:VALUE items, got {item!r}")
        try:
            params[key] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            params[key] = text
    try:
        return resolve_algo_kwargs(params, "--params")
    except (ValueError, TypeError) as error:
        raise SystemExit(f"pong.py: {error}") from error


def train(args: argparse.Namespace) -> None:
    run, hyperparams = load_hyperparams(args.entry)
    total = args.steps or run["n_timesteps"]
    n_envs = args.n_envs or run["n_envs"]
    if args.tiny:
        total, n_envs, hyperparams["n_steps"] = args.steps or 512, 2, 128
    hyperparams.update(parse_params(args.params))
    out = args.out or os.path.join("runs", "pong", f"{args.entry}_seed{args.seed}")
    checkpoints = os.path.join(out, "checkpoints")
    env: VecEnv = make_env(ENV_ID, run, n_envs, args.seed, args.vec_env)

    found = latest_checkpoint(checkpoints)
    if found is not None:
        model = load_checkpoint(checkpoints, env, device=args.device)
        print(f"Resuming {out} at {model.num_timesteps} steps")
    else:
        model = VPG(run["policy"], env, seed=args.seed, device=args.device, verbose=1, **hyperparams)
    start = model.num_timesteps
    # One CSV per start or resume (SB3's CSV writer starts its file anew); read_curve joins them
    os.makedirs(out, exist_ok=True)
    formats = [make_output_format("stdout", out), CSVOutputFormat(os.path.join(out, f"progress_{start}.csv"))]
    model.set_logger(Logger(out, [*formats, make_output_format("tensorboard", out)]))
    every = max(args.checkpoint_every // n_envs, 1)
    callback = AtomicCheckpointCallback(every, checkpoints, save_vecnormalize=True)
    model.learn(total - start, callback=callback, reset_num_timesteps=False, log_interval=args.log_interval)
    callback.save()
    env.close()
    steps, scores, seconds = read_curve(out)
    if len(steps):
        print(f"{out}: {int(steps[-1])} steps, mean of the last 100 games {scores[-1]:.2f}, {seconds[-1] / 60:.1f} min")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entry", default=ENV_ID, help="vpg.yml entry: PongNoFrameskip-v4, pong-baseline, atari, ...")
    parser.add_argument("--steps", type=int, default=None, help="total env steps (default: n_timesteps of the entry)")
    parser.add_argument("--n-envs", type=int, default=None, help="default: n_envs of the entry")
    parser.add_argument(
        "--params",
        nargs="*",
        default=[],
        metavar="NAME:VALUE",
        help="VPG arguments that replace the entry's (a new run; a resumed one keeps its checkpoint's)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--vec-env", default=default_engine(), choices=["envpool", "subproc", "dummy"])
    parser.add_argument("--out", default=None, help="run folder (default: runs/pong/ENTRY_seedSEED)")
    parser.add_argument("--checkpoint-every", type=int, default=250_000, help="env steps between checkpoints")
    parser.add_argument("--log-interval", type=int, default=1, help="rollouts between log rows")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the env engine has its own)")
    parser.add_argument("--tiny", action="store_true", help="512 steps (or --steps) with 2 envs, for a smoke test")
    parser.add_argument("--plot", nargs="+", metavar="RUN", help="draw the curves of these run folders and tabulate them")
    parser.add_argument("--png", default=None, help="picture of --plot (default: curves.png beside the runs)")
    args = parser.parse_args()
    th.set_num_threads(args.threads)
    if args.plot:
        plot(args.plot, args.png or os.path.join(os.path.dirname(os.path.normpath(args.plot[0])), "curves.png"))
        summary(args.plot)
    else:
        train(args)


if __name__ == "__main__":
    main()
