"""
A benchmark sweep shared through a storage (``benchmark.py run --storage URL``, ``report --storage URL``): the runs of
one sweep as the trials of one Optuna study, which workers on any number of machines take one at a time
(:class:`StoredSweep`), and the curves they store, which the report reads.

The storage itself (its URL, its tables created once under a lock, heartbeats, a database that stops answering)
is the zoo's: ``sb3_vpg.zoo.distributed``, as for distributed tuning.
"""

import argparse
import contextlib
import dataclasses
import functools
import os
import sys
import threading
import time
import warnings
from collections import defaultdict
from collections.abc import Callable, Iterator

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

#: The Optuna study that holds a sweep in ``--storage``, unless ``--study-name`` names another
STUDY_NAME = "benchmark"
#: ``--retry-failed-trials`` of ``run --storage``: how many times a run whose worker died is queued again
RETRIES = 3
#: The longest pause of a worker that waits for other workers' runs (one of them may die and come back to the queue)
POLL_SECONDS = 10.0
#: The settings every run of a stored sweep shares: its table and curves compare runs of one budget
SWEEP_SETTINGS = ("steps", "eval_freq", "eval_episodes")
#: The trial states of a run that a worker runs or will run
LIVE = (TrialState.WAITING, TrialState.RUNNING)
#: The user attributes that say which run a trial is
RUN_ATTRS = ("env", "algo", "seed", "params")

RunKey = tuple[str, str, int]  # (env, algo with --tag, seed), as the run's folder names it
Curves = dict[tuple[str, str], dict[int, tuple[np.ndarray, np.ndarray]]]  # (env, algo) -> seed -> (timesteps, returns)


def run_key(trial: FrozenTrial) -> RunKey | None:
    """The run that a trial of a stored sweep is (None for a trial that is no run, as tuning's trials)."""
    attrs = trial.user_attrs
    return (attrs["env"], attrs["algo"], attrs["seed"]) if {"env", "algo", "seed"} <= attrs.keys() else None


def _timed(method):
    """Add the time of each call of a :class:`StoredSweep` method to its ``seconds`` (the time in storage calls)."""

    @functools.wraps(method)
    def timed(self, *args, **kwargs):
        start = time.perf_counter()
        try:
            return method(self, *args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - start

    return timed


class StoredSweep:
    """
    The runs of one sweep as the trials of one Optuna study, handed out to the workers that share its storage.

    A run is a trial with the user attributes ``env``, ``algo`` (with ``--tag``), ``seed`` and ``params`` (its
    ``-params``). A worker queues the runs of its sweep that no trial waits for, runs or has completed
    (:meth:`enqueue`), then takes them one at a time (:meth:`claim`): the storage turns a ``WAITING`` trial
    ``RUNNING`` for one worker only (a locked row on a database, the journal's order in a file). Two workers that
    start together may both queue a run: the run's lowest-numbered waiting or running trial is the one that runs,
    and a later copy ends as ``FAIL`` with the user attribute ``duplicate_of`` as soon as a worker takes it.

    A running run records a heartbeat (a database storage with ``heartbeat_interval``): a run whose heartbeat
    stops for the storage's grace period, its worker dead, is marked ``FAIL`` by the next worker that looks
    (:meth:`fail_stale`), and the storage's retry callback queues it again with its attributes. A journal file has
    no heartbeat: there a worker holds a lock on its run's folder, which the system releases when the worker
    dies, and :meth:`fail_stale` asks the caller whether anyone still holds it.

    :param storage: the sweep's storage (with the study ``study_name`` in it)
    :param study_name: the sweep's study
    :param worker: the name this worker's runs record (user attribute ``worker``)
    """

    def __init__(self, storage: optuna.storages.BaseStorage, study_name: str, worker: str):
        self.storage = storage
        self.study = optuna.load_study(study_name=study_name, storage=storage)
        self.study_id = storage.get_study_id_from_name(study_name)
        self.worker = worker
        #: Seconds spent in this object's storage calls, heartbeats included
        self.seconds = 0.0
        self._trial_ids: dict[int, int] = {}

    @property
    def heartbeat_interval(self) -> int | None:
        """Seconds between two heartbeats of a running run; None where the storage has no heartbeat."""
        if isinstance(self.storage, optuna.storages.RDBStorage):
            return self.storage.get_heartbeat_interval()
        return None

    def trials(self, *states: TrialState) -> list[FrozenTrial]:
        """The study's trials (in these states)."""
        return self.storage.get_all_trials(self.study_id, deepcopy=False, states=states or None)

    def _trial_id(self, trial: FrozenTrial) -> int:
        if trial.number not in self._trial_ids:
            self._trial_ids[trial.number] = self.storage.get_trial_id_from_study_id_trial_number(self.study_id, trial.number)
        return self._trial_ids[trial.number]

    @_timed
    def enqueue(self, runs: dict[RunKey, list[str]]) -> list[RunKey]:
        """
        Queue the runs that no trial waits for, runs or has completed (a failed run is queued again).

        :param runs: each run of this worker's sweep, and its ``-params``, which a trial of the run must share
        :return: the runs queued
        """
        held = {run_key(trial): trial for trial in self.trials(TrialState.COMPLETE, *LIVE)}
        for key, trial in held.items():
            if key in runs and trial.user_attrs.get("params") != runs[key]:
                sys.exit(
                    f"--params: run {'/'.join(map(str, key))} of the sweep {self.study.study_name!r} runs with "
                    f"-params {trial.user_attrs.get('params')}, this worker's with {runs[key]}: give this variant "
                    "another --tag, or the sweep another --study-name"
                )
        queued = [key for key in runs if key not in held]
        for env, algo, seed in queued:
            self.study.enqueue_trial({}, user_attrs={"env": env, "algo": algo, "seed": seed, "params": runs[env, algo, seed]})
        return queued

    @_timed
    def claim(self, runs: dict[RunKey, object]) -> FrozenTrial | None:
        """A waiting run of ``runs`` that this worker now holds (its trial ``RUNNING``, with a first heartbeat),
        or None when none is waiting."""
        for trial in sorted(self.trials(TrialState.WAITING), key=lambda trial: trial.number):
            if run_key(trial) not in runs:
                continue
            trial_id = self._trial_id(trial)
            try:
                if not self.storage.set_trial_state_values(trial_id, TrialState.RUNNING):
                    continue  # another worker took it first
            except optuna.exceptions.UpdateFinishedTrialError:
                continue
            if self.heartbeat_interval:
                self.storage.record_heartbeat(trial_id)  # a held run without a heartbeat would never go stale
            self.storage.set_trial_user_attr(trial_id, "worker", self.worker)
            winner = self._duplicate_of(trial)
            if winner is None:
                return self.storage.get_trial(trial_id)
            self.storage.set_trial_user_attr(trial_id, "duplicate_of", winner)
            self.storage.set_trial_state_values(trial_id, TrialState.FAIL)
        return None

    def _duplicate_of(self, trial: FrozenTrial) -> int | None:
        """The number of the trial of the same run that runs instead of ``trial``: a complete one, or a waiting or
        running one with a lower number (None when ``trial`` is the one)."""
        for other in self.trials(TrialState.COMPLETE, *LIVE):
            same_run = other.number != trial.number and run_key(other) == run_key(trial)
            if same_run and (other.state == TrialState.COMPLETE or other.number < trial.number):
                return other.number
        return None

    @_timed
    def active(self, runs: dict[RunKey, object]) -> bool:
        """Whether a run of ``runs`` waits or runs (in another worker, for a worker that found none to claim)."""
        return any(run_key(trial) in runs for trial in self.trials(*LIVE))

    @_timed
    def fail_stale(self, unheld: Callable[[FrozenTrial], bool]) -> list[int]:
        """
        Mark ``FAIL`` the runs of dead workers and queue them again. With a heartbeat, the runs whose heartbeat
        stopped (the storage's retry callback queues them); without one, the running runs that ``unheld`` says no
        worker holds: a worker killed with its machine or its session leaves its run ``RUNNING`` in a journal
        file, where the run would otherwise never come back.

        :param unheld: whether no worker holds a running run (asked only without a heartbeat)
        :return: the numbers of the trials failed here without a heartbeat
        """
        if self.heartbeat_interval:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # Optuna calls it experimental
                optuna.storages.fail_stale_trials(self.study)
            return []
        failed = []
        for trial in self.trials(TrialState.RUNNING):
            if run_key(trial) is None or not unheld(trial):
                continue
            trial_id = self._trial_id(trial)
            try:
                self.storage.set_trial_user_attr(trial_id, "dead_worker", True)
                self.storage.set_trial_state_values(trial_id, TrialState.FAIL)
            except optuna.exceptions.UpdateFinishedTrialError:
                continue  # another worker found it first, and queued it
            self.study.enqueue_trial({}, user_attrs={name: trial.user_attrs[name] for name in RUN_ATTRS})
            failed.append(trial.number)
        return failed

    @contextlib.contextmanager
    def heartbeat(self, trial: FrozenTrial) -> Iterator[None]:
        """Record the run's heartbeat every :attr:`heartbeat_interval` seconds, from a thread, while the block runs."""
        interval = self.heartbeat_interval
        if not interval:
            yield
            return
        import sqlalchemy

        trial_id, stop, seconds = self._trial_id(trial), threading.Event(), [0.0]

        def beat() -> None:
            while not stop.wait(interval):
                start = time.perf_counter()
                try:
                    self.storage.record_heartbeat(trial_id)
                except sqlalchemy.exc.SQLAlchemyError as error:  # the database may be back before the grace period ends
                    print(f"{self.worker}: a heartbeat failed: {str(error).strip().splitlines()[0]}", file=sys.stderr)
                seconds[0] += time.perf_counter() - start

        thread = threading.Thread(target=beat, name=f"heartbeat of trial {trial.number}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()
            self.seconds += seconds[0]

    @_timed
    def finish(self, trial: FrozenTrial, curve: tuple[np.ndarray, np.ndarray] | None, attrs: dict, ok: bool) -> bool:
        """
        Store a run's result: ``COMPLETE`` with its evaluation curve (user attributes ``timesteps`` and
        ``eval_returns``, the final mean evaluation return as the trial's value), or ``FAIL``.

        :param trial: the run, held by this worker
        :param curve: the timesteps and mean evaluation returns (None without evaluations)
        :param attrs: more user attributes to record (the run's seconds, exit code, ...)
        :param ok: whether the run finished
        :return: False when another worker failed the run as dead meanwhile (this worker stalled past the grace
            period): the retry is the run now, and this result is dropped
        """
        trial_id = self._trial_id(trial)
        if curve is not None:
            attrs = {**attrs, "timesteps": curve[0].tolist(), "eval_returns": curve[1].tolist()}
        try:
            for name, value in attrs.items():
                self.storage.set_trial_user_attr(trial_id, name, value)
            values = [float(curve[1][-1])] if ok and curve is not None and len(curve[1]) else None
            self.storage.set_trial_state_values(trial_id, TrialState.COMPLETE if ok else TrialState.FAIL, values)
        except optuna.exceptions.UpdateFinishedTrialError:
            return False
        return True

    @_timed
    def record(self, trial: FrozenTrial, attrs: dict) -> None:
        """Add user attributes to a run this worker holds."""
        for name, value in attrs.items():
            self.storage.set_trial_user_attr(self._trial_id(trial), name, value)

    @_timed
    def release(self, trial: FrozenTrial) -> None:
        """Give back a run this worker stops in the middle of (an interrupt): ``FAIL``, and queued again."""
        self.storage.set_trial_state_values(self._trial_id(trial), TrialState.FAIL)
        self.study.enqueue_trial({}, user_attrs={name: trial.user_attrs[name] for name in RUN_ATTRS})


def storage_options(args: argparse.Namespace):
    """
    The storage flags as ``sb3_vpg.zoo.distributed.StorageOptions``, read and checked as ``python -m sb3_vpg.zoo train``
    reads them (a message names a bad flag). ``run`` queues a dead worker's run again :data:`RETRIES` times unless
    ``--retry-failed-trials`` says otherwise.
    """
    from sb3_vpg.zoo import distributed

    flags = ["--storage", args.storage, "--study-name", args.study_name]
    for name in ("heartbeat_interval", "heartbeat_grace_period", "retry_failed_trials", "storage_timeout"):
        if getattr(args, name, None) is not None:
            flags += ["--" + name.replace("_", "-"), str(getattr(args, name))]
    options = distributed.split_args(flags)[1]
    if args.command == "run" and args.retry_failed_trials is None and not options.journal and options.heartbeat_interval:
        options = dataclasses.replace(options, retry_failed_trials=RETRIES)
    return options


@contextlib.contextmanager
def storage_errors(options) -> Iterator[None]:
    """A storage that does not answer ends the worker or the report with a message naming it, not a traceback."""
    from sb3_vpg.zoo import distributed

    try:
        yield
    except Exception as error:
        lost = distributed.storage_error(error)
        if lost is None:
            raise
        raise distributed.lost_storage(options, lost) from error


def read_stored_sweep(args: argparse.Namespace) -> list[FrozenTrial]:
    """The trials of ``report --storage``'s sweep, read without touching the workers' runs."""
    from sb3_vpg.zoo import distributed

    options = dataclasses.replace(storage_options(args), heartbeat_interval=0)
    where = distributed.describe(options.storage)
    if options.journal and not os.path.isfile(options.storage):
        sys.exit(f"--storage {options.storage}: no such journal file")
    with storage_errors(options):
        storage = distributed.open_storage(options, create_study=False)
        try:
            return optuna.load_study(study_name=options.study_name, storage=storage).get_trials(deepcopy=False)
        except KeyError:
            names = ", ".join(repr(name) for name in optuna.get_all_study_names(storage)) or "none"
            sys.exit(f"--study-name {options.study_name!r}: no such sweep in {where} (it has: {names})")


def load_stored_curves(trials: list[FrozenTrial]) -> Curves:
    """:func:`load_curves` for a stored sweep: the curves of its complete runs (not those still waiting or running)."""
    curves: Curves = defaultdict(dict)
    for trial in trials:
        key = run_key(trial)
        if trial.state == TrialState.COMPLETE and key is not None and trial.user_attrs.get("timesteps"):
            env, algo, seed = key
            curves[(env, algo)][seed] = (np.array(trial.user_attrs["timesteps"]), np.array(trial.user_attrs["eval_returns"]))
    return curves
