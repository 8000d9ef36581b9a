"""A throwaway PostgreSQL server for the study tests: Debian's ``postgresql`` package, a data folder in a
temporary directory, listening on 127.0.0.1 at a free port (and on a Unix socket in the same folder), trust
authentication, stopped and deleted at the end.

``initdb`` and ``postgres`` refuse to run as root: as root the server runs as ``nobody`` (through ``runuser``,
else ``su``). ``start_postgres()`` raises ``PostgresUnavailable`` with the reason when the server cannot be had
(package not installed, no way to drop root), and the tests that need it skip with that reason.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

SUPERUSER = "terrasynth"
INSTALL = "apt-get install -y postgresql (Debian/Ubuntu), and pip install 'psycopg[binary]'"


class PostgresUnavailable(RuntimeError):
    """Why no PostgreSQL server could be started (the tests skip with this message)."""


def _bin_dir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).parent
    raise PostgresUnavailable(f"PostgreSQL is not installed (no initdb): {INSTALL}")


def _as_server_user(argv: list[str]) -> list[str]:
    """``argv`` run as the unprivileged user the server must run as: ourselves, or ``nobody`` when root."""
    if os.geteuid() != 0:
        return argv
    if shutil.which("runuser"):
        return ["runuser", "-u", "nobody", "--", *argv]
    if shutil.which("su"):
        return ["su", "-s", "/bin/sh", "nobody", "-c", " ".join(f"'{a}'" for a in argv)]
    raise PostgresUnavailable("running as root, and neither runuser nor su is there to run PostgreSQL as nobody")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class PostgresServer:
    """``start()`` → a server; ``url(database)`` → a SQLAlchemy URL; ``create_database()`` → a fresh database's
    URL; ``stop()`` ends the server and removes its folder."""

    def __init__(self):
        self.bin = _bin_dir()
        try:
            import psycopg  # noqa: F401
        except ImportError:
            raise PostgresUnavailable(f"the psycopg driver is not installed: {INSTALL}") from None
        # Not under pytest's tmp_path: as root that is 0700 root's, which nobody cannot enter.
        self.root = Path(tempfile.mkdtemp(prefix="terrasynth-postgres-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self.started = False

    def _run(self, argv: list[str], timeout: float) -> None:
        done = subprocess.run(_as_server_user(argv), capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise PostgresUnavailable(f"{Path(argv[0]).name} failed: {(done.stderr or done.stdout).strip()[-500:]}")

    def start(self) -> PostgresServer:
        if os.geteuid() == 0:
            shutil.chown(self.root, "nobody")
        self._run([str(self.bin / "initdb"), "-D", str(self.data), "-U", SUPERUSER, "--auth=trust", "-E", "UTF8"], 120)
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root} -c max_connections=200 -c fsync=off"
        self._run([str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "log"), "-o", options,
                   "-w", "-t", "60", "start"], 90)  # fmt: skip
        self.started = True
        return self

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        import psycopg

        name = f"study_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(f"host=127.0.0.1 port={self.port} user={SUPERUSER} dbname=postgres", autocommit=True) as c:
            c.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        if self.started:
            command = [str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "-t", "30", "stop"]
            subprocess.run(_as_server_user(command), capture_output=True, timeout=60)
            self.started = False
        deadline = time.monotonic() + 10
        while self.root.exists() and time.monotonic() < deadline:
            shutil.rmtree(self.root, ignore_errors=True)


def start_postgres() -> PostgresServer:
    server = PostgresServer()
    try:
        return server.start()
    except BaseException:
        server.stop()
        raise
