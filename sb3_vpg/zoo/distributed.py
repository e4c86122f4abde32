"""
Hyperparameter tuning shared by workers on several machines: every worker runs
``python -m sb3_vpg.zoo train -optimize --storage URL --study-name NAME`` and Optuna's storage hands out the trials.

rl_zoo3's ``train`` already takes ``--storage`` and ``--study-name``; :func:`manager_class` wraps its
``ExperimentManager`` where that is not enough for many workers:

- **Workers that start together.** rl_zoo3 lets every worker create Optuna's tables and the study, so workers
  launched at the same moment against a fresh database race, and the losers die (``CREATE TYPE studydirection``:
  duplicate key). :func:`open_storage` creates the tables and the study once: under a PostgreSQL advisory lock,
  and on other databases by trying again when another worker created them first.
- **A worker that dies.** A database storage gets Optuna's heartbeat (``--heartbeat-interval``, default 60 s): a
  trial whose worker has sent none for ``--heartbeat-grace-period`` (default twice the interval) is marked
  ``FAIL`` by the next worker that starts, or starts or ends a trial, instead of staying ``RUNNING`` forever, and
  ``--retry-failed-trials N`` queues it again, with its parameters, up to N times. Each trial records the worker
  that ran it (user attribute ``worker``, ``host:pid``).
- **A database that goes away.** Connections time out (``--storage-timeout``, default 10 s) and are checked
  before use, and a worker that loses the storage exits with a message naming it instead of a traceback.
- **--max-total-trials across workers.** rl_zoo3 counts the study's trials before a worker asks for one, so
  workers that ask at the same moment overshoot the total. A trial whose lower-numbered trials already fill
  it (trial numbers are handed out one by one by the storage) ends at once as ``FAIL``, which that count leaves
  out, with the user attribute ``over_max_total_trials``, and its worker stops.
- **--trial-id N.** rl_zoo3 ignores trial 0 and takes ``study.trials[N]`` by position, through a storage without
  timeouts; here it is the study's trial number ``N``, converted by rl_zoo3's ``HYPERPARAMS_CONVERTER`` as the
  sampler converted it, with ``-params`` still on top.

A journal file (``--storage path.log``) works for workers on one machine (or on a shared file system with
working locks); Optuna gives it no heartbeat, so the heartbeat flags need a database URL.
"""

import argparse
import contextlib
import hashlib
import io
import os
import random
import socket
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

#: The defaults of the flags this module adds to ``train`` (heartbeat as Optuna's docs suggest it)
HEARTBEAT_INTERVAL = 60
STORAGE_TIMEOUT = 10.0
#: How long a worker waits for another worker creating the tables and the study (a second, usually)
CREATION_WAIT = 120.0
#: The PostgreSQL advisory lock every sb3_vpg worker takes to create Optuna's tables and studies
CREATION_LOCK_KEY = int.from_bytes(hashlib.sha256(b"sb3_vpg.zoo: create optuna storage").digest()[:8], "big", signed=True)
#: The trial states rl_zoo3 counts against --max-total-trials, and the queued trials that will join them
COUNTED_STATES = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
BUDGET_STATES = (*COUNTED_STATES, TrialState.WAITING)
#: This worker, as the trials it runs record it
WORKER = f"{socket.gethostname()}:{os.getpid()}"

FLAGS_HELP = """Flags added to train for a shared --storage (several workers, one study):
  --heartbeat-interval S      a database storage records each running trial every S seconds (default 60; 0: off)
  --heartbeat-grace-period S  a trial without a heartbeat for S seconds is marked FAIL (default 2 x interval)
  --retry-failed-trials N     queue such a trial again, with its parameters, up to N times (default 0)
  --storage-timeout S         connection timeout of a database storage (default 10)"""


@dataclass(frozen=True)
class StorageOptions:
    """Where the study lives and how the workers share it (rl_zoo3's flags and the ones this module adds)."""

    storage: str
    study_name: str | None = None
    heartbeat_interval: int = HEARTBEAT_INTERVAL
    grace_period: int | None = None
    retry_failed_trials: int = 0
    timeout: float = STORAGE_TIMEOUT

    @property
    def journal(self) -> bool:
        """rl_zoo3's rule: a storage ending in ``.log`` is a journal file, anything else an SQLAlchemy URL."""
        return self.storage.endswith(".log")


def _fail(message: str) -> SystemExit:
    return SystemExit(f"sb3_vpg.zoo: {message}")


def split_args(args: list[str]) -> tuple[list[str], StorageOptions | None]:
    """
    Take this module's flags out of ``train``'s arguments (rl_zoo3 rejects flags it does not know).

    :param args: ``train``'s arguments
    :return: the arguments for rl_zoo3, and the storage options (None without ``--storage``, or for ``--help``)
    """
    ours = argparse.ArgumentParser(prog="python -m sb3_vpg.zoo train", add_help=False, allow_abbrev=False)
    ours.add_argument("--heartbeat-interval", type=int)
    ours.add_argument("--heartbeat-grace-period", type=int)
    ours.add_argument("--retry-failed-trials", type=int)
    ours.add_argument("--storage-timeout", type=float)
    flags, rest = ours.parse_known_args(args)
    given = {name: value for name, value in vars(flags).items() if value is not None}

    zoo = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    zoo.add_argument("--storage", type=str)
    zoo.add_argument("--study-name", type=str)
    zoo.add_argument("--trial-id", type=int)
    zoo.add_argument("-optimize", "--optimize-hyperparameters", action="store_true")
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            known, _ = zoo.parse_known_args(rest)
    except SystemExit:  # a malformed rl_zoo3 flag: rl_zoo3's parser reports it
        return rest, None
    if {"-h", "--help"} & set(rest):
        return rest, None

    if known.storage is None:
        for name in given:
            raise _fail(f"--{name.replace('_', '-')} needs --storage (the study's database URL or journal file)")
        if known.trial_id is not None:
            raise _fail("--trial-id needs --storage and --study-name (the study the trial is in)")
        return rest, None
    if known.trial_id is not None and known.study_name is None:
        raise _fail("--trial-id needs --study-name (the study the trial is in)")
    if known.optimize_hyperparameters and known.study_name is None:
        raise _fail("-optimize with --storage needs --study-name: the workers find their shared study by its name")

    options = StorageOptions(
        storage=known.storage,
        study_name=known.study_name,
        heartbeat_interval=given.get("heartbeat_interval", HEARTBEAT_INTERVAL),
        grace_period=given.get("heartbeat_grace_period"),
        retry_failed_trials=given.get("retry_failed_trials", 0),
        timeout=given.get("storage_timeout", STORAGE_TIMEOUT),
    )
    _check(options, given)
    return rest, options


def _check(options: StorageOptions, given: dict[str, Any]) -> None:
    """Exit with a message naming the flag if the options cannot work together."""
    if options.heartbeat_interval < 0:
        raise _fail(f"--heartbeat-interval must be >= 0 seconds (0 turns the heartbeat off), got {options.heartbeat_interval}")
    if options.heartbeat_interval == 0 and ("heartbeat_grace_period" in given or options.retry_failed_trials):
        flag = "--heartbeat-grace-period" if "heartbeat_grace_period" in given else "--retry-failed-trials"
        raise _fail(f"{flag} needs the heartbeat, which --heartbeat-interval 0 turns off")
    if options.grace_period is not None and options.grace_period <= options.heartbeat_interval:
        raise _fail(
            f"--heartbeat-grace-period ({options.grace_period}) must be longer than --heartbeat-interval "
            f"({options.heartbeat_interval}): live workers' trials would be failed between two heartbeats"
        )
    if options.retry_failed_trials < 0:
        raise _fail(f"--retry-failed-trials must be >= 0, got {options.retry_failed_trials}")
    if options.timeout <= 0:
        raise _fail(f"--storage-timeout must be > 0 seconds, got {options.timeout}")
    heartbeat_flags = [
        name for name in ("heartbeat_interval", "heartbeat_grace_period", "retry_failed_trials") if name in given
    ]
    if options.journal and heartbeat_flags:
        raise _fail(
            f"--{heartbeat_flags[0].replace('_', '-')} needs a database --storage: Optuna's journal file storage "
            f"({options.storage}) has no heartbeat"
        )


def describe(storage: str) -> str:
    """The storage as a message may show it: a URL without its password."""
    if storage.endswith(".log"):
        return storage
    import sqlalchemy

    try:
        return sqlalchemy.engine.make_url(storage).render_as_string(hide_password=True)
    except sqlalchemy.exc.ArgumentError:
        return storage


def engine_kwargs(url: str, timeout: float) -> dict[str, Any]:
    """
    SQLAlchemy engine arguments that bound every wait on the database: a connection is checked before each use
    (a restarted server costs a reconnection, not an error), and on PostgreSQL (libpq drivers) connecting, an
    unanswered write and a silent peer each time out after about ``timeout`` seconds.
    """
    import sqlalchemy

    parsed = sqlalchemy.engine.make_url(url)
    kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if parsed.get_backend_name() == "postgresql" and parsed.get_driver_name() in ("psycopg2", "psycopg"):
        seconds = max(2, round(timeout))  # libpq's connect_timeout is whole seconds, at least 2
        kwargs["connect_args"] = {
            "connect_timeout": seconds,
            "tcp_user_timeout": seconds * 1000,
            "keepalives": 1,
            "keepalives_idle": seconds,
            "keepalives_interval": max(1, seconds // 3),
            "keepalives_count": 3,
        }
    elif parsed.get_backend_name() == "mysql":
        kwargs["connect_args"] = {"connect_timeout": max(1, round(timeout))}
    return kwargs


@contextlib.contextmanager
def _creation_lock(url: str, kwargs: dict[str, Any]) -> Iterator[None]:
    """Hold PostgreSQL's advisory lock :data:`CREATION_LOCK_KEY` (a no-op on other databases)."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(url, **kwargs)
    try:
        if engine.dialect.name != "postgresql":
            yield
            return
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            deadline = time.monotonic() + CREATION_WAIT
            take = sqlalchemy.text("SELECT pg_try_advisory_lock(:key)")
            while not connection.execute(take, {"key": CREATION_LOCK_KEY}).scalar():
                if time.monotonic() > deadline:
                    raise _fail(
                        f"waited {CREATION_WAIT:.0f} s for another worker creating the study in --storage "
                        f"{describe(url)} (PostgreSQL advisory lock {CREATION_LOCK_KEY})"
                    )
                time.sleep(random.uniform(0.05, 0.2))
            try:
                yield
            finally:
                connection.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:key)"), {"key": CREATION_LOCK_KEY})
    finally:
        engine.dispose()


def _created_concurrently(error: Exception) -> bool:
    """Whether a database error says another worker created the same table, type or row first."""
    import sqlalchemy

    if isinstance(error, sqlalchemy.exc.IntegrityError):
        return True
    text = str(error).lower()
    return isinstance(error, sqlalchemy.exc.DBAPIError) and ("already exists" in text or "duplicate" in text)


def open_storage(
    options: StorageOptions,
    *,
    create_study: bool = True,
    study_attrs: Callable[[], dict[str, str]] | None = None,
) -> "optuna.storages.BaseStorage":
    """
    The study's storage, with the tables and the study created once whichever worker comes first.

    :param options: the storage and how the workers share it
    :param create_study: create the study ``options.study_name`` if the storage has none of that name
    :param study_attrs: the study's user attributes, set by the worker that finds the study without them
        (rl_zoo3 sets its ``command`` and default hyperparameters unguarded, so two workers could insert them
        together and the second would die on the unique key)
    :return: an ``RDBStorage`` (with the heartbeat) or a ``JournalStorage``
    """
    if options.journal:
        Path(options.storage).parent.mkdir(parents=True, exist_ok=True)
        storage: optuna.storages.BaseStorage = optuna.storages.JournalStorage(
            optuna.storages.journal.JournalFileBackend(options.storage)
        )
        if create_study:
            # The journal replays its log: a study created twice is one study (DuplicatedStudyError, then load)
            _create_study(storage, options.study_name, study_attrs)
        return storage

    import sqlalchemy

    kwargs = engine_kwargs(options.storage, options.timeout)
    heartbeat: dict[str, Any] = {}
    with warnings.catch_warnings():
        # Optuna marks the heartbeat and its retry experimental (a warning per worker)
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if options.heartbeat_interval:
            heartbeat = {"heartbeat_interval": options.heartbeat_interval, "grace_period": options.grace_period}
        if options.retry_failed_trials:
            # Optuna 4.9 renamed the retry callback and its argument (the old names go in 6.0)
            if hasattr(optuna.storages, "RetryHeartbeatStaleTrialCallback"):
                retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=options.retry_failed_trials)
                heartbeat["heartbeat_stale_trial_callback"] = retry
            else:
                retry = optuna.storages.RetryFailedTrialCallback(max_retry=options.retry_failed_trials)
                heartbeat["failed_trial_callback"] = retry
    deadline = time.monotonic() + CREATION_WAIT
    while True:
        try:
            with _creation_lock(options.storage, kwargs), warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                storage = optuna.storages.RDBStorage(options.storage, engine_kwargs=kwargs, **heartbeat)
                if create_study:
                    _create_study(storage, options.study_name, study_attrs)
            return storage
        except sqlalchemy.exc.DBAPIError as error:
            # Not PostgreSQL (no advisory lock): another worker created the tables first; they exist now
            if not _created_concurrently(error) or time.monotonic() > deadline:
                raise
            time.sleep(random.uniform(0.1, 0.5))


def _create_study(
    storage: "optuna.storages.BaseStorage", study_name: str | None, study_attrs: Callable[[], dict[str, str]] | None
) -> None:
    study = optuna.create_study(storage=storage, study_name=study_name, direction="maximize", load_if_exists=True)
    if study_attrs is not None and "command" not in study.user_attrs:
        for key, value in study_attrs().items():
            study.set_user_attr(key, value)


def fail_stale_trials(study: optuna.Study) -> None:
    """Mark the trials of dead workers ``FAIL`` (and queue their retries): Optuna's, without its warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


def over_budget(study: optuna.Study, number: int, max_total_trials: int) -> bool:
    """
    Whether trial ``number`` is past ``--max-total-trials``: the trials numbered before it that count (or are
    queued to run) already fill it. Numbers are handed out one by one, so of two workers asking at once only
    the one with the higher number can be past it.
    """
    trials = study.get_trials(deepcopy=False, states=BUDGET_STATES)
    return sum(trial.number < number for trial in trials) >= max_total_trials


def storage_error(error: BaseException) -> BaseException | None:
    """
    The lost-connection error behind ``error``, if any: its causes and contexts too (Optuna's trial end, failing
    on the same lost connection while it handles the objective's error, can raise something else).
    """
    import sqlalchemy

    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError)):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _first_line(error: BaseException) -> str:
    """The first line of a database error's message (the driver's own, without SQLAlchemy's SQL and links)."""
    lines = str(getattr(error, "orig", None) or error).strip().splitlines()
    return lines[0] if lines else repr(error)


def lost_storage(options: StorageOptions, error: BaseException) -> SystemExit:
    """The message of a worker that cannot reach its storage (at its start, or in the middle of the study)."""
    return _fail(
        f"the study's storage does not answer (--storage {describe(options.storage)}): {_first_line(error)}\n"
        "The trials finished so far are stored there: start the workers again, with the same flags, once it answers."
    )


@contextlib.contextmanager
def _storage_errors(options: StorageOptions) -> Iterator[None]:
    """Turn a lost database connection, and a live trial failed as dead, into one message instead of a traceback."""
    try:
        yield
    except Exception as error:
        if isinstance(error, ValueError) and "Cannot tell a FAIL trial" in str(error):
            raise failed_by_others(options) from error
        lost = storage_error(error)
        if lost is None:
            raise
        raise lost_storage(options, lost) from error


def failed_by_others(options: StorageOptions) -> SystemExit:
    """The message of a live worker whose trial another worker marked ``FAIL`` (Optuna then refuses its result)."""
    grace = options.grace_period or 2 * options.heartbeat_interval
    return _fail(
        f"another worker marked this worker's trial FAIL: its heartbeat had stopped for more than "
        f"--heartbeat-grace-period ({grace} s). Something stalls this worker that long (a swapping machine, a "
        "suspended process): give a longer --heartbeat-grace-period to every worker."
    )


def load_trial_hyperparams(options: StorageOptions, trial_id: int, algo: str) -> dict[str, Any]:
    """
    The hyperparameters of trial number ``trial_id`` of the study, converted as the sampler converted them.

    :param options: the storage (``--storage``, ``--study-name``)
    :param trial_id: the trial's number (``--trial-id``)
    :param algo: rl_zoo3's algo name, whose ``HYPERPARAMS_CONVERTER`` converts the parameters
    """
    from rl_zoo3.hyperparams_opt import HYPERPARAMS_CONVERTER

    if algo not in HYPERPARAMS_CONVERTER:
        raise _fail(f"--trial-id: rl_zoo3 has no converter of trial parameters for --algo {algo}")
    storage = open_storage(
        StorageOptions(options.storage, options.study_name, heartbeat_interval=0, timeout=options.timeout),
        create_study=False,
    )
    try:
        study = optuna.load_study(study_name=options.study_name, storage=storage)
    except KeyError:
        names = ", ".join(repr(name) for name in optuna.get_all_study_names(storage)) or "none"
        raise _fail(
            f"--study-name {options.study_name!r}: no such study in {describe(options.storage)} (it has: {names})"
        ) from None
    trials = {trial.number: trial for trial in study.get_trials(deepcopy=False)}
    if trial_id not in trials:
        numbers = f"trials 0 to {max(trials)}" if trials else "no trials"
        raise _fail(f"--trial-id {trial_id}: study {options.study_name!r} in {describe(options.storage)} has {numbers}")
    trial = trials[trial_id]
    if not trial.params:
        raise _fail(f"--trial-id {trial_id}: the trial is {trial.state.name} and has no parameters yet")
    if trial.state != TrialState.COMPLETE:
        print(f"sb3_vpg.zoo: --trial-id {trial_id}: the trial is {trial.state.name}, not COMPLETE", file=sys.stderr)
    print(f"Loading trial {trial_id} of study {options.study_name!r} from {describe(options.storage)}")
    return HYPERPARAMS_CONVERTER[algo](dict(trial.params))


@contextlib.contextmanager
def _heartbeat_errors_in_one_line(options: StorageOptions) -> Iterator[None]:
    """A heartbeat thread that loses the storage says so in one line, not a traceback: the worker itself stops
    with :func:`lost_storage`'s message at its next storage call."""
    default_hook = threading.excepthook

    def hook(args: Any) -> None:
        lost = storage_error(args.exc_value) if args.exc_value is not None else None
        if lost is None:
            default_hook(args)
            return
        print(
            f"sb3_vpg.zoo: a trial's heartbeat lost --storage {describe(options.storage)}: {_first_line(lost)}",
            file=sys.stderr,
        )

    threading.excepthook = hook
    try:
        yield
    finally:
        threading.excepthook = default_hook


@contextlib.contextmanager
def _rl_zoo3_creates_study_in(storage: "optuna.storages.BaseStorage") -> Iterator[None]:
    """rl_zoo3 calls ``optuna.create_study(storage=<the --storage string>, ...)``: give it this storage object."""
    create_study = optuna.create_study

    def create(*args: Any, **kwargs: Any) -> optuna.Study:
        return create_study(*args, **{**kwargs, "storage": storage})

    optuna.create_study = create  # type: ignore[assignment]
    try:
        yield
    finally:
        optuna.create_study = create_study  # type: ignore[assignment]


def manager_class(base: type, options: StorageOptions) -> type:
    """
    ``base`` (rl_zoo3's ``ExperimentManager`` or a subclass) with the study shared as the module docstring says.

    :param base: the experiment manager class ``train()`` would use
    :param options: the storage and how the workers share it
    """

    class SharedStudyExperimentManager(base):  # type: ignore[valid-type, misc]
        def hyperparameters_optimization(self) -> None:
            # Overridden to create the storage and the study once, with the heartbeat, before rl_zoo3 loads them
            with _storage_errors(options):
                storage = open_storage(options, study_attrs=self._study_attrs)
                # A worker that starts fails the dead workers' trials first (rl_zoo3 counts them as running)
                fail_stale_trials(optuna.load_study(study_name=options.study_name, storage=storage))
                with _rl_zoo3_creates_study_in(storage), _heartbeat_errors_in_one_line(options):
                    super().hyperparameters_optimization()

        def _study_attrs(self) -> dict[str, str]:
            # What rl_zoo3 records on a new study: the command (here without the database's password) and the
            # default hyperparameters
            command = [describe(arg) if arg == options.storage else arg for arg in sys.orig_argv]
            attrs = {"command": " ".join(command)}
            attrs.update({key: str(self._hyperparams[key]) for key in sorted(self._hyperparams)})
            return attrs

        def objective(self, trial: optuna.Trial) -> float:
            # Overridden to record the worker, and to hold --max-total-trials (see the module docstring)
            trial.set_user_attr("worker", WORKER)
            if self.max_total_trials is not None and over_budget(trial.study, trial.number, self.max_total_trials):
                trial.set_user_attr("over_max_total_trials", True)
                print(f"Trial {trial.number} is past --max-total-trials {self.max_total_trials}: this worker stops")
                trial.study.stop()
                return float("nan")  # FAIL, which --max-total-trials does not count
            try:
                return super().objective(trial)
            finally:
                # Dead workers' trials are failed now, before rl_zoo3 counts the trials for --max-total-trials
                fail_stale_trials(trial.study)

        def read_hyperparameters(self) -> tuple[dict[str, Any], dict[str, Any]]:
            # Overridden for --trial-id (see the module docstring): the trial's hyperparameters go under -params
            if self.trial_id is None:
                return super().read_hyperparameters()
            with _storage_errors(options):
                trial_hyperparams = load_trial_hyperparams(options, self.trial_id, self.algo)
            custom, trial_id = self.custom_hyperparams, self.trial_id
            self.custom_hyperparams, self.trial_id = {**trial_hyperparams, **(custom or {})}, None
            try:
                return super().read_hyperparameters()
            finally:
                self.custom_hyperparams, self.trial_id = custom, trial_id

    return SharedStudyExperimentManager


__all__ = [
    "FLAGS_HELP",
    "StorageOptions",
    "engine_kwargs",
    "load_trial_hyperparams",
    "manager_class",
    "open_storage",
    "over_budget",
    "split_args",
]
