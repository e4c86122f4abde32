"""
VPG beside SB3's A2C and PPO: the same envs, seeds and step budgets, trained through RL Baselines3 Zoo.

``run`` trains every (env, algo, seed) that has not finished yet (it is resumable: finished runs are
skipped, unfinished ones start again), each as ``python -m sb3_vpg.zoo train`` with the zoo's periodic
evaluation on a separate env (deterministic actions, except on Atari, as rl_zoo3 does). VPG takes the packaged
``vpg.yml``, A2C and PPO rl_zoo3's published hyperparameters; only the step budget (``-n``) is ours.

- ``vpg``: the packaged entry as it is;
- ``vpg_pure`` / ``vpg_baseline``: the same entry with ``use_baseline`` forced off / on.

``report`` reads every ``evaluations.npz`` and writes ``curves.csv`` (one row per evaluation), ``summary.md``
(final and area-under-curve returns, mean +- std over seeds) and one ``{env}.png`` per env (mean over seeds,
with a band of one standard deviation).

Usage::

    python benchmarks/benchmark.py run --env CartPole-v1 --algo vpg,vpg_pure,a2c,ppo --seeds 0-4 --steps 100000
    python benchmarks/benchmark.py report
"""

import argparse
import csv
import glob
import itertools
import json
import os
import shutil
import subprocess
import sys
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor, as_completed

import numpy as np

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")

#: Benchmark name -> (rl_zoo3 algo, extra ``-params``)
ALGOS = {
    "vpg": ("vpg", []),
    "vpg_pure": ("vpg", ["use_baseline:False"]),
    "vpg_baseline": ("vpg", ["use_baseline:True"]),
    "a2c": ("a2c", []),
    "ppo": ("ppo", []),
}


def parse_seeds(text: str) -> list[int]:
    """``"0-4"`` or ``"0,1,2"``."""
    if "-" in text:
        first, last = text.split("-")
        return list(range(int(first), int(last) + 1))
    return [int(seed) for seed in text.split(",")]


def run_dir(out: str, env: str, algo: str, seed: int) -> str:
    return os.path.join(out, "runs", env, algo, f"seed{seed}")


def zoo_entry_file(zoo_algo: str, env: str, folder: str) -> list[str]:
    """``--conf-file`` arguments for an env id that rl_zoo3's ``{zoo_algo}.yml`` lacks but holds in another version.

    rl_zoo3 2.9 publishes A2C and PPO hyperparameters for ``HalfCheetah-v4`` and ``Hopper-v4``, not ``-v5``; the
    newest version it holds is used, written to ``folder/zoo_conf.yml``. Returns ``[]`` when none is needed.
    """
    import rl_zoo3
    import yaml

    if zoo_algo == "vpg":
        return []
    with open(os.path.join(os.path.dirname(rl_zoo3.__file__), "hyperparams", f"{zoo_algo}.yml")) as file:
        published = yaml.safe_load(file)
    name, _, version = env.rpartition("-v")
    if env in published or not name or not version.isdigit():
        return []
    versions = {
        int(number): key
        for key in published
        for base, _, number in [key.rpartition("-v")]
        if base == name and number.isdigit()
    }
    if not versions:
        return []
    path = os.path.join(folder, "zoo_conf.yml")
    with open(path, "w") as file:
        yaml.safe_dump({env: published[versions[max(versions)]]}, file)
    return ["--conf-file", path]


def train_one(args: argparse.Namespace, env: str, algo: str, seed: int) -> tuple[str, float, int]:
    """One zoo training run; returns (run dir, seconds, exit code). A ``done.json`` marks it finished."""
    folder = run_dir(args.out, env, algo + args.tag, seed)
    zoo_algo, params = ALGOS[algo]
    params = params + args.params
    os.makedirs(folder, exist_ok=True)
    command = [sys.executable, "-m", "sb3_vpg.zoo", "train", "--algo", zoo_algo, "--env", env, "--seed", str(seed)]
    command += zoo_entry_file(zoo_algo, env, folder)
    command += ["-n", str(args.steps), "--eval-freq", str(args.eval_freq), "--eval-episodes", str(args.eval_episodes)]
    command += ["--n-eval-envs", "1", "--num-threads", "1", "-f", folder, "--vec-env", args.vec_env, "--device", args.device]
    command += ["--log-interval", "-1"] + (["-params", *params] if params else [])
    for stale in glob.glob(os.path.join(folder, zoo_algo, "*")):  # an interrupted attempt starts again
        shutil.rmtree(stale)
    start = time.perf_counter()
    with open(os.path.join(folder, "train.log"), "w") as log:
        code = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, check=False).returncode
    seconds = time.perf_counter() - start
    if code == 0:
        with open(os.path.join(folder, "done.json"), "w") as file:
            json.dump({"command": " ".join(command[1:]), "seconds": seconds, "steps": args.steps}, file)
    return folder, seconds, code


def run(args: argparse.Namespace) -> None:
    from tqdm import tqdm

    jobs = [
        (env, algo, seed)
        for env, algo, seed in itertools.product(args.env.split(","), args.algo.split(","), parse_seeds(args.seeds))
        if not os.path.exists(os.path.join(run_dir(args.out, env, algo + args.tag, seed), "done.json"))
    ]
    unknown = {algo for _, algo, _ in jobs} - set(ALGOS)
    if unknown:
        sys.exit(f"unknown --algo {sorted(unknown)}; choose from {sorted(ALGOS)}")
    print(f"{len(jobs)} runs to do (finished ones are skipped), {args.jobs} at a time", flush=True)
    failed = []
    with ThreadPoolExecutor(args.jobs) as pool, tqdm(total=len(jobs), unit="run") as bar:
        futures = {pool.submit(train_one, args, *job): job for job in jobs}
        for future in as_completed(futures):
            folder, seconds, code = future.result()
            bar.set_postfix_str(f"{'/'.join(map(str, futures[future]))} {seconds:.0f} s")
            bar.update()
            if code != 0:
                failed.append(f"{folder} (exit {code}, see train.log)")
    if failed:
        sys.exit("failed runs:\n" + "\n".join(failed))


def load_curves(out: str) -> dict[tuple[str, str], dict[int, tuple[np.ndarray, np.ndarray]]]:
    """(env, algo) -> seed -> (timesteps, mean evaluation return), for every finished run."""
    curves: dict[tuple[str, str], dict[int, tuple[np.ndarray, np.ndarray]]] = defaultdict(dict)
    for done in sorted(glob.glob(os.path.join(out, "runs", "*", "*", "seed*", "done.json"))):
        folder = os.path.dirname(done)
        env, algo, seed = folder.split(os.sep)[-3], folder.split(os.sep)[-2], int(folder.split(os.sep)[-1][4:])
        found = glob.glob(os.path.join(folder, "*", "*", "evaluations.npz"))
        if not found:
            continue
        data = np.load(found[0])
        curves[(env, algo)][seed] = (data["timesteps"], data["results"].mean(axis=1))
    return curves


def _algo_order(name: str) -> tuple[int, str]:
    """Table order: the ALGOS order, then tagged variants after their algo."""
    base = name.split("+")[0]
    return (list(ALGOS).index(base) if base in ALGOS else len(ALGOS), name)


def report(args: argparse.Namespace) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = load_curves(args.out)
    if not curves:
        sys.exit(f"no finished run under {args.out}/runs")
    with open(os.path.join(args.out, "curves.csv"), "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["env", "algo", "seed", "timesteps", "mean_eval_return"])
        for (env, algo), seeds in sorted(curves.items()):
            for seed, (steps, returns) in sorted(seeds.items()):
                writer.writerows([env, algo, seed, int(t), float(r)] for t, r in zip(steps, returns))

    lines = [
        "| env | algo | seeds | steps | final return | area under curve | final return per seed |",
        "|---|---|---|---|---|---|---|",
    ]
    for env in sorted({env for env, _ in curves}):
        fig, ax = plt.subplots(figsize=(6.4, 4))
        for algo in sorted({name for env_, name in curves if env_ == env}, key=_algo_order):
            seeds = dict(sorted(curves[(env, algo)].items()))  # seed 2 before seed 10 (the folders sort as text)
            length = min(len(steps) for steps, _ in seeds.values())  # align the seeds' evaluation points
            steps = next(iter(seeds.values()))[0][:length]
            returns = np.array([returns[:length] for _, returns in seeds.values()])
            final = returns[:, -1]
            auc = returns.mean(axis=1)  # mean over the evaluations = area under the curve / budget
            per_seed = ", ".join(f"{value:.0f}" for value in final)
            lines.append(
                f"| {env} | {algo} | {len(seeds)} | {int(steps[-1])} | {final.mean():.1f} +- {final.std():.1f} "
                f"| {auc.mean():.1f} +- {auc.std():.1f} | {per_seed} |"
            )
            mean, std = returns.mean(axis=0), returns.std(axis=0)
            ax.plot(steps, mean, label=f"{algo} ({len(seeds)} seeds)")
            ax.fill_between(steps, mean - std, mean + std, alpha=0.2)
        ax.set_xlabel("environment steps")
        ax.set_ylabel("mean evaluation return")
        ax.set_title(env)
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(os.path.join(args.out, f"{env}.png"), dpi=110)
        plt.close(fig)
    with open(os.path.join(args.out, "summary.md"), "w") as file:
        file.write("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("run", help="train the runs that have not finished")
    train.add_argument("--env", required=True, help="comma-separated env ids")
    train.add_argument("--algo", default="vpg,vpg_pure,a2c,ppo", help=f"comma-separated, from {', '.join(ALGOS)}")
    train.add_argument("--seeds", default="0-4", help='"0-4" or "0,1,2"')
    train.add_argument("--steps", type=int, required=True, help="step budget of every run")
    train.add_argument("--eval-freq", type=int, default=10_000, help="steps between evaluations")
    train.add_argument("--eval-episodes", type=int, default=10)
    train.add_argument("--jobs", type=int, default=1, help="runs at a time (one torch thread each)")
    train.add_argument("--vec-env", default="dummy", choices=["dummy", "subproc"])
    train.add_argument("--device", default="cpu")
    train.add_argument("--params", nargs="*", default=[], help="extra rl_zoo3 -params for every run, e.g. ent_coef:0.01")
    train.add_argument("--tag", default="", help="suffix of the algo's results folder (for --params variants)")
    summary = commands.add_parser("report", help="CSV, table and plots of the finished runs")
    for sub in (train, summary):
        sub.add_argument("--out", default=OUT, help="results folder")
    args = parser.parse_args()
    run(args) if args.command == "run" else report(args)


if __name__ == "__main__":
    main()
