"""
A real PostgreSQL server for the tests, from the binaries that the ``pgserver`` wheel ships (the
``distributed`` extra): ``initdb`` in a temporary directory, the server on 127.0.0.1 at a free port (the URL a
worker on another machine would use, with a host and a port), stopped and removed at the end.

PostgreSQL refuses to run as root, and CI runs as root: then the server runs as ``nobody``, from a copy of the
binaries, since pip put them under root's home, which other users cannot enter. (``pgserver.get_server`` does
the same by adding a system user and opening root's home and site-packages to everyone: too much for a test.)
"""

import atexit
import importlib.util
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Self

#: Durability is of no use to a test database: without fsync the schema and the trials are written at once
FAST_SETTINGS = ("fsync=off", "synchronous_commit=off", "full_page_writes=off")


def pgserver_install() -> Path:
    """The ``pginstall`` folder of the ``pgserver`` package, found without importing it (its import creates a
    runtime folder and a lock file for its own server registry)."""
    spec = importlib.util.find_spec("pgserver")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("pgserver is not installed: pip install 'sb3-vpg[distributed]'")
    install = Path(next(iter(spec.submodule_search_locations))) / "pginstall"
    if not (install / "bin" / "postgres").is_file():
        raise FileNotFoundError(f"pgserver has no PostgreSQL binaries in {install}")
    return install


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PostgresServer:
    """
    One PostgreSQL server (``trust`` authentication, user ``postgres``) in its own temporary directory.

    :param settings: ``name=value`` server settings added to :data:`FAST_SETTINGS`
    """

    def __init__(self, settings: tuple[str, ...] = ()):
        self.settings = FAST_SETTINGS + tuple(settings)
        # As root, run as nobody (see the module docstring); otherwise as ourselves
        self.user = pwd.getpwnam("nobody") if os.geteuid() == 0 else None
        self.base = Path(tempfile.mkdtemp(prefix="sb3_vpg_pg_", dir=self._temp_root()))
        atexit.register(self.remove)  # should the session end without its fixture's teardown
        self.data = self.base / "data"
        self.log = self.base / "server.log"
        self.port = 0
        install = pgserver_install()
        if self.user is None:
            self.bin = install / "bin"
        else:
            # The same layout as in site-packages: the programs find the libraries of the wheel's pgserver.libs
            # through their rpath, $ORIGIN/../../../pgserver.libs
            self.base.chmod(0o755)
            site = self.base / "site"
            for part in ("bin", "lib", "share"):
                shutil.copytree(install / part, site / "pgserver" / "pginstall" / part, symlinks=True)
            libs = install.parent.parent / "pgserver.libs"
            if libs.is_dir():
                shutil.copytree(libs, site / "pgserver.libs", symlinks=True)
            self.bin = site / "pgserver" / "pginstall" / "bin"
        self.data.mkdir()
        self.data.chmod(0o700)
        if self.user is not None:
            os.chown(self.data, self.user.pw_uid, self.user.pw_gid)
            self.log.touch()
            os.chown(self.log, self.user.pw_uid, self.user.pw_gid)

    def _temp_root(self) -> str | None:
        """The default temporary folder, or /tmp where nobody could not reach the default (a TMPDIR of root's)."""
        if self.user is None:
            return None
        folder = Path(tempfile.gettempdir()).resolve()
        reachable = all(part.stat().st_mode & 0o001 for part in [folder, *folder.parents])
        return None if reachable else "/tmp"

    def _run(self, program: str, *args: str, timeout: float = 60) -> None:
        """Run one of PostgreSQL's programs as the server's user; its output goes to a file, not a pipe (the
        server that ``pg_ctl start`` leaves running would hold a pipe open)."""
        kwargs = {}
        if self.user is not None:
            kwargs = {"user": self.user.pw_uid, "group": self.user.pw_gid, "extra_groups": []}
        with open(self.base / f"{program}.out", "w+") as out:
            if self.user is not None:
                os.chown(out.name, self.user.pw_uid, self.user.pw_gid)
            result = subprocess.run(
                [str(self.bin / program), *args],
                cwd=self.base,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"},
                timeout=timeout,
                check=False,
                **kwargs,
            )
            out.seek(0)
            output = out.read()
        if result.returncode != 0:
            log = self.log.read_text() if self.log.is_file() else ""
            raise RuntimeError(f"{program} {' '.join(args)} exited with {result.returncode}:\n{output}\n{log[-3000:]}")

    def start(self) -> Self:
        """Create the cluster (the first time), then start the server on a free port; return self."""
        if not (self.data / "PG_VERSION").exists():
            self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync")
        options = ["-h 127.0.0.1", f"-k {self.data}"] + [f"-c {setting}" for setting in self.settings]
        for attempt in range(3):  # another program may take the free port before the server does
            self.port = free_port()
            try:
                self._run(
                    "pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60",
                    "-o", " ".join([*options, f"-p {self.port}"]), "start",
                )  # fmt: skip
                return self
            except RuntimeError:
                if attempt == 2:
                    raise
        return self

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``pg_ctl stop -m mode``: ``fast`` ends the sessions at once); kill it if that fails."""
        pid_file = self.data / "postmaster.pid"
        if not pid_file.exists():
            return
        try:
            self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "30", "stop")
        except (RuntimeError, subprocess.TimeoutExpired):
            if pid_file.exists():
                try:
                    os.kill(int(pid_file.read_text().split()[0]), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
                time.sleep(1)

    def remove(self) -> None:
        """Stop the server and delete its directory."""
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)

    def url(self, database: str = "postgres", driver: str = "postgresql+psycopg2") -> str:
        """The SQLAlchemy URL of ``database`` on this server."""
        return f"{driver}://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """Create the empty database ``name`` and return its URL."""
        import psycopg2

        connection = psycopg2.connect(host="127.0.0.1", port=self.port, user="postgres", dbname="postgres")
        try:
            connection.autocommit = True  # CREATE DATABASE cannot run in a transaction
            with connection.cursor() as cursor:
                cursor.execute(f'CREATE DATABASE "{name}"')
        finally:
            connection.close()
        return self.url(name)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.remove()
