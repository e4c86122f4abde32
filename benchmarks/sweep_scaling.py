"""
How a benchmark sweep scales with the workers that share it through PostgreSQL (``benchmark.py run --storage``).

For each worker count, a fresh database on one PostgreSQL server, the same sweep (CartPole-v1, VPG's packaged entry,
5 seeds, 100k steps by default), that many ``benchmark.py run --storage`` workers started together; then a
``report --storage`` of the last sweep. Printed per worker count: the wall time until every worker has exited,
the time from the first run's start to the last run's result in the database (the sweep's own span: a worker with
nothing left to take waits for the others' runs, polling), each run's seconds and the milliseconds of its storage
calls (heartbeats included).

Without ``--url``, the script starts a throw-away PostgreSQL server from the ``pgserver`` wheel (the ``distributed``
extra), as the tests do, and removes it at the end. With ``--url`` (a server's URL without a database name, e.g.
``postgresql+psycopg2://bench@db.example:5432``) it creates the databases there.

Usage::

    python benchmarks/sweep_scaling.py                       # 1 and 2 workers, CartPole-v1, seeds 0-4, 100k steps
    python benchmarks/sweep_scaling.py --workers 1,2,4 --seeds 0-9
"""

import argparse
import contextlib
import os
import re
import subprocess
import sys
import tempfile
import time

import optuna

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCHMARK = os.path.join(ROOT, "benchmarks", "benchmark.py")


def sweep(url: str, n_workers: int, sweep_flags: list[str], out: str) -> dict:
    """``n_workers`` workers started together on the sweep in ``url``; their timings."""
    start = time.perf_counter()
    workers = [
        subprocess.Popen(
            [sys.executable, BENCHMARK, "run", "--storage", url, *sweep_flags, "--out", os.path.join(out, f"worker{i}")],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(n_workers)
    ]
    outputs = [worker.communicate()[0] for worker in workers]
    wall = time.perf_counter() - start
    for worker, output in zip(workers, outputs, strict=True):
        if worker.returncode != 0:
            sys.exit(f"a worker failed (exit {worker.returncode}):\n{output[-3000:]}")
    trials = optuna.load_study(study_name="benchmark", storage=url).get_trials()
    first = min(trial.datetime_start for trial in trials if trial.datetime_start)
    last = max(trial.datetime_complete for trial in trials if trial.datetime_complete)
    return {
        "wall": wall,
        "span": (last - first).total_seconds(),
        "run_seconds": [float(m) for output in outputs for m in re.findall(r"done in ([\d.]+) s", output)],
        "storage_ms": [int(m) for output in outputs for m in re.findall(r"storage calls (\d+) ms", output)],
    }


@contextlib.contextmanager
def server(url: str | None):
    """A function that creates a database and returns its URL: on ``url``'s server, or on a throw-away local one."""
    if url:
        import sqlalchemy

        engine = sqlalchemy.create_engine(f"{url}/postgres", isolation_level="AUTOCOMMIT")

        def create(name: str) -> str:
            with engine.connect() as connection:
                connection.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
            return f"{url}/{name}"

        yield create
        engine.dispose()
        return
    sys.path.insert(0, ROOT)
    from tests.postgres import PostgresServer  # the tests' server: pgserver's binaries, stopped and removed at exit

    with PostgresServer() as local:
        yield local.create_database


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    parser.add_argument("--env", default="CartPole-v1")
    parser.add_argument("--algo", default="vpg")
    parser.add_argument("--seeds", default="0-4")
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--eval-freq", type=int, default=10_000, help="steps between evaluations")
    parser.add_argument("--url", help="a PostgreSQL server's URL without a database (default: a throw-away local one)")
    args = parser.parse_args()
    counts = [int(count) for count in args.workers.split(",")]
    if any(count < 1 for count in counts):
        parser.error(f"--workers must be positive counts, got {args.workers!r}")
    flags = ["--env", args.env, "--algo", args.algo, "--seeds", args.seeds]
    flags += ["--steps", str(args.steps), "--eval-freq", str(args.eval_freq)]
    spans = {}
    with server(args.url) as create_database, tempfile.TemporaryDirectory() as out:
        stamp = time.strftime("%Y%m%d%H%M%S")
        for count in counts:
            url = create_database(f"sweep_scaling_{stamp}_{count}")
            timings = sweep(url, count, flags, os.path.join(out, str(count)))
            spans[count] = timings["span"]
            storage = timings["storage_ms"]
            print(
                f"{count} worker(s): wall {timings['wall']:.1f} s, first run start -> last result {timings['span']:.1f} s; "
                f"runs {', '.join(f'{s:.1f}' for s in timings['run_seconds'])} s; storage per run {storage} ms "
                f"(mean {sum(storage) / len(storage):.0f})",
                flush=True,
            )
        start = time.perf_counter()
        report = subprocess.run(
            [sys.executable, BENCHMARK, "report", "--storage", url, "--out", os.path.join(out, "report")],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        print(f"report --storage of the last sweep: {time.perf_counter() - start:.1f} s\n{report}")
    base = counts[0]
    for count in counts[1:]:
        print(f"{count} workers against {base}: {spans[base] / spans[count]:.2f}x (first run start -> last result)")


if __name__ == "__main__":
    main()
