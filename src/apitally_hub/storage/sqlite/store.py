"""The embedded default backend: one SQLite file in WAL mode.

One write connection guarded by a lock runs every write in a ``BEGIN IMMEDIATE`` transaction
(which also serialises writers of other processes on the same file); reads use a small pool of
read-only connections, which WAL lets run alongside the writer.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from apitally_hub.storage.records import StoreUnavailable
from apitally_hub.storage.sql.dialect import SQLITE
from apitally_hub.storage.sql.store import SQLStorage
from apitally_hub.storage.sql.tx import Tx
from apitally_hub.storage.sqlite.schema import current_version, migrate, register_functions

_logger = logging.getLogger(__name__)

T = TypeVar("T")

BUSY_TIMEOUT_MS = 10_000
WRITE_LOCK_POLL = 0.001
"""How often a writer asks again for a write lock another process holds. SQLite's own busy
handler backs off to 100 ms between tries, so it would rarely catch the short gap a folding
process leaves between its applies; asking every millisecond does."""


class FairLock:
    """A lock granted in arrival order. ``threading.Lock`` is not: a thread that releases it and
    asks again at once (the folding worker, chunk after chunk) usually wins over threads already
    waiting (ingest), which could then wait for the whole backlog. Here each waiter takes a
    ticket, so an ingest commit waits for at most the writes queued before it."""

    def __init__(self) -> None:
        self._condition = threading.Condition(threading.Lock())
        self._next_ticket = 0
        self._serving = 0

    def __enter__(self) -> None:
        with self._condition:
            ticket = self._next_ticket
            self._next_ticket += 1
            while ticket != self._serving:
                self._condition.wait()

    def __exit__(self, *exc: object) -> None:
        with self._condition:
            self._serving += 1
            self._condition.notify_all()


class SQLiteStorage(SQLStorage):
    dialect = SQLITE
    fold_pause_seconds = 0.005

    def __init__(self, path: str | Path, *, read_pool_size: int = 4) -> None:
        self.path = Path(path)
        self.url = str(self.path)
        self._read_pool_size = read_pool_size
        self._write_lock = FairLock()
        self._pool_lock = threading.Lock()
        self._writer: sqlite3.Connection | None = None
        self._idle_readers: list[sqlite3.Connection] = []
        self._all_readers: list[sqlite3.Connection] = []
        self._closed = False

    # -- lifecycle ----------------------------------------------------------------------------

    def open(self) -> int:
        """Create the file if needed, enable WAL and run pending migrations; returns the schema version."""
        if self._writer is not None:
            raise RuntimeError("database is already open")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = self._connect()
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            with self._write_lock:
                version = migrate(conn)
            # from now on the writer asks for the write lock itself (see _begin_immediate); its
            # statements inside a transaction never wait
            conn.execute("PRAGMA busy_timeout=0")
        except BaseException:
            conn.close()
            raise
        self._writer = conn
        self._closed = False
        return version

    def close(self) -> None:
        self._closed = True
        with self._write_lock:
            if self._writer is not None:
                self._writer.close()
                self._writer = None
        with self._pool_lock:
            for conn in self._all_readers:
                conn.close()
            self._all_readers.clear()
            self._idle_readers.clear()

    def schema_version(self) -> int:
        return self.read(lambda tx: current_version(tx))  # type: ignore[arg-type]

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=10.0)
        conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        register_functions(conn)
        return conn

    # -- transactions -------------------------------------------------------------------------

    def write(self, work: Callable[[Tx], T]) -> T:
        with self._write_lock:
            conn = self._writer
            if conn is None:
                raise RuntimeError("database is not open")
            self._begin_immediate(conn)
            try:
                result = work(conn)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return result

    def _begin_immediate(self, conn: sqlite3.Connection) -> None:
        """``BEGIN IMMEDIATE``, asking again every millisecond while another process holds the
        write lock, for at most the busy timeout (then the store is unavailable: a 503)."""
        deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
        while True:
            try:
                conn.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
                if time.monotonic() > deadline:  # another process held the write lock too long
                    raise StoreUnavailable(f"{self.url}: {exc}") from exc
                time.sleep(WRITE_LOCK_POLL)

    def read(self, work: Callable[[Tx], T]) -> T:
        conn = self._acquire_reader()
        try:
            conn.execute("BEGIN")
            try:
                return work(conn)
            finally:
                conn.execute("COMMIT")
        finally:
            self._release_reader(conn)

    def _acquire_reader(self) -> sqlite3.Connection:
        with self._pool_lock:
            if self._closed:
                raise RuntimeError("database is closed")
            if self._idle_readers:
                return self._idle_readers.pop()
            conn = self._connect()
            conn.execute("PRAGMA query_only=ON")
            self._all_readers.append(conn)
            return conn

    def _release_reader(self, conn: sqlite3.Connection) -> None:
        with self._pool_lock:
            if self._closed or len(self._idle_readers) >= self._read_pool_size:
                if conn in self._all_readers:
                    self._all_readers.remove(conn)
                conn.close()
            else:
                self._idle_readers.append(conn)
