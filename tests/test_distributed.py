"""
Tuning shared by several workers through a real PostgreSQL server (the ``postgres_server`` fixture) and through
a journal file: ``python -m sb3_vpg.zoo train -optimize`` worker processes, tiny budgets on CartPole-v1.

As in test_zoo.py, this process never imports rl_zoo3: the workers are subprocesses, and the study is read
here with Optuna alone.
"""

import importlib.util
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

from tests.postgres import PostgresServer
from tests.processes import subprocess_env, wait_for
from tests.test_zoo import load_config

# Subprocesses that train: part of the full suite, left out of the fast one (-m "not slow")
pytestmark = pytest.mark.slow

TrialState = optuna.trial.TrialState
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
HOST = socket.gethostname()
DISTRIBUTED = Path(__file__).resolve().parents[1] / "sb3_vpg" / "zoo" / "distributed.py"


class Workers:
    """The ``train -optimize`` worker processes of one test, each with its output in ``cwd/worker_SEED.out``;
    whatever still runs at the test's end is killed."""

    def __init__(self, cwd: Path):
        self.cwd = cwd
        self.processes: dict[int, subprocess.Popen] = {}

    def start(self, storage: str, study: str, seed: int, *flags: str, timesteps: int = 1000) -> subprocess.Popen:
        """Start the worker of ``study`` with seed ``seed`` (tiny trials: ``timesteps`` steps, one evaluation)."""
        args = [
            "train", "--algo", "vpg", "--env", "CartPole-v1", "-optimize", "-n", str(timesteps), "--eval-episodes",
            "2", "--n-evaluations", "1", "--num-threads", "1", "--no-optim-plots", "--storage", storage,
            "--study-name", study, "--seed", str(seed), "-f", f"logs_{seed}", *flags,
        ]  # fmt: skip
        with open(self.cwd / f"worker_{seed}.out", "w") as out:  # a file: a pipe nobody reads would fill up
            self.processes[seed] = subprocess.Popen(
                [sys.executable, "-m", "sb3_vpg.zoo", *args],
                cwd=self.cwd,
                env=subprocess_env(),
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        return self.processes[seed]

    def output(self, seed: int) -> str:
        return (self.cwd / f"worker_{seed}.out").read_text()

    def names(self, *seeds: int) -> set[str]:
        """The ``worker`` attribute that the trials of these workers (default: all) record."""
        return {f"{HOST}:{self.processes[seed].pid}" for seed in seeds or self.processes}

    def finish(self, *seeds: int, timeout: float = 240) -> None:
        """Wait for these workers (default: all); each must exit 0."""
        deadline = time.monotonic() + timeout
        for seed in seeds or self.processes:
            self.processes[seed].wait(timeout=max(1.0, deadline - time.monotonic()))
            assert self.processes[seed].returncode == 0, self.output(seed)[-3000:]

    def kill_all(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.kill()
                process.wait()


@pytest.fixture
def workers(tmp_path):
    workers = Workers(tmp_path)
    yield workers
    workers.kill_all()


def worker_of(trial: optuna.trial.FrozenTrial) -> str | None:
    return trial.user_attrs.get("worker")


def running_trial_of(storage, study_name: str, worker: str) -> optuna.trial.FrozenTrial | None:
    """The trial that ``worker`` (its ``worker`` attribute) is running now, if any."""
    try:
        study = optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:  # no such study yet
        return None
    for trial in study.get_trials(states=(TrialState.RUNNING,)):
        if worker_of(trial) == worker:
            return trial
    return None


@pytest.fixture
def rdb(postgres_server, request):
    """A fresh database on the session's server (Optuna creates its tables in it), and a storage to read it."""
    url = postgres_server.create_database(request.node.name.replace("[", "_").replace("]", "").lower()[:60])
    storage = optuna.storages.RDBStorage(url, engine_kwargs={"pool_pre_ping": True})
    yield url, storage
    storage.engine.dispose()


# The creation alone, each process at the same instant (a file barrier after the imports), where rl_zoo3's own
# create_study loses the race ("duplicate key value violates unique constraint pg_type_typname_nsp_index").
# The module is loaded without its package (torch, SB3, rl_zoo3: seconds of imports per process on 2 cores).
CREATE_TOGETHER = r"""
import importlib.util, sys, time
from pathlib import Path
url, barrier, name, module = sys.argv[1], Path(sys.argv[2]), sys.argv[3], sys.argv[4]
spec = importlib.util.spec_from_file_location("distributed", module)
distributed = importlib.util.module_from_spec(spec)
spec.loader.exec_module(distributed)
StorageOptions, open_storage = distributed.StorageOptions, distributed.open_storage
(barrier / f"ready_{name}").touch()
while not (barrier / "go").exists():
    time.sleep(0.002)
open_storage(StorageOptions(url, "together"), study_attrs=lambda: {"command": name})
print("ok")
"""


def test_workers_starting_together_create_the_storage_once(rdb, tmp_path):
    url, storage = rdb
    n = 4
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", CREATE_TOGETHER, url, str(tmp_path), str(index), str(DISTRIBUTED)],
            env=subprocess_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for index in range(n)
    ]
    try:
        wait_for(lambda: len(list(tmp_path.glob("ready_*"))) == n, 120, "the processes to import")
        (tmp_path / "go").touch()
        for process in processes:
            out, _ = process.communicate(timeout=120)
            assert process.returncode == 0 and out.strip().endswith("ok"), out[-3000:]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    assert optuna.get_all_study_names(storage) == ["together"]
    # One worker set the study's attributes, the others found them
    assert optuna.load_study(study_name="together", storage=storage).user_attrs["command"] in map(str, range(n))


def test_three_workers_share_a_postgres_study(rdb, workers, tmp_path):
    url, storage = rdb
    # Started together against a fresh database: they also race to create the tables and the study
    for seed in (1, 2, 3):
        workers.start(url, "shared", seed, "--max-total-trials", "4")
    workers.finish()

    study = optuna.load_study(study_name="shared", storage=storage)
    finished = [trial for trial in study.trials if trial.state in FINISHED]
    # --max-total-trials holds across workers; a trial started past it is FAIL and says so
    assert len(finished) == 4
    for trial in study.trials:
        assert trial.state in FINISHED or trial.user_attrs.get("over_max_total_trials"), trial
    assert {worker_of(trial) for trial in finished} <= workers.names()
    assert len({worker_of(trial) for trial in finished}) >= 2  # shared, not one worker doing everything
    assert "command" in study.user_attrs  # rl_zoo3's record of the study, set once

    # --trial-id N: trial number N (0 too), converted as the sampler converted it
    chosen = next(trial for trial in finished if trial.state == TrialState.COMPLETE)
    result = subprocess.run(
        [
            sys.executable, "-m", "sb3_vpg.zoo", "train", "--algo", "vpg", "--env", "CartPole-v1", "-n", "300",
            "--seed", "0", "--num-threads", "1", "--eval-freq", "-1", "--storage", url, "--study-name", "shared",
            "--trial-id", str(chosen.number),
        ],
        cwd=tmp_path, env=subprocess_env(), capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    config = load_config(tmp_path / "logs" / "vpg" / "CartPole-v1_1", "CartPole-v1")
    for key in ("gamma", "n_steps", "batch_size", "learning_rate"):
        assert config[key] == chosen.user_attrs[key], key
    for key in ("use_baseline", "normalize_returns", "n_critic_updates", "ent_coef", "max_grad_norm"):
        assert config[key] == chosen.params[key], key


def test_killed_worker_trial_is_failed_and_retried(rdb, workers):
    url, storage = rdb
    # A grace period of 10 s: a live worker's heartbeat came up to 4 s late in its first trial on 2 busy cores
    # (9 processes running), and a live worker's trial failed as dead ends that worker
    grace = 10
    heartbeat = ["--heartbeat-interval", "1", "--heartbeat-grace-period", str(grace), "--retry-failed-trials", "1"]
    # The victim's trial is long (it is killed in the middle of it); the others' are short
    victim = workers.start(url, "killed", 1, *heartbeat, "--n-trials", "1", timesteps=200_000)
    for seed in (2, 3):
        workers.start(url, "killed", seed, *heartbeat, "--n-trials", "2")
    (name,) = workers.names(1)
    killed = wait_for(lambda: running_trial_of(storage, "killed", name), 120, "the victim's trial to run")
    time.sleep(1.5)  # well inside the trial: it has sent heartbeats
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=30)
    # A worker started once the grace period is over: if the two others have not failed the dead trial yet
    # (each looks when one of its trials starts or ends), this one does when it starts, and runs the retry
    time.sleep(grace + 1)
    workers.start(url, "killed", 4, *heartbeat, "--n-trials", "1")
    workers.finish(2, 3, 4)

    study = optuna.load_study(study_name="killed", storage=storage)
    trials = {trial.number: trial for trial in study.trials}
    # The dead worker's trial is FAIL (not RUNNING forever), and ran again with its parameters
    assert trials[killed.number].state == TrialState.FAIL
    retries = [trial for trial in trials.values() if trial.system_attrs.get("failed_trial") == killed.number]
    assert len(retries) == 1 and retries[0].state in FINISHED, retries
    assert retries[0].params == trials[killed.number].params
    # The others went on: every trial they ran finished and is in the study, and nothing else is left
    finished = [trial for trial in trials.values() if trial.state in FINISHED]
    assert len(finished) == 2 + 2 + 1
    assert {worker_of(trial) for trial in finished} <= workers.names(2, 3, 4)
    assert [number for number, trial in trials.items() if trial.state not in FINISHED] == [killed.number]


def test_database_stopped_mid_study_stops_each_worker_with_a_message(postgres_server, workers):
    # A server of its own (postgres_server only checks that one can run), since this test stops it
    server = PostgresServer().start()
    try:
        url = server.create_database("lost")
        storage = optuna.storages.RDBStorage(url)
        for seed in (1, 2):
            workers.start(
                url, "lost", seed, "--n-trials", "3", "--n-evaluations", "20", "--storage-timeout", "3", timesteps=100_000
            )
        for name in workers.names():
            wait_for(lambda name=name: running_trial_of(storage, "lost", name), 120, "both workers' trials to run")
        storage.engine.dispose()
        server.stop()
        stopped = time.monotonic()
        for seed, worker in workers.processes.items():
            worker.wait(timeout=90)  # not a hang: each worker notices at its next report, and exits
            out = workers.output(seed)
            # The worker's last words: what it lost, and what to do
            assert worker.returncode == 1, out[-3000:]
            last = out.rstrip().splitlines()[-2:]
            assert last[0].startswith(f"sb3_vpg.zoo: the study's storage does not answer (--storage {url}"), out[-3000:]
            assert last[1].startswith("The trials finished so far are stored there"), out[-3000:]
        assert time.monotonic() - stopped < 90
    finally:
        workers.kill_all()
        server.remove()


def test_three_workers_start_together_on_a_journal_file(workers, tmp_path):
    journal = "logs/study.log"
    for seed in (1, 2, 3):
        workers.start(journal, "journal", seed, "--n-trials", "1")
    workers.finish()
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(tmp_path / journal)))
    study = optuna.load_study(study_name="journal", storage=storage)
    assert [trial.state in FINISHED for trial in study.trials] == [True] * 3
    assert {worker_of(trial) for trial in study.trials} == workers.names()


@pytest.fixture(scope="module")
def distributed():
    """sb3_vpg/zoo/distributed.py loaded alone (its package's __init__ imports rl_zoo3, which this process must not)."""
    spec = importlib.util.spec_from_file_location("sb3_vpg_zoo_distributed_under_test", DISTRIBUTED)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    "args, message",
    [
        (["--retry-failed-trials", "1"], "--retry-failed-trials needs --storage"),
        (
            ["--storage", "s.log", "--study-name", "s", "--heartbeat-interval", "5"],
            "--heartbeat-interval needs a database --storage",
        ),
        (
            ["--storage", "sqlite:///s.db", "--study-name", "s", "--heartbeat-interval", "5", "--heartbeat-grace-period", "5"],
            "--heartbeat-grace-period (5) must be longer than --heartbeat-interval (5)",
        ),
        (
            ["--storage", "sqlite:///s.db", "--study-name", "s", "--heartbeat-interval", "0", "--retry-failed-trials", "2"],
            "--retry-failed-trials needs the heartbeat",
        ),
        (
            ["--storage", "sqlite:///s.db", "--study-name", "s", "--retry-failed-trials", "-1"],
            "--retry-failed-trials must be >= 0",
        ),
        (["--storage", "sqlite:///s.db", "--study-name", "s", "--storage-timeout", "0"], "--storage-timeout must be > 0"),
        (["--storage", "sqlite:///s.db", "-optimize"], "-optimize with --storage needs --study-name"),
        (["--trial-id", "3"], "--trial-id needs --storage"),
        (["--storage", "sqlite:///s.db", "--trial-id", "3"], "--trial-id needs --study-name"),
    ],
)
def test_flag_errors_name_the_flag(distributed, args, message):
    with pytest.raises(SystemExit, match=re.escape(message)):
        distributed.split_args(["--env", "CartPole-v1", *args])


def test_flags_are_taken_out_for_rl_zoo3(distributed):
    rest, options = distributed.split_args(
        ["-n", "5", "--storage", "postgresql://u:secret@db/tune", "--study-name", "s", "--retry-failed-trials", "2",
         "--heartbeat-interval", "10", "-optimize"]
    )  # fmt: skip
    assert rest == ["-n", "5", "--storage", "postgresql://u:secret@db/tune", "--study-name", "s", "-optimize"]
    assert (options.retry_failed_trials, options.heartbeat_interval, options.grace_period) == (2, 10, None)
    assert distributed.split_args(["-n", "5"]) == (["-n", "5"], None)  # no --storage: rl_zoo3 as it is
    assert "secret" not in distributed.describe(options.storage)
    connect_args = distributed.engine_kwargs(options.storage, 3)["connect_args"]
    assert connect_args["connect_timeout"] == 3 and connect_args["tcp_user_timeout"] == 3000


def test_max_total_trials_counts_the_lower_numbered_trials(distributed):
    study = optuna.create_study()
    done = study.ask()
    study.tell(done, 1.0)
    first, second = study.ask(), study.ask()  # two workers asking at the same moment, with one place left
    assert not distributed.over_budget(study, first.number, 2)
    assert distributed.over_budget(study, second.number, 2)
    study.tell(first, state=TrialState.FAIL)  # a failed trial leaves its place
    assert not distributed.over_budget(study, second.number, 2)
    study.enqueue_trial({})  # a queued retry keeps its place
    assert distributed.over_budget(study, study.trials[-1].number + 1, 3)


def test_lost_connection_is_found_behind_other_errors(distributed):
    import sqlalchemy

    lost = sqlalchemy.exc.OperationalError("SELECT 1", {}, Exception("connection refused\nmore"))
    try:
        try:
            raise lost
        except sqlalchemy.exc.OperationalError:
            raise UnboundLocalError("updated_state")  # noqa: B904 (the implicit context is the point) what Optuna's trial end raises while it handles it
    except UnboundLocalError as error:
        assert distributed.storage_error(error) is lost
        message = str(distributed.lost_storage(distributed.StorageOptions("postgresql://u:pw@db/t", "s"), lost))
    assert message.startswith(
        "sb3_vpg.zoo: the study's storage does not answer (--storage postgresql://u:***@db/t): connection refused"
    )
    assert distributed.storage_error(ValueError("nan")) is None
