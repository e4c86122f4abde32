"""
VPG beside SB3's A2C and PPO: the same envs, seeds and step budgets, trained through RL Baselines3 Zoo.

``run`` trains every (env, algo, seed) that has not finished yet (it is resumable: finished runs are skipped,
unfinished ones start again, or with ``--checkpoint-every`` go on from their newest checkpoint; a run that another
``run`` process trains, holding the lock of its ``running.lock``, is left to it), each as
``python -m sb3_vpg.zoo train`` with the zoo's periodic evaluation on a separate env (deterministic actions, except on
Atari, as rl_zoo3 does). VPG takes the packaged ``vpg.yml``, A2C and PPO rl_zoo3's published hyperparameters; only the step
budget (``-n``) is ours.

- ``vpg``: the packaged entry as it is;
- ``vpg_pure`` / ``vpg_baseline``: the same entry with ``use_baseline`` forced off / on;
- ``--algo ladder``: the ablation ladder (docs/guide/ladder.rst), ``reinforce``, ``reinforce_norm``,
  ``reinforce_baseline``, ``vpg_gae``, ``actor_critic`` (the entry plus each rung's settings), ``a2c``, ``ppo``.

``report`` reads every ``evaluations.npz`` and writes ``curves.csv`` (one row per evaluation), ``summary.md``
(final and area-under-curve returns, mean +- std over seeds; with ``--reach 0,15``, for each seed the steps of its
first evaluation at or above each of these returns) and one ``{env}.png`` per env (mean over seeds, with a band of
one standard deviation).

``run --storage URL`` shares one sweep among workers on any number of machines through a database (or, on one
machine, a journal file ``path.log``): each worker queues the runs that no worker has done or is doing, takes them
one at a time (each run is done once), trains them as above, and stores each run's evaluation curve in the
storage, where ``report --storage URL`` reads it. The sweep is an Optuna study (``--study-name``), a run one trial;
a run whose worker dies (its heartbeat stops, or on a journal file the lock it held on the run's folder is
released) is queued again for another worker (:class:`StoredSweep`).

Usage::

    python benchmarks/benchmark.py run --env CartPole-v1 --algo vpg,vpg_pure,a2c,ppo --seeds 0-4 --steps 100000
    python benchmarks/benchmark.py report
    python benchmarks/benchmark.py run --env CartPole-v1 --algo ladder --seeds 0-4 --steps 100000 \
        --out benchmarks/results/ladder

    # on each machine, any number of workers; the report anywhere, also while they run
    python benchmarks/benchmark.py run --storage postgresql+psycopg2://user@host/db --env CartPole-v1 --steps 100000
    python benchmarks/benchmark.py report --storage postgresql+psycopg2://user@host/db
"""

import argparse
import contextlib
import csv
import datetime
import fcntl
import glob
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import IO

import numpy as np
from optuna.trial import FrozenTrial
from stored_sweep import (  # benchmarks/ is a folder of scripts: this one's folder is on the path
    POLL_SECONDS,
    RETRIES,
    STUDY_NAME,
    SWEEP_SETTINGS,
    Curves,
    RunKey,
    StoredSweep,
    load_stored_curves,
    read_stored_sweep,
    run_key,
    storage_errors,
    storage_options,
)

from sb3_vpg.common.reliability import latest_checkpoint
from sb3_vpg.hyperparams import load_hyperparams

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
#: How long a stored run whose worker has not yet recorded its folder may go before another worker looks for it
CLAIM_SECONDS = 60.0

#: Benchmark name -> (rl_zoo3 algo, extra ``-params``)
ALGOS = {
    "vpg": ("vpg", []),
    # pure REINFORCE has no lambda: an entry's GAE (gae_lambda < 1) goes with its baseline
    "vpg_pure": ("vpg", ["use_baseline:False", "gae_lambda:1.0"]),
    "vpg_baseline": ("vpg", ["use_baseline:True"]),
    # The ablation ladder (docs/guide/ladder.rst): each rung adds one ingredient to the one before it. The first
    # three are Monte-Carlo: a sample whose episode the rollout does not see end is left out ("drop"), so the
    # baseline rung adds the critic alone; Spinning Up's VPG then bootstraps the rollout's cut with V, as GAE does.
    "reinforce": ("vpg", ["use_baseline:False", "gae_lambda:1.0", "normalize_returns:False", "incomplete_episodes:'drop'"]),
    "reinforce_norm": (
        "vpg",
        ["use_baseline:False", "gae_lambda:1.0", "normalize_returns:True", "incomplete_episodes:'drop'"],
    ),
    "reinforce_baseline": (
        "vpg",
        ["use_baseline:True", "gae_lambda:1.0", "normalize_returns:True", "incomplete_episodes:'drop'"],
    ),
    "vpg_gae": (  # Spinning Up's VPG
        "vpg",
        ["use_baseline:True", "gae_lambda:0.97", "normalize_returns:True", "incomplete_episodes:'bootstrap'"],
    ),
    # A2C's update through VPG (tests/test_update.py checks it parameter for parameter): 5-step rollouts that bootstrap
    # with V at every cut, one joint step, raw n-step advantages. It takes A2C's own step settings (8 envs, RMSprop,
    # constant 7e-4, as rl_zoo3's A2C and SB3's defaults), not the entry's: the entries' rates are sized for one Adam
    # step per thousands of samples (CartPole: lin_0.02 per 4000), not for a step every 40, so the rung measures the
    # update with the step settings it was tuned with, and sits beside SB3's A2C with the same ones.
    "actor_critic": (
        "vpg",
        [
            "use_baseline:True",
            "gae_lambda:1.0",
            "normalize_returns:False",
            "incomplete_episodes:'bootstrap'",
            "n_critic_updates:0",
            "n_steps:5",
            "n_envs:8",
            "batch_size:None",
            "learning_rate:0.0007",
            "policy_kwargs:dict(optimizer_class=th.optim.RMSprop,optimizer_kwargs=dict(alpha=0.99,eps=1e-5,weight_decay=0))",
        ],
    ),
    "a2c": ("a2c", []),
    "ppo": ("ppo", []),
}

#: ``--algo ladder``: the rungs in order, from pure REINFORCE to SB3's PPO
LADDER = ["reinforce", "reinforce_norm", "reinforce_baseline", "vpg_gae", "actor_critic", "a2c", "ppo"]

#: rl_zoo3 -params that replace an Atari entry's env with the one of vpg.yml's PongNoFrameskip-v4 entry (the source's
#: preprocessing, one difference frame, no stack) and its CnnPolicy with an MlpPolicy
PONG_SOURCE_ENV = [
    f"env_wrapper:{load_hyperparams('PongNoFrameskip-v4')[0]['env_wrapper']!r}",
    "frame_stack:None",
    "policy:'MlpPolicy'",
]

#: SB3 policy_kwargs of an actor and a critic of 200 hidden units each whose first layers skip the frames' zeros
PONG_SPARSE_NET = (
    "net_arch=dict(pi=[],vf=[]),share_features_extractor=False,"
    "features_extractor_class=SparseInputExtractor,features_extractor_kwargs=dict(features_dim=200)"
)

#: (env, algo) -> -params that env needs for that algo, after the algo's own
ENV_PARAMS = {
    # Monte-Carlo rungs learn only from episodes that end inside the rollout; these episodes last 1000 steps (4 envs
    # keep 4000 samples per update, as vpg_pure's MuJoCo runs in RESULTS.md)
    **{
        (env, algo): ["n_envs:4", "n_steps:1000"]
        for env in ("HalfCheetah-v5", "Hopper-v5")
        for algo in ("reinforce", "reinforce_norm", "reinforce_baseline")
    },
    # Pong from the source's difference frames: the rung's A2C optimizer on the entries' network (200 hidden units for
    # the actor and for the critic, the sparse first layer), whose policy_kwargs the rung's own would replace
    ("PongNoFrameskip-v4", "actor_critic"): [
        "policy_kwargs:dict(net_arch=dict(pi=[200],vf=[200]),sparse_input=True,optimizer_class=th.optim.RMSprop,"
        "optimizer_kwargs=dict(alpha=0.99,eps=1e-5,weight_decay=0))"
    ],
    # SB3's A2C and PPO on Pong see what the VPG rungs see, so that the rungs differ in the algorithm alone: the
    # entry's env (the source's difference frames, UP/DOWN) and network (200 hidden units each for the actor and the
    # critic), with rl_zoo3's Atari step settings (n_envs, n_steps, rates, coefficients, A2C's RMSpropTFLike) for the
    # rest. PPO's four epochs over every sample make the first layer its main cost: it takes the sparse one, as a
    # features extractor (the same function); A2C's cost is its optimizer step every 80 samples, and its layer stays dense
    ("PongNoFrameskip-v4", "a2c"): [
        *PONG_SOURCE_ENV,
        "policy_kwargs:'dict(net_arch=dict(pi=[200],vf=[200]),optimizer_class=RMSpropTFLike,optimizer_kwargs=dict(eps=1e-5))'",
    ],
    ("PongNoFrameskip-v4", "ppo"): [*PONG_SOURCE_ENV, f"policy_kwargs:'dict({PONG_SPARSE_NET})'"],
}


def expand_algos(text: str) -> list[str]:
    """``"ladder,vpg"`` -> the ladder's rungs, then ``vpg``."""
    return [name for algo in text.split(",") for name in (LADDER if algo == "ladder" else [algo])]


def zoo_params(env: str, algo: str, extra: list[str] | None = None) -> tuple[str, list[str]]:
    """The rl_zoo3 algo and ``-params`` of a run: the algo's, the env's for that algo (:data:`ENV_PARAMS`), ``extra``."""
    zoo_algo, params = ALGOS[algo]
    return zoo_algo, params + ENV_PARAMS.get((env, algo), []) + list(extra or [])


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


def die_with_parent() -> None:
    """In a training process before it starts: a SIGKILL when its worker dies (Linux), so that a killed worker leaves no
    run training on unrecorded beside the worker that takes the run again."""
    if sys.platform.startswith("linux"):
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def train_one(args: argparse.Namespace, env: str, algo: str, seed: int) -> tuple[str, float, int]:
    """One zoo training run; returns (run dir, seconds, exit code). A ``done.json`` marks it finished."""
    folder = run_dir(args.out, env, algo + args.tag, seed)
    zoo_algo, params = zoo_params(env, algo, args.params)
    os.makedirs(folder, exist_ok=True)
    command = [sys.executable, "-m", "sb3_vpg.zoo", "train", "--algo", zoo_algo, "--env", env, "--seed", str(seed)]
    command += zoo_entry_file(zoo_algo, env, folder)
    command += ["-n", str(args.steps), "--eval-freq", str(args.eval_freq), "--eval-episodes", str(args.eval_episodes)]
    command += ["--n-eval-envs", "1", "--num-threads", "1", "-f", folder, "--vec-env", args.vec_env, "--device", args.device]
    command += ["--log-interval", "-1"] + (["-params", *params] if params else [])
    if args.checkpoint_every:
        command += ["--checkpoint-every", str(args.checkpoint_every)]
    resumes = False
    for stale in glob.glob(os.path.join(folder, zoo_algo, "*")):
        # An interrupted attempt starts again, unless the zoo resumes it from a checkpoint; one without any would
        # stay beside the new attempt, and its evaluations could be read for the run's
        if args.checkpoint_every and latest_checkpoint(os.path.join(stale, "checkpoints")):
            resumes = True
        else:
            shutil.rmtree(stale)
    start = time.perf_counter()
    # A resumed run's log goes on after the earlier attempts' (their training games are part of its history)
    with open(os.path.join(folder, "train.log"), "a" if resumes else "w") as log:
        log.write(f"# attempt started {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        log.flush()
        code = subprocess.run(
            command, stdout=log, stderr=subprocess.STDOUT, check=False, preexec_fn=die_with_parent
        ).returncode
    seconds = time.perf_counter() - start
    if code == 0:
        with open(os.path.join(folder, "done.json"), "w") as file:
            json.dump({"command": " ".join(command[1:]), "seconds": seconds, "steps": args.steps}, file)
    return folder, seconds, code


def take_run(folder: str) -> IO[str] | None:
    """
    Take the run in ``folder`` for this process: an exclusive lock on its ``running.lock`` (which then holds this
    process's id), released when the returned file is closed or the process dies. None while another process
    holds it.
    """
    file = open(os.path.join(folder, "running.lock"), "a+")  # the lock lives as long as the file stays open
    try:
        fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        file.close()
        return None
    file.seek(0)
    file.truncate()
    file.write(f"{os.getpid()}\n")
    file.flush()
    return file


def run_is_free(args: argparse.Namespace, trial: FrozenTrial) -> bool:
    """
    Whether no process holds the run of a stored sweep's running ``trial`` (its worker died): the ``running.lock``
    of the run's folder is free. The folder is the one the trial's worker recorded once it held the lock; one
    this machine does not see is another machine's, taken as held, unless ``--requeue-unseen`` says that machine is
    gone (the journal was carried here). A trial without it is looked for under this worker's ``--out``, once its
    worker has had :data:`CLAIM_SECONDS` to take it (or has died trying).
    """
    recorded = trial.user_attrs.get("folder")
    if recorded is None:
        claimed = trial.datetime_start or datetime.datetime.now()
        if datetime.datetime.now() - claimed < datetime.timedelta(seconds=CLAIM_SECONDS):
            return False
    folder = recorded or run_dir(args.out, *run_key(trial))
    if not os.path.isdir(folder):
        return recorded is None or args.requeue_unseen
    lock = take_run(folder)
    if lock is None:
        return False
    lock.close()
    return True


def train_if_free(args: argparse.Namespace, env: str, algo: str, seed: int) -> tuple[str, float, int] | None:
    """
    :func:`train_one`, unless another ``run`` process trains the run (it holds the lock of the run's
    ``running.lock``) or it has finished since this process listed it: so several processes can work through one
    results folder.

    :return: as :func:`train_one`; None when the run was left to the other process or found finished
    """
    folder = run_dir(args.out, env, algo + args.tag, seed)
    os.makedirs(folder, exist_ok=True)
    lock = take_run(folder)
    if lock is None:
        return None
    with lock:
        if os.path.exists(os.path.join(folder, "done.json")):
            return None
        return train_one(args, env, algo, seed)


def sweep_runs(args: argparse.Namespace) -> list[tuple[str, str, int]]:
    """The (env, algo, seed) runs of ``--env``, ``--algo`` and ``--seeds``, in order."""
    runs = list(itertools.product(args.env.split(","), expand_algos(args.algo), parse_seeds(args.seeds)))
    unknown = {algo for _, algo, _ in runs} - set(ALGOS)
    if unknown:
        sys.exit(f"unknown --algo {sorted(unknown)}; choose from {sorted(ALGOS)}")
    return runs


def run(args: argparse.Namespace) -> None:
    from tqdm import tqdm

    if args.storage:
        run_stored(args, sweep_runs(args))
        return
    if args.requeue_unseen:
        sys.exit("--requeue-unseen: only a sweep in --storage (a journal file) records its runs' folders")
    jobs = [
        (env, algo, seed)
        for env, algo, seed in sweep_runs(args)
        if not os.path.exists(os.path.join(run_dir(args.out, env, algo + args.tag, seed), "done.json"))
    ]
    print(f"{len(jobs)} runs to do (finished ones are skipped), {args.jobs} at a time", flush=True)
    failed = []
    with ThreadPoolExecutor(args.jobs) as pool, tqdm(total=len(jobs), unit="run") as bar:
        futures = {pool.submit(train_if_free, args, *job): job for job in jobs}
        for future in as_completed(futures):
            name = "/".join(map(str, futures[future]))
            outcome = future.result()
            bar.update()
            if outcome is None:
                bar.set_postfix_str(f"{name} left: another process trains it or has finished it")
                continue
            folder, seconds, code = outcome
            bar.set_postfix_str(f"{name} {seconds:.0f} s")
            if code != 0:
                failed.append(f"{folder} (exit {code}, see train.log)")
    if failed:
        sys.exit("failed runs:\n" + "\n".join(failed))


def read_evaluations(folder: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(timesteps, mean evaluation return) of the run in ``folder``, from the zoo's ``evaluations.npz``; None
    without one."""
    found = glob.glob(os.path.join(folder, "*", "*", "evaluations.npz"))
    if not found:
        return None
    data = np.load(found[0])
    return data["timesteps"], data["results"].mean(axis=1)


def work(args: argparse.Namespace, sweep: StoredSweep, runs: dict[RunKey, tuple[str, str, int]]) -> list[str]:
    """
    One worker's loop: take a run of ``runs`` from the sweep, train it, store its result, until none is left.
    While another worker's run goes on it waits, since that worker may die and its run come back to the queue.

    :param runs: the sweep's runs this worker may take -> their (env, algo, seed) for :func:`train_one`
    :return: the runs that failed
    """
    failed = []
    while True:
        start = sweep.seconds
        for number in sweep.fail_stale(lambda trial: run_is_free(args, trial)):
            print(f"{sweep.worker}: trial {number}'s worker is gone (nobody holds its run): queued again", flush=True)
        trial = sweep.claim(runs)
        if trial is None:
            if not sweep.active(runs):
                return failed
            time.sleep(min(POLL_SECONDS, sweep.heartbeat_interval or POLL_SECONDS))
            continue
        key = run_key(trial)
        name = f"{key[0]}/{key[1]}/seed{key[2]}"
        folder = run_dir(args.out, *key)
        os.makedirs(folder, exist_ok=True)
        lock = take_run(folder)  # what tells other workers, without a heartbeat, that this one is alive
        if lock is None:
            sweep.finish(trial, None, {"left_to": "the process that holds the run's running.lock"}, ok=False)
            print(f"{sweep.worker}: {name} left: another process trains it in {folder}", flush=True)
            continue
        print(f"{sweep.worker}: {name} starts (trial {trial.number})", flush=True)
        try:
            with lock, sweep.heartbeat(trial):
                sweep.record(trial, {"folder": os.path.abspath(folder)})
                folder, seconds, code = train_one(args, *runs[key])
        except BaseException:
            with contextlib.suppress(Exception):  # the storage may be what failed
                sweep.release(trial)
            raise
        attrs = {"seconds": seconds, "exit_code": code, "storage_seconds": sweep.seconds - start}
        stored = sweep.finish(trial, read_evaluations(folder) if code == 0 else None, attrs, ok=code == 0)
        outcome = "done" if code == 0 else f"failed (exit {code}, see {folder}/train.log)"
        if not stored:
            outcome = "dropped: another worker took this run as dead (see --heartbeat-grace-period) and runs it again"
        elif code != 0:
            failed.append(f"{folder} (exit {code}, see train.log)")
        storage_ms = 1000 * (sweep.seconds - start)
        print(f"{sweep.worker}: {name} {outcome} in {seconds:.1f} s; storage calls {storage_ms:.0f} ms", flush=True)


def run_stored(args: argparse.Namespace, runs: list[tuple[str, str, int]]) -> None:
    """``run --storage``: this worker's share of the sweep, ``--jobs`` runs at a time (see :class:`StoredSweep`)."""
    from sb3_vpg.zoo import distributed

    options = storage_options(args)
    where = f"the sweep {options.study_name!r} in --storage {distributed.describe(options.storage)}"
    planned = {(env, algo + args.tag, seed): (env, algo, seed) for env, algo, seed in runs}
    settings = {name: getattr(args, name) for name in SWEEP_SETTINGS}
    command = " ".join(distributed.describe(arg) if arg == options.storage else arg for arg in sys.argv)
    with storage_errors(options):
        storage = distributed.open_storage(options, study_attrs=lambda: {"command": command, **settings})
        names = [distributed.WORKER] if args.jobs == 1 else [f"{distributed.WORKER}/{index}" for index in range(args.jobs)]
        sweeps = [StoredSweep(storage, options.study_name, name) for name in names]
        if args.requeue_unseen and sweeps[0].heartbeat_interval:
            sys.exit(f"--requeue-unseen: {where} has heartbeats, which find dead workers; it is for a journal file")
        for name, value in settings.items():
            stored = sweeps[0].study.user_attrs.get(name, value)
            if stored != value:
                flag = "--" + name.replace("_", "-")
                sys.exit(f"{flag} {value}: {where} runs with {flag} {stored}; give this sweep another --study-name")
        queued = sweeps[0].enqueue({key: zoo_params(env, algo, args.params)[1] for key, (env, algo, _) in planned.items()})
        print(f"{len(planned)} runs in {where}, {len(queued)} queued now; {args.jobs} at a time here", flush=True)
        if args.jobs == 1:
            failed = work(args, sweeps[0], planned)  # in the main thread, where an interrupt gives the run back
        else:
            with ThreadPoolExecutor(args.jobs) as pool:
                failed = [run for done in pool.map(lambda sweep: work(args, sweep, planned), sweeps) for run in done]
    if failed:
        sys.exit("failed runs:\n" + "\n".join(failed))


def load_curves(out: str) -> Curves:
    """(env, algo) -> seed -> (timesteps, mean evaluation return), for every finished run."""
    curves: Curves = defaultdict(dict)
    for done in sorted(glob.glob(os.path.join(out, "runs", "*", "*", "seed*", "done.json"))):
        folder = os.path.dirname(done)
        env, algo, seed = folder.split(os.sep)[-3], folder.split(os.sep)[-2], int(folder.split(os.sep)[-1][4:])
        curve = read_evaluations(folder)
        if curve is not None:
            curves[(env, algo)][seed] = curve
    return curves


def _algo_order(name: str) -> tuple[int, str]:
    """Table order: the ALGOS order, then tagged variants after their algo."""
    base = name.split("+")[0]
    return (list(ALGOS).index(base) if base in ALGOS else len(ALGOS), name)


def report(args: argparse.Namespace) -> None:
    if args.storage:
        curves, source = load_stored_curves(read_stored_sweep(args)), f"the sweep {args.study_name!r} in --storage"
    else:
        curves, source = load_curves(args.out), f"{args.out}/runs"
    if not curves:
        sys.exit(f"no finished run in {source}")
    write_report(curves, args.out, args.reach)


def steps_label(steps: int) -> str:
    """A step count as the tables write it: 1.75M, 250k, 900."""
    if steps >= 1_000_000:
        return f"{steps / 1_000_000:g}M"
    return f"{steps / 1000:g}k" if steps >= 1000 else str(steps)


def first_reached(steps: np.ndarray, returns: np.ndarray, threshold: float) -> str:
    """The steps of the first evaluation whose mean return is >= ``threshold`` ("-" if none is)."""
    reached = np.flatnonzero(returns >= threshold)
    return steps_label(int(steps[reached[0]])) if len(reached) else "-"


def write_report(curves: Curves, out: str, reach: list[float] = ()) -> None:
    """``curves.csv``, ``summary.md`` (printed too) and ``{env}.png`` in ``out``, from (env, algo) -> seed ->
    (timesteps, mean evaluation return); with ``reach``, one more column per threshold: for each seed, the steps
    of its first evaluation at or above it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "curves.csv"), "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["env", "algo", "seed", "timesteps", "mean_eval_return"])
        for (env, algo), seeds in sorted(curves.items()):
            for seed, (steps, returns) in sorted(seeds.items()):
                writer.writerows([env, algo, seed, int(t), float(r)] for t, r in zip(steps, returns, strict=True))

    lines = [
        "| env | algo | seeds | steps | final return | area under curve | final return per seed |"
        + "".join(f" first evaluation >= {threshold:g}, per seed |" for threshold in reach),
        "|---|---|---|---|---|---|---|" + "---|" * len(reach),
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
            reached = [
                ", ".join(first_reached(steps, seed_returns, threshold) for seed_returns in returns) for threshold in reach
            ]
            lines.append(
                f"| {env} | {algo} | {len(seeds)} | {int(steps[-1])} | {final.mean():.1f} +- {final.std():.1f} "
                f"| {auc.mean():.1f} +- {auc.std():.1f} | {per_seed} |" + "".join(f" {cell} |" for cell in reached)
            )
            mean, std = returns.mean(axis=0), returns.std(axis=0)
            ax.plot(steps, mean, label=f"{algo} ({len(seeds)} seed{'s' if len(seeds) > 1 else ''})")
            ax.fill_between(steps, mean - std, mean + std, alpha=0.2)
        ax.set_xlabel("environment steps")
        ax.set_ylabel("mean evaluation return")
        ax.set_title(env)
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(os.path.join(out, f"{env}.png"), dpi=110)
        plt.close(fig)
    with open(os.path.join(out, "summary.md"), "w") as file:
        file.write("\n".join(lines) + "\n")
    print("\n".join(lines))


def comma_floats(text: str) -> list[float]:
    """``--reach``'s value: returns separated by commas."""
    try:
        return [float(value) for value in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected returns separated by commas, e.g. 0,15,19, got {text!r}") from None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("run", help="train the runs that have not finished")
    train.add_argument("--env", required=True, help="comma-separated env ids")
    train.add_argument("--algo", default="vpg,vpg_pure,a2c,ppo", help=f"comma-separated, from {', '.join(ALGOS)}, ladder")
    train.add_argument("--seeds", default="0-4", help='"0-4" or "0,1,2"')
    train.add_argument("--steps", type=int, required=True, help="step budget of every run")
    train.add_argument("--eval-freq", type=int, default=10_000, help="steps between evaluations")
    train.add_argument("--eval-episodes", type=int, default=10)
    train.add_argument("--jobs", type=int, default=1, help="runs at a time (one torch thread each)")
    train.add_argument("--vec-env", default="dummy", choices=["dummy", "subproc", "envpool"], help="envpool: Atari ids only")
    train.add_argument("--device", default="cpu")
    train.add_argument("--params", nargs="*", default=[], help="extra rl_zoo3 -params for every run, e.g. ent_coef:0.01")
    train.add_argument("--tag", default="", help="suffix of the algo's results folder (for --params variants)")
    train.add_argument(
        "--checkpoint-every", type=int, help="env steps between checkpoints; an interrupted run resumes from its newest"
    )
    summary = commands.add_parser("report", help="CSV, table and plots of the finished runs")
    summary.add_argument(
        "--reach",
        type=comma_floats,
        default=[],
        help="comma-separated returns: for each, a column of the steps at which each seed's evaluation first reaches it",
    )
    for sub in (train, summary):
        sub.add_argument("--out", default=OUT, help="results folder")
        sub.add_argument("--storage", help="database URL or journal file (.log) of a sweep shared by workers")
        sub.add_argument("--study-name", default=STUDY_NAME, help="the sweep's name in --storage")
        sub.add_argument("--storage-timeout", type=float, help="connection timeout of a database storage (default 10 s)")
    train.add_argument("--heartbeat-interval", type=int, help="seconds between heartbeats of a running run (default 60)")
    train.add_argument("--heartbeat-grace-period", type=int, help="a run without heartbeat that long is redone (default 2x)")
    train.add_argument(
        "--requeue-unseen",
        action="store_true",
        help="journal file: a running run whose folder this machine does not see has lost its worker (the journal "
        "was carried from a machine that is gone): queue it again",
    )
    train.add_argument("--retry-failed-trials", type=int, help=f"redo a dead worker's run up to N times (default {RETRIES})")
    args = parser.parse_args()
    run(args) if args.command == "run" else report(args)


if __name__ == "__main__":
    main()
