"""
A clear error, instead of a bare EOFError or a hang, when a ``SubprocVecEnv`` worker dies during training.

SB3's worker does not catch an exception raised by its env: the worker process prints the traceback to
stderr and exits, and the main process only sees its pipe close (``EOFError`` in ``recv``, or
``BrokenPipeError`` in ``send``). With the ``"fork"`` start method it does not even see that: the workers
forked after the pipe was made inherit its other end and keep it open, so ``recv`` waits forever. The same
happens when the worker is killed (e.g. by the OOM killer). :class:`WorkerGuard` watches the worker
processes while ``learn`` runs, unblocks the main process when one dies, and turns the pipe error into a
RuntimeError that names the env index, the exit code and the step.
"""

import multiprocessing.connection
import os
import signal
import socket
import threading
from collections.abc import Callable
from types import TracebackType

from stable_baselines3.common.vec_env import SubprocVecEnv, VecEnv, VecEnvWrapper

#: How long to wait for a worker whose pipe closed to finish exiting, so its exit code can be read (seconds).
EXIT_WAIT = 5.0
_PIPE_ERRORS = (EOFError, BrokenPipeError, ConnectionResetError)


def find_subproc_vec_env(env: VecEnv | None) -> SubprocVecEnv | None:
    """The ``SubprocVecEnv`` under ``env``'s ``VecEnvWrapper`` layers, if there is one."""
    while isinstance(env, VecEnvWrapper):
        env = env.venv
    return env if isinstance(env, SubprocVecEnv) else None


class WorkerGuard:
    """
    Context manager around training with ``env``; does nothing unless ``env`` runs on a ``SubprocVecEnv``.

    While inside, a daemon thread waits on the worker processes' sentinels. When a worker exits, it shuts
    down the main process's end of that worker's pipe, which wakes a ``recv`` blocked on it with an
    ``EOFError`` (needed for the ``"fork"`` start method). On leaving with a pipe error, the dead workers are
    named in a RuntimeError raised from it, and the ``SubprocVecEnv``, unusable without them, is closed
    (its other workers are stopped) so that ``env.close()`` does not hang afterwards.

    :param env: the model's env
    :param get_step: returns the number of env steps so far, for the message
    """

    def __init__(self, env: VecEnv | None, get_step: Callable[[], int]):
        self.venv = find_subproc_vec_env(env)
        self.get_step = get_step
        self._thread: threading.Thread | None = None
        self._stop_fds: tuple[int, int] | None = None

    def __enter__(self) -> None:
        if self.venv is not None and not self.venv.closed:
            self._stop_fds = os.pipe()
            self._thread = threading.Thread(target=self._watch, name="sb3_vpg-worker-guard", daemon=True)
            self._thread.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self._stop_watching()
        if self.venv is None or not isinstance(exc, _PIPE_ERRORS):
            return
        dead = self._dead_workers()
        if not dead:
            return  # not a worker's death: let the original error through
        step = self.get_step()
        _close_broken(self.venv)
        descriptions = ", ".join(f"env {index} ({_describe_exit(code)})" for index, code in dead)
        raise RuntimeError(
            f"The SubprocVecEnv worker of {descriptions} died during training, after step {step} "
            f"(num_timesteps={step}): its env raised an exception (the worker's traceback is printed above, on "
            "stderr) or the process was killed. The SubprocVecEnv has been closed; to go on, make a new env and "
            "resume from the last checkpoint."
        ) from exc

    def _watch(self) -> None:
        assert self.venv is not None and self._stop_fds is not None
        processes = self.venv.processes
        sentinels = {process.sentinel: index for index, process in enumerate(processes)}
        stop = self._stop_fds[0]
        while sentinels:
            ready = multiprocessing.connection.wait([*sentinels, stop])
            if stop in ready:
                return
            for sentinel in ready:
                _shutdown(self.venv.remotes[sentinels.pop(sentinel)])  # type: ignore[index]

    def _stop_watching(self) -> None:
        if self._thread is None or self._stop_fds is None:
            return
        read_fd, write_fd = self._stop_fds
        os.write(write_fd, b"x")
        self._thread.join()
        os.close(read_fd)
        os.close(write_fd)
        self._thread, self._stop_fds = None, None

    def _dead_workers(self) -> list[tuple[int, int]]:
        """``(env index, exit code)`` of the workers that exited, waiting up to EXIT_WAIT for the first one."""
        assert self.venv is not None
        processes = self.venv.processes
        ended = multiprocessing.connection.wait([process.sentinel for process in processes], timeout=EXIT_WAIT)
        for process in processes:
            if process.sentinel in ended:
                process.join(EXIT_WAIT)  # its sentinel is ready slightly before its exit code can be read
        return [(index, process.exitcode) for index, process in enumerate(processes) if process.exitcode is not None]


def _shutdown(connection: multiprocessing.connection.Connection) -> None:
    """Shut down the socket under a ``Pipe()`` end, waking a thread blocked in its ``recv`` (Unix sockets only)."""
    try:
        with socket.socket(fileno=os.dup(connection.fileno())) as sock:
            sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already closed, or not a socket


def _close_broken(venv: SubprocVecEnv) -> None:
    """Close a SubprocVecEnv that lost a worker, without its ``close()``, which would wait on the dead worker."""
    for process in venv.processes:
        if process.is_alive():
            process.terminate()
    for process in venv.processes:
        process.join(EXIT_WAIT)
        if process.is_alive():  # it ignored SIGTERM
            process.kill()
            process.join()
    for remote in venv.remotes:
        remote.close()
    venv.waiting = False
    venv.closed = True


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"
