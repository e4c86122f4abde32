"""
Benchmark sweeps shared through a storage: ``benchmarks/benchmark.py run --storage URL`` workers against a real
PostgreSQL server (the ``postgres_server`` fixture), ``report --storage URL`` while they run, and the claim logic
of ``StoredSweep`` on SQLite files.

As in test_zoo.py, this process never imports rl_zoo3 (nor sb3_vpg.zoo, which imports it): the workers and the
reports are subprocesses, and the storage is read here with Optuna alone.
"""

import csv
import datetime
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import optuna
import pytest

from tests.processes import subprocess_env, wait_for
from tests.test_benchmarks import BENCHMARKS, benchmark

# isort: split
import stored_sweep  # benchmarks/ is on the path once test_benchmarks is imported

TrialState = optuna.trial.TrialState
HOST = socket.gethostname()
#: A tiny sweep: each run is a zoo subprocess with two evaluations
TINY = ["--env", "CartPole-v1", "--algo", "vpg", "--steps", "2000", "--eval-freq", "1000", "--eval-episodes", "2"]


def key(seed: int) -> tuple[str, str, int]:
    return ("CartPole-v1", "vpg", seed)


# The claim logic, on SQLite files: each StoredSweep on its own storage object, as in separate worker processes


def sqlite_storage(path: Path, **heartbeat) -> optuna.storages.RDBStorage:
    return optuna.storages.RDBStorage(f"sqlite:///{path}", **heartbeat)


def new_sweep(storage, worker: str = "a") -> "stored_sweep.StoredSweep":
    optuna.create_study(storage=storage, study_name="sweep", direction="maximize", load_if_exists=True)
    return stored_sweep.StoredSweep(storage, "sweep", worker)


def test_two_workers_claim_each_run_once(tmp_path):
    runs = {key(seed): [] for seed in range(3)}
    first, second = new_sweep(sqlite_storage(tmp_path / "s.db"), "a"), new_sweep(sqlite_storage(tmp_path / "s.db"), "b")
    assert first.enqueue(runs) == list(runs)
    assert second.enqueue(runs) == []  # the second worker finds them queued
    claimed = []
    for sweep in (first, second, first, second):
        trial = sweep.claim(runs)
        if trial is not None:
            assert trial.state == TrialState.RUNNING and trial.user_attrs["worker"] == sweep.worker
            claimed.append(stored_sweep.run_key(trial))
    assert sorted(claimed) == sorted(runs)
    assert first.active(runs) and second.claim(runs) is None  # all taken, still running
    for trial in first.trials(TrialState.RUNNING):
        curve = (np.array([1000, 2000]), np.array([20.0, 30.0 + trial.number]))
        assert first.finish(trial, curve, {"seconds": 1.0}, ok=True)
    assert not second.active(runs)
    complete = second.trials(TrialState.COMPLETE)
    assert sorted(trial.value for trial in complete) == [30.0, 31.0, 32.0]
    assert complete[0].user_attrs["timesteps"] == [1000, 2000]
    assert second.enqueue(runs) == []  # a later worker of the same sweep has nothing to do
    assert first.seconds > 0 and second.seconds > 0  # the time in storage calls is counted


def test_a_run_queued_twice_runs_once(tmp_path):
    # Two workers that start together can both queue a run: the lower-numbered trial is the run
    first, second = new_sweep(sqlite_storage(tmp_path / "s.db"), "a"), new_sweep(sqlite_storage(tmp_path / "s.db"), "b")
    runs = {key(0): []}
    assert first.enqueue(runs) == [key(0)]
    second.study.enqueue_trial({}, user_attrs={"env": "CartPole-v1", "algo": "vpg", "seed": 0, "params": []})
    assert first.claim(runs).number == 0
    assert second.claim(runs) is None  # it took trial 1, a copy of the run that trial 0 runs
    copy = second.storage.get_all_trials(second.study_id)[1]
    assert copy.state == TrialState.FAIL and copy.user_attrs["duplicate_of"] == 0
    # A run that failed is queued again by the next worker; a copy of a complete run does not run
    first.finish(first.trials(TrialState.RUNNING)[0], None, {"exit_code": 1}, ok=False)
    assert second.enqueue(runs) == [key(0)]
    done = second.claim(runs)
    assert done.number == 2 and second.finish(done, (np.array([10]), np.array([5.0])), {}, ok=True)
    second.study.enqueue_trial({}, user_attrs={"env": "CartPole-v1", "algo": "vpg", "seed": 0, "params": []})
    assert first.claim(runs) is None and first.trials()[-1].user_attrs["duplicate_of"] == 2


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")  # Optuna's heartbeat and retry
def test_a_dead_workers_run_is_queued_again(tmp_path):
    retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1)
    heartbeat = {"heartbeat_interval": 1, "grace_period": 2, "heartbeat_stale_trial_callback": retry}
    dead = new_sweep(sqlite_storage(tmp_path / "s.db", **heartbeat), "dead")
    alive = new_sweep(sqlite_storage(tmp_path / "s.db", **heartbeat), "alive")
    runs = {key(0): ["ent_coef:0.01"]}
    dead.enqueue(runs)
    held = dead.claim(runs)  # then its worker dies: no more heartbeats
    assert alive.fail_stale(lambda trial: True) == []  # with a heartbeat, the heartbeat decides
    assert alive.claim(runs) is None and alive.active(runs)  # not stale yet: the other worker waits
    time.sleep(3)
    alive.fail_stale(lambda trial: False)
    assert {trial.number: trial.state for trial in alive.trials()}[held.number] == TrialState.FAIL
    again = alive.claim(runs)
    assert again.number != held.number and stored_sweep.run_key(again) == key(0)
    assert again.user_attrs["params"] == ["ent_coef:0.01"] and again.user_attrs["worker"] == "alive"
    # The "dead" worker was only stalled: its late result is dropped, the retry is the run
    assert not dead.finish(held, (np.array([10]), np.array([1.0])), {}, ok=True)


def journal_storage(path: Path) -> optuna.storages.JournalStorage:
    return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))


def test_without_a_heartbeat_a_run_nobody_holds_is_queued_again(tmp_path):
    # A journal file has no heartbeat: the caller says which running runs no worker holds
    dead, alive = (
        new_sweep(journal_storage(tmp_path / "s.log"), "dead"),
        new_sweep(journal_storage(tmp_path / "s.log"), "alive"),
    )
    runs = {key(0): ["ent_coef:0.01"], key(1): []}
    dead.enqueue(runs)
    held, other = dead.claim(runs), dead.claim(runs)
    asked = []
    assert alive.fail_stale(lambda trial: asked.append(trial.number) or False) == []
    assert sorted(asked) == [held.number, other.number] and alive.claim(runs) is None and alive.active(runs)
    assert alive.fail_stale(lambda trial: trial.number == held.number) == [held.number]
    states = {trial.number: trial.state for trial in alive.trials()}
    assert states == {held.number: TrialState.FAIL, other.number: TrialState.RUNNING, 2: TrialState.WAITING}
    assert alive.trials(TrialState.FAIL)[0].user_attrs["dead_worker"] is True
    again = alive.claim(runs)
    assert again.number == 2 and stored_sweep.run_key(again) == key(0) and again.user_attrs["params"] == ["ent_coef:0.01"]
    assert dead.fail_stale(lambda trial: trial.number == held.number) == []  # failed once, queued once
    assert len(alive.trials()) == 3
    assert not dead.finish(held, (np.array([10]), np.array([1.0])), {}, ok=True)  # the retry is the run


def test_a_run_is_free_when_nobody_holds_its_folder(tmp_path):
    args = SimpleNamespace(out=str(tmp_path / "out"), requeue_unseen=False)  # this worker's --out
    folder = Path(benchmark.run_dir(args.out, *key(0)))
    long_ago = datetime.datetime.now() - datetime.timedelta(seconds=benchmark.CLAIM_SECONDS + 1)

    def trial(started=long_ago, **attrs):
        user_attrs = {"env": "CartPole-v1", "algo": "vpg", "seed": 0, **attrs}
        return SimpleNamespace(user_attrs=user_attrs, datetime_start=started)

    assert benchmark.run_is_free(args, trial())  # claimed long ago, never took its folder: died as it claimed
    assert not benchmark.run_is_free(args, trial(datetime.datetime.now()))  # may be taking it now
    assert not benchmark.run_is_free(args, trial(folder=str(tmp_path / "elsewhere")))  # another machine's folder
    carried = SimpleNamespace(out=args.out, requeue_unseen=True)  # the journal came from a machine that is gone
    assert benchmark.run_is_free(carried, trial(folder=str(tmp_path / "elsewhere")))
    folder.mkdir(parents=True)
    recorded = trial(datetime.datetime.now(), folder=str(folder))
    lock = benchmark.take_run(str(folder))
    assert not benchmark.run_is_free(args, recorded) and not benchmark.run_is_free(args, trial())
    lock.close()  # what the system does when the worker dies
    assert benchmark.run_is_free(args, recorded) and benchmark.run_is_free(args, trial())
    assert benchmark.take_run(str(folder)) is not None  # asking did not keep the lock


def test_a_run_keeps_its_params(tmp_path):
    sweep = new_sweep(sqlite_storage(tmp_path / "s.db"))
    sweep.enqueue({key(0): []})
    with pytest.raises(SystemExit, match=r"--params: run CartPole-v1/vpg/0 of the sweep 'sweep' runs with -params \[\]"):
        sweep.enqueue({key(0): ["ent_coef:0.01"]})


def test_stored_curves_leave_out_unfinished_runs(tmp_path):
    def trial(state, seed, final):
        attrs = {"env": "CartPole-v1", "algo": "vpg", "seed": seed, "timesteps": [10, 20], "eval_returns": [0.0, final]}
        return optuna.trial.create_trial(state=state, value=final if state == TrialState.COMPLETE else None, user_attrs=attrs)

    trials = [trial(TrialState.COMPLETE, 10, 100.0), trial(TrialState.COMPLETE, 2, 20.0), trial(TrialState.RUNNING, 3, 9.0)]
    trials.append(trial(TrialState.FAIL, 4, 9.0))
    curves = stored_sweep.load_stored_curves(trials)
    assert list(curves) == [("CartPole-v1", "vpg")] and sorted(curves["CartPole-v1", "vpg"]) == [2, 10]
    benchmark.write_report(curves, str(tmp_path))
    # The same numbers as the local report's test (test_report_lists_seeds_in_numeric_order)
    assert "| CartPole-v1 | vpg | 2 | 20 | 60.0 +- 40.0 | 30.0 +- 20.0 | 20, 100 |" in (tmp_path / "summary.md").read_text()


# Worker processes on a real PostgreSQL server


class Workers:
    """``benchmark.py run --storage`` worker processes, each in its own process group (a SIGKILL to the group is a
    dead machine: the worker and its training run), with its output in ``cwd/worker_N.out``."""

    def __init__(self, cwd: Path):
        self.cwd, self.processes = cwd, []

    def start(self, url: str, *flags: str) -> subprocess.Popen:
        with open(self.cwd / f"worker_{len(self.processes)}.out", "w") as out:
            self.processes.append(
                subprocess.Popen(
                    [sys.executable, str(BENCHMARKS / "benchmark.py"), "run", "--storage", url, *TINY, *flags],
                    cwd=self.cwd,
                    env=subprocess_env(),
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
        return self.processes[-1]

    def output(self, index: int) -> str:
        return (self.cwd / f"worker_{index}.out").read_text()

    def finish(self, *indices: int, timeout: float = 300) -> None:
        """Wait for these workers; each must exit 0."""
        deadline = time.monotonic() + timeout
        for index in indices:
            self.processes[index].wait(timeout=max(1.0, deadline - time.monotonic()))
            assert self.processes[index].returncode == 0, self.output(index)[-3000:]

    def pause(self, *indices: int) -> None:
        for index in indices:
            os.killpg(self.processes[index].pid, signal.SIGSTOP)

    def resume(self, *indices: int) -> None:
        for index in indices:
            os.killpg(self.processes[index].pid, signal.SIGCONT)

    def kill(self, index: int) -> None:
        os.killpg(self.processes[index].pid, signal.SIGKILL)
        self.processes[index].wait()

    def kill_all(self) -> None:
        for index, process in enumerate(self.processes):
            if process.poll() is None:
                self.kill(index)


@pytest.fixture
def workers(tmp_path):
    workers = Workers(tmp_path)
    yield workers
    workers.kill_all()


@pytest.fixture
def database(postgres_server, request):
    """A fresh database on the session's server: the workers create Optuna's tables in it."""
    return postgres_server.create_database(request.node.name.lower()[:60])


def sweep_trials(url: str) -> list[optuna.trial.FrozenTrial]:
    storage = optuna.storages.RDBStorage(url, skip_table_creation=True)
    try:
        return optuna.load_study(study_name=stored_sweep.STUDY_NAME, storage=storage).get_trials()
    finally:
        storage.engine.dispose()


def complete_runs(trials) -> list[tuple[str, str, int]]:
    return sorted(stored_sweep.run_key(trial) for trial in trials if trial.state == TrialState.COMPLETE)


def pid_of(trial) -> int:
    host, pid = trial.user_attrs["worker"].split("/")[0].split(":")
    assert host == HOST
    return int(pid)


@pytest.mark.slow
def test_two_workers_share_a_sweep_and_a_report_reads_it_meanwhile(database, workers, tmp_path):
    runs = [key(seed) for seed in range(6)]
    # Started together against a fresh database; the first one trains two runs at a time
    for flags in (["--jobs", "2"], []):
        workers.start(database, "--seeds", "0-5", "--out", str(tmp_path / "out"), *flags)
    wait_for(lambda: all("runs in the sweep" in workers.output(index) for index in (0, 1)), 120, "the workers to start")

    # A report while the workers run: it reads the finished runs, and the workers go on undisturbed. The workers are
    # paused meanwhile (well within their heartbeats' grace period), so that the sweep is still unfinished however
    # long the report takes to start on a busy machine
    before = wait_for(lambda: complete_runs(sweep_trials(database)), 120, "a finished run")
    workers.pause(0, 1)
    try:
        report = subprocess.run(
            [sys.executable, str(BENCHMARKS / "benchmark.py"), "report", "--storage", database, "--out", tmp_path / "mid"],
            env=subprocess_env(), capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        after = complete_runs(sweep_trials(database))
    finally:
        workers.resume(0, 1)
    assert report.returncode == 0, report.stderr[-3000:]
    with open(tmp_path / "mid" / "curves.csv") as file:
        reported = sorted({("CartPole-v1", row["algo"], int(row["seed"])) for row in csv.DictReader(file)})
    assert set(before) <= set(reported) <= set(after) and len(after) < len(runs), (before, reported, after)
    workers.finish(0, 1)

    # Every run completed exactly once, and was trained once: the workers' "starts" lines, together
    trials = sweep_trials(database)
    assert complete_runs(trials) == runs
    started = Counter(
        line.split(": ")[1].split(" starts")[0]
        for index in (0, 1)
        for line in workers.output(index).splitlines()
        if " starts (trial" in line
    )
    assert started == Counter(f"CartPole-v1/vpg/seed{seed}" for seed in range(6))
    assert {pid_of(trial) for trial in trials if trial.state == TrialState.COMPLETE} == {p.pid for p in workers.processes}
    assert all(trial.user_attrs["storage_seconds"] > 0 for trial in trials if trial.state == TrialState.COMPLETE)
    assert sum(output.count("; storage calls ") for output in map(workers.output, (0, 1))) == 6

    # The stored curves are the evaluations the runs wrote to their folders (the local report's source)
    stored, local = stored_sweep.load_stored_curves(trials), benchmark.load_curves(str(tmp_path / "out"))
    assert stored.keys() == local.keys() == {("CartPole-v1", "vpg")}
    for seed, (steps, returns) in local["CartPole-v1", "vpg"].items():
        assert np.array_equal(stored["CartPole-v1", "vpg"][seed][0], steps)
        assert np.array_equal(stored["CartPole-v1", "vpg"][seed][1], returns)


@pytest.mark.slow
def test_killed_worker_run_is_redone_by_another_worker(database, workers, tmp_path):
    runs = [key(0), key(1)]
    # Heartbeats every second; a grace period of 8 s, since a live heartbeat comes late on 2 busy cores
    flags = ["--seeds", "0,1", "--heartbeat-interval", "1", "--heartbeat-grace-period", "8"]
    victim = workers.start(database, *flags, "--out", str(tmp_path / "victim"))
    workers.start(database, *flags, "--out", str(tmp_path / "survivor"))

    def victims_run():
        if "runs in the sweep" not in workers.output(0):
            return None
        return next((t for t in sweep_trials(database) if t.state == TrialState.RUNNING and pid_of(t) == victim.pid), None)

    killed = wait_for(victims_run, 120, "the victim's run to start")
    time.sleep(1.5)  # in the middle of the run: its training process has started
    assert victim.poll() is None
    workers.kill(0)
    workers.finish(1)  # the survivor waits for the dead run, finds it stale and runs it again

    trials = {trial.number: trial for trial in sweep_trials(database)}
    assert trials[killed.number].state == TrialState.FAIL
    (retry,) = [trial for trial in trials.values() if trial.system_attrs.get("failed_trial") == killed.number]
    assert retry.state == TrialState.COMPLETE and stored_sweep.run_key(retry) == stored_sweep.run_key(killed)
    assert pid_of(retry) == workers.processes[1].pid
    assert complete_runs(trials.values()) == runs


@pytest.mark.slow
def test_on_a_journal_file_a_killed_workers_run_is_redone_by_the_next_worker(workers, tmp_path):
    # No heartbeat: the lock the victim held on the run's folder is what the next worker finds free
    journal, flags = str(tmp_path / "sweep.log"), ["--seeds", "0", "--out", str(tmp_path / "out")]
    victim = workers.start(journal, *flags)

    def trials():
        return optuna.load_study(study_name=stored_sweep.STUDY_NAME, storage=journal_storage(Path(journal))).get_trials()

    def victims_run():
        if "runs in the sweep" not in workers.output(0):
            return None
        return next((trial for trial in trials() if "folder" in trial.user_attrs and trial.state == TrialState.RUNNING), None)

    killed = wait_for(victims_run, 120, "the victim's run to start")
    time.sleep(1.5)  # in the middle of the run: its training process has started
    assert victim.poll() is None
    workers.kill(0)
    workers.start(journal, *flags)
    workers.finish(1)
    assert f"trial {killed.number}'s worker is gone (nobody holds its run): queued again" in workers.output(1)
    after = {trial.number: trial for trial in trials()}
    assert after[killed.number].state == TrialState.FAIL and after[killed.number].user_attrs["dead_worker"] is True
    (retry,) = [trial for trial in after.values() if trial.state == TrialState.COMPLETE]
    assert stored_sweep.run_key(retry) == key(0) and pid_of(retry) == workers.processes[1].pid
    assert retry.user_attrs["folder"] == killed.user_attrs["folder"] == benchmark.run_dir(str(tmp_path / "out"), *key(0))


@pytest.mark.slow
def test_a_journal_carried_to_a_new_machine_gets_its_running_runs_back_with_requeue_unseen(workers, tmp_path):
    # The journal says seed 0 runs, in a folder of the machine it was carried from: nobody here can hold it
    journal = tmp_path / "sweep.log"
    storage = journal_storage(journal)
    optuna.create_study(storage=storage, study_name=stored_sweep.STUDY_NAME, direction="maximize")
    sweep = stored_sweep.StoredSweep(storage, stored_sweep.STUDY_NAME, "gone-machine:1")
    sweep.enqueue({key(0): []})
    stale = sweep.claim({key(0): None})
    sweep.record(stale, {"folder": "/the/machine/that/is/gone/CartPole-v1/vpg/seed0"})
    workers.start(str(journal), "--seeds", "0", "--out", str(tmp_path / "out"), "--requeue-unseen")
    workers.finish(0)
    assert f"trial {stale.number}'s worker is gone (nobody holds its run): queued again" in workers.output(0)
    after = {trial.number: trial for trial in sweep.trials()}
    assert after[stale.number].state == TrialState.FAIL and after[stale.number].user_attrs["dead_worker"] is True
    (retry,) = [trial for trial in after.values() if trial.state == TrialState.COMPLETE]
    assert stored_sweep.run_key(retry) == key(0)
    assert retry.user_attrs["folder"] == benchmark.run_dir(str(tmp_path / "out"), *key(0))  # this machine's folder


@pytest.mark.parametrize(
    ("storage", "message"),
    [
        (None, "--requeue-unseen: only a sweep in --storage"),
        ("sqlite:///{tmp}/s.db", "--requeue-unseen: the sweep 'benchmark' in --storage sqlite:///.*has heartbeats"),
    ],
)
def test_requeue_unseen_is_refused_where_it_would_do_nothing(tmp_path, storage, message):
    flags = ["--out", str(tmp_path / "out"), "--requeue-unseen"]
    flags += ["--storage", storage.format(tmp=tmp_path)] if storage else []
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "benchmark.py"), "run", *TINY, *flags],
        env=subprocess_env(), capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 1 and re.search(message, done.stderr), done.stderr[-2000:]
    assert not (tmp_path / "out").exists()  # nothing trained


def test_a_training_process_dies_with_its_worker(tmp_path):
    # A worker killed alone (not its process group) must not leave its training run going on unrecorded
    pid_file = tmp_path / "child.pid"
    worker = (
        f"import subprocess, sys; sys.path.insert(0, {str(BENCHMARKS)!r}); import benchmark\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'],"
        " preexec_fn=benchmark.die_with_parent)\n"
        f"open({str(pid_file)!r}, 'w').write(str(child.pid)); child.wait()"
    )
    parent = subprocess.Popen([sys.executable, "-c", worker], env=subprocess_env())
    child_pid = int(wait_for(lambda: pid_file.exists() and pid_file.read_text(), 60, "the training process to start"))
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()

    def gone():
        try:
            os.kill(child_pid, 0)
        except ProcessLookupError:
            return True
        with open(f"/proc/{child_pid}/stat") as stat:  # killed but not yet reaped by init
            return stat.read().split(")")[1].split()[0] == "Z" or None

    assert wait_for(gone, 10, "the training process to die")


@pytest.mark.slow
def test_sweep_scaling_measures_one_and_two_workers(postgres_server):
    server_url = postgres_server.url("postgres").rsplit("/", 1)[0]
    command = [sys.executable, str(BENCHMARKS / "sweep_scaling.py"), "--url", server_url, "--workers", "1,2"]
    command += ["--seeds", "0-1", "--steps", "4000", "--eval-freq", "2000"]  # one 4000-step rollout of the entry
    result = subprocess.run(command, env=subprocess_env(), capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    for count in (1, 2):
        (line,) = [line for line in result.stdout.splitlines() if line.startswith(f"{count} worker(s)")]
        assert line.count(" s,") == 1 and len(re.findall(r"storage per run \[(\d+), (\d+)\] ms", line)) == 1
    assert "| CartPole-v1 | vpg | 2 | 4000 |" in result.stdout
    assert re.search(r"2 workers against 1: \d+\.\d\dx", result.stdout)
