"""A throwaway PostgreSQL cluster for tests and benchmarks: ``initdb`` into a temporary directory,
the server on a free loopback port (and a unix socket in that directory), removed on stop::

    with PostgresCluster() as cluster:
        url = cluster.create_database("hub")      # postgresql://apitally@127.0.0.1:PORT/hub

The binaries come from PATH or Debian's ``/usr/lib/postgresql/<version>/bin``. initdb refuses
to run as root, so as root the cluster runs as the unprivileged ``postgres`` user (created by
Debian's ``postgresql`` package), which owns the data directory.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import psycopg

USER = "apitally"

TEST_SETTINGS = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
"""For test clusters: nothing survives a crash of the machine, and nothing needs to."""


def find_binaries() -> Path:
    """The directory holding ``initdb``, ``pg_ctl`` and ``postgres``."""
    found = shutil.which("pg_ctl")
    candidates = [Path(found).resolve().parent] if found else []
    versions = glob.glob("/usr/lib/postgresql/*/bin")
    candidates += sorted((Path(p) for p in versions), key=lambda p: int(p.parent.name), reverse=True)
    for directory in candidates:
        if all((directory / name).exists() for name in ("initdb", "pg_ctl", "postgres")):
            return directory
    raise RuntimeError(
        "PostgreSQL server binaries not found (PATH, /usr/lib/postgresql/*/bin): apt-get install postgresql"
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class PostgresCluster:
    def __init__(self, settings: Mapping[str, str] | None = None) -> None:
        self.bin = find_binaries()
        self.settings = dict(TEST_SETTINGS if settings is None else settings)
        self.root: Path | None = None
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self._run_as: dict[str, Any] = {}
        if os.geteuid() == 0:
            try:
                account = pwd.getpwnam("postgres")
            except KeyError:
                message = "as root, the server runs as 'postgres': apt-get install postgresql"
                raise RuntimeError(message) from None
            self._run_as = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
            self._owner = (account.pw_uid, account.pw_gid)

    @property
    def data(self) -> Path:
        assert self.root is not None
        return self.root / "data"

    @property
    def log_file(self) -> Path:
        assert self.root is not None
        return self.root / "server.log"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{database}"

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> PostgresCluster:
        if self.root is None:
            # not under pytest's (root-only) temporary directory: the server's user must reach it
            self.root = Path(tempfile.mkdtemp(prefix="apitally-pg-", dir="/tmp"))
            if self._run_as:
                os.chown(self.root, *self._owner)
            self._run(
                [
                    self.bin / "initdb",
                    "-D",
                    self.data,
                    "-U",
                    USER,
                    "-A",
                    "trust",
                    "-E",
                    "UTF8",
                    "--no-locale",
                    "--no-sync",
                ]
            )
            self.port = free_port()
        assert self.process is None, "already running"
        options = [f"-c{key}={value}" for key, value in self.settings.items()]
        with open(self.log_file, "ab") as log:
            self.process = subprocess.Popen(
                [
                    self.bin / "postgres",
                    "-D",
                    self.data,
                    "-p",
                    str(self.port),
                    "-k",
                    str(self.root),
                    "-c",
                    "listen_addresses=127.0.0.1",
                    *options,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                **self._run_as,
            )
        self._wait_ready()
        return self

    def _run(self, argv: list[Any]) -> None:
        result = subprocess.run(argv, capture_output=True, text=True, **self._run_as)
        if result.returncode:
            raise RuntimeError(f"{argv[0]} failed: {result.stdout}{result.stderr}")

    def _wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            assert self.process is not None
            if self.process.poll() is not None:
                self.process = None
                raise RuntimeError(f"postgres exited at start: {self.log_file.read_text()[-2000:]}")
            try:
                psycopg.connect(self.url(), connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop(self, *, immediate: bool = False) -> None:
        """Stop the server (fast shutdown; ``immediate``: like a crash); the data stays for a restart."""
        if self.process is None:
            return
        self.process.send_signal(3 if immediate else 2)  # SIGQUIT: immediate, SIGINT: fast shutdown
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def destroy(self) -> None:
        """Stop the server and remove the cluster; safe twice."""
        self.stop()
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None

    def __enter__(self) -> PostgresCluster:
        try:
            return self.start()
        except BaseException:
            self.destroy()
            raise

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.destroy()

    # -- databases ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def admin(self) -> Iterator[psycopg.Connection]:
        with psycopg.connect(self.url(), autocommit=True) as conn:
            yield conn

    def create_database(self, name: str, *, template: str | None = None) -> str:
        """Create database ``name`` (a copy of ``template`` if given); returns its URL."""
        sql = f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else "")
        with self.admin() as conn:
            for attempt in range(50):
                try:
                    conn.execute(sql)  # type: ignore[arg-type]
                    break
                except psycopg.errors.ObjectInUse:  # a closed session of the template still exiting
                    if attempt == 49:
                        raise
                    self.terminate_backends(template or "template1", conn)
                    time.sleep(0.02)
        return self.url(name)

    def drop_database(self, name: str) -> None:
        with self.admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # type: ignore[arg-type]

    def terminate_backends(self, database: str, conn: psycopg.Connection | None = None) -> int:
        """End every session on ``database`` (as when the server drops connections); returns how many."""
        query = (
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = %s AND pid <> pg_backend_pid()"
        )
        if conn is not None:
            row = conn.execute(query, (database,)).fetchone()
        else:
            with self.admin() as admin:
                row = admin.execute(query, (database,)).fetchone()
        return int(row[0]) if row else 0
