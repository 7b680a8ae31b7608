"""The PostgreSQL backend: the shared SQL over psycopg 3 and two connection pools.

Writes run in ``READ COMMITTED`` transactions from one pool; reads in ``REPEATABLE READ READ
ONLY`` transactions (one snapshot for the several statements of a query) from another, so a burst
of reads never takes the connections that ingest needs. Several hub processes may share one
database: the queue's unique key deduplicates across them, claims use ``FOR UPDATE SKIP LOCKED``
and leases are rows, so no process needs to know of another.

A connection that the server dropped is discarded when it is next taken from its pool (the
pool checks it first) and the pool reconnects in the background, with backoff, so the hub
recovers by itself when the server is back. Until then calls raise
:class:`~apitally_hub.storage.records.StoreUnavailable` within ``timeout`` seconds.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import psycopg
from psycopg import errors
from psycopg_pool import ConnectionPool

from apitally_hub.storage.postgres.schema import MIGRATIONS, Migration, current_version, migrate
from apitally_hub.storage.records import RawMessage, Rejection, StoreUnavailable, WriteToken
from apitally_hub.storage.sql import write_tokens, writes
from apitally_hub.storage.sql.dialect import POSTGRES
from apitally_hub.storage.sql.store import SQLStorage
from apitally_hub.storage.sql.tx import Cursor, Tx
from apitally_hub.storage.urls import redact_url

_logger = logging.getLogger(__name__)

T = TypeVar("T")

DEADLOCK_RETRIES = 3
"""A transaction PostgreSQL aborted to break a deadlock (or a serialization failure) is run again."""

_ROLLED_BACK = (errors.TransactionRollback, errors.DeadlockDetected, errors.SerializationFailure)
"""SQLSTATE class 40: the server rolled the transaction back; running it again is safe."""


class _Tx:
    """The shared SQL's :class:`~..sql.tx.Tx` over a psycopg connection."""

    __slots__ = ("_conn",)

    def __init__(self, conn: psycopg.Connection) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        return self._conn.execute(POSTGRES.sql(sql), params)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> Cursor:
        cursor = self._conn.cursor()
        cursor.executemany(POSTGRES.sql(sql), rows)  # pipelined: one round trip for all the rows
        return cursor


def _configure_writer(conn: psycopg.Connection) -> None:
    # JIT compilation costs ~100 ms per statement above its cost threshold, and these statements
    # (index range scans and small aggregates) never win it back
    conn.execute("SET jit = off")


def _configure_reader(conn: psycopg.Connection) -> None:
    _configure_writer(conn)
    conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
    conn.read_only = True


class PostgresStorage(SQLStorage):
    dialect = POSTGRES
    # an apply locks rows, not the store: bigger ones fold twice as many syncs per second
    fold_chunk_items = 10_000
    fold_claim_limit = 500

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 4,
        read_pool_size: int = 4,
        timeout: float = 5.0,
        connect_timeout: float = 5.0,
        migrations: Sequence[Migration] = MIGRATIONS,
    ) -> None:
        """``url``: a ``postgresql://`` URL (libpq's keywords in its query, e.g. ``?sslmode=require``).
        ``timeout``: how long a call waits for a connection before :class:`StoreUnavailable`.
        ``migrations``: the schema to bring the database to (tests make older versions with it)."""
        self._conninfo = url
        self.url = redact_url(url)
        self._pool_size = pool_size
        self._read_pool_size = read_pool_size
        self._timeout = timeout
        self._connect_kwargs: dict[str, Any] = {
            "autocommit": True,
            "connect_timeout": max(1, round(connect_timeout)),
            "application_name": "apitally-hub",
        }
        self._migrations = tuple(migrations)
        self._writer: ConnectionPool | None = None
        self._reader: ConnectionPool | None = None

    # -- lifecycle ----------------------------------------------------------------------------

    def open(self) -> int:
        """Connect, run pending migrations (under an advisory lock) and fill the pools; returns the
        schema version."""
        if self._writer is not None:
            raise RuntimeError("database is already open")
        try:
            with psycopg.connect(self._conninfo, **self._connect_kwargs) as conn:
                version = migrate(conn, self._migrations)
        except psycopg.OperationalError as exc:
            raise StoreUnavailable(f"cannot connect to {self.url}: {exc}") from exc
        self._writer = self._pool("apitally-hub-writes", self._pool_size, _configure_writer)
        self._reader = self._pool("apitally-hub-reads", self._read_pool_size, _configure_reader)
        return version

    def _pool(self, name: str, size: int, configure: Callable[[psycopg.Connection], None]) -> ConnectionPool:
        pool: ConnectionPool = ConnectionPool(
            self._conninfo,
            kwargs=self._connect_kwargs,
            min_size=1,
            max_size=max(1, size),
            open=False,
            name=name,
            configure=configure,
            check=ConnectionPool.check_connection,
            timeout=self._timeout,
            reconnect_timeout=60.0,
        )
        pool.open(wait=False)
        return pool

    def close(self) -> None:
        for pool in (self._writer, self._reader):
            if pool is not None:
                pool.close()
        self._writer = self._reader = None

    # -- single statements, in autocommit (no BEGIN/COMMIT round trips on the ingest path) -----

    def enqueue(self, message: RawMessage) -> bool:
        return self._run(self._writer, lambda conn: writes.enqueue(_Tx(conn), message), transaction=False)

    def record_rejection(self, rejection: Rejection) -> None:
        self._run(self._writer, lambda conn: writes.record_rejection(_Tx(conn), rejection), transaction=False)

    def app_for_write_token(self, token: str) -> str | None:
        if not WriteToken.is_well_formed(token):
            return None
        return self._run(
            self._reader, lambda conn: write_tokens.app_for_write_token(_Tx(conn), token), transaction=False
        )

    def schema_version(self) -> int:
        return self._run(self._reader, lambda conn: current_version(conn))

    # -- transactions -------------------------------------------------------------------------

    def write(self, work: Callable[[Tx], T]) -> T:
        for attempt in range(1, DEADLOCK_RETRIES + 1):
            try:
                return self._run(self._writer, lambda conn: work(_Tx(conn)))
            except _ROLLED_BACK as exc:  # e.g. a deadlock broken by the server: run it again
                _logger.info("The server rolled a write back (%s); attempt %d", exc.sqlstate, attempt)
                last = exc
        raise StoreUnavailable(f"{self.url}: write rolled back {DEADLOCK_RETRIES} times: {last}") from last

    def read(self, work: Callable[[Tx], T]) -> T:
        return self._run(self._reader, lambda conn: work(_Tx(conn)))

    def _run(
        self,
        pool: ConnectionPool | None,
        work: Callable[[psycopg.Connection], T],
        *,
        transaction: bool = True,
    ) -> T:
        if pool is None:
            raise RuntimeError("database is not open")
        try:
            with pool.connection() as conn:
                if not transaction:  # one statement: atomic and committed when it returns
                    return work(conn)
                with conn.transaction():
                    return work(conn)
        except _ROLLED_BACK:
            raise
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            # the server went away, a connection broke, or none was free within the timeout
            raise StoreUnavailable(f"{self.url}: {type(exc).__name__}: {exc}") from exc
