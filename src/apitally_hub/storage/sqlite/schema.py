"""The database schema: a ``schema_version`` table and an ordered list of migrations.

``MIGRATIONS[i]`` upgrades a database from version ``i`` to ``i + 1``. :func:`migrate` applies the
missing ones, each in its own transaction together with the version bump, so running it again
is a no-op. Never edit a released migration; append a new one.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Callable

_logger = logging.getLogger(__name__)

_V1 = """
CREATE TABLE messages (
    client_id TEXT NOT NULL, message_uuid TEXT NOT NULL, kind TEXT NOT NULL, env TEXT NOT NULL,
    instance_uuid TEXT, received_at REAL NOT NULL, body BLOB NOT NULL,
    PRIMARY KEY (client_id, message_uuid)
);
CREATE INDEX messages_received_at ON messages (received_at);

CREATE TABLE instances (
    client_id TEXT NOT NULL, env TEXT NOT NULL, instance_uuid TEXT NOT NULL,
    first_seen REAL NOT NULL, last_seen REAL NOT NULL,
    startup_at REAL, last_sync_at REAL, last_sync_ts REAL, sync_interval REAL,
    syncs INTEGER NOT NULL DEFAULT 0,
    client TEXT, versions TEXT, paths TEXT, openapi TEXT,
    cpu_percent REAL, memory_rss INTEGER,
    PRIMARY KEY (client_id, env, instance_uuid)
);

CREATE TABLE request_counts (
    client_id TEXT NOT NULL, env TEXT NOT NULL, minute INTEGER NOT NULL, instance_uuid TEXT NOT NULL,
    consumer TEXT NOT NULL, method TEXT NOT NULL, path TEXT NOT NULL, status_code INTEGER NOT NULL,
    request_count INTEGER NOT NULL, request_size_sum INTEGER NOT NULL, response_size_sum INTEGER NOT NULL,
    response_times TEXT NOT NULL, request_sizes TEXT NOT NULL, response_sizes TEXT NOT NULL,
    PRIMARY KEY (client_id, env, minute, instance_uuid, consumer, method, path, status_code)
) WITHOUT ROWID;
CREATE INDEX request_counts_minute ON request_counts (minute);

CREATE TABLE validation_errors (
    client_id TEXT NOT NULL, env TEXT NOT NULL, minute INTEGER NOT NULL, instance_uuid TEXT NOT NULL,
    consumer TEXT NOT NULL, method TEXT NOT NULL, path TEXT NOT NULL,
    loc TEXT NOT NULL, msg TEXT NOT NULL, type TEXT NOT NULL, error_count INTEGER NOT NULL,
    PRIMARY KEY (client_id, env, minute, instance_uuid, consumer, method, path, loc, msg, type)
) WITHOUT ROWID;
CREATE INDEX validation_errors_minute ON validation_errors (minute);

CREATE TABLE server_errors (
    client_id TEXT NOT NULL, env TEXT NOT NULL, minute INTEGER NOT NULL, instance_uuid TEXT NOT NULL,
    error_hash TEXT NOT NULL, consumer TEXT NOT NULL, method TEXT NOT NULL, path TEXT NOT NULL,
    type TEXT NOT NULL, msg TEXT NOT NULL, traceback TEXT NOT NULL, sentry_event_id TEXT,
    error_count INTEGER NOT NULL,
    PRIMARY KEY (client_id, env, minute, instance_uuid, error_hash)
);
CREATE INDEX server_errors_minute ON server_errors (minute);

CREATE TABLE consumers (
    client_id TEXT NOT NULL, env TEXT NOT NULL, identifier TEXT NOT NULL,
    name TEXT, group_name TEXT, first_seen REAL NOT NULL, last_seen REAL NOT NULL,
    PRIMARY KEY (client_id, env, identifier)
);
CREATE INDEX consumers_last_seen ON consumers (last_seen);

CREATE TABLE consumer_history (
    id INTEGER PRIMARY KEY, client_id TEXT NOT NULL, env TEXT NOT NULL, identifier TEXT NOT NULL,
    name TEXT, group_name TEXT, changed_at REAL NOT NULL
);
CREATE INDEX consumer_history_key ON consumer_history (client_id, env, identifier);
CREATE INDEX consumer_history_changed_at ON consumer_history (changed_at);

CREATE TABLE log_files (
    client_id TEXT NOT NULL, file_uuid TEXT NOT NULL, env TEXT NOT NULL, received_at REAL NOT NULL,
    line_count INTEGER NOT NULL, compressed BLOB NOT NULL,
    PRIMARY KEY (client_id, file_uuid)
);
CREATE INDEX log_files_received_at ON log_files (received_at);

CREATE TABLE request_log (
    id INTEGER PRIMARY KEY, client_id TEXT NOT NULL, env TEXT NOT NULL, file_uuid TEXT NOT NULL,
    request_uuid TEXT NOT NULL, timestamp REAL NOT NULL, method TEXT NOT NULL, path TEXT,
    url TEXT NOT NULL, status_code INTEGER NOT NULL, response_time REAL NOT NULL, consumer TEXT,
    request_size INTEGER, response_size INTEGER, trace_id TEXT, exception_type TEXT, item TEXT NOT NULL,
    UNIQUE (client_id, request_uuid)
);
CREATE INDEX request_log_app_time ON request_log (client_id, env, timestamp);
CREATE INDEX request_log_timestamp ON request_log (timestamp);

CREATE TABLE rejections (
    id INTEGER PRIMARY KEY, received_at REAL NOT NULL, client_id TEXT NOT NULL, env TEXT NOT NULL,
    endpoint TEXT NOT NULL, status_code INTEGER NOT NULL, detail TEXT NOT NULL
);
CREATE INDEX rejections_received_at ON rejections (received_at);
"""


def _v1_initial(conn: sqlite3.Connection) -> None:
    for statement in _V1.split(";"):
        if statement.strip():
            conn.execute(statement)


Migration = Callable[[sqlite3.Connection], None]

MIGRATIONS: tuple[Migration, ...] = (_v1_initial,)
"""Ordered migrations; the schema version is the number applied."""

SCHEMA_VERSION = len(MIGRATIONS)


def current_version(conn: sqlite3.Connection) -> int:
    """The schema version of the database behind ``conn`` (0 for an empty database)."""
    exists = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
    ).fetchone()
    if exists is None:
        return 0
    row = conn.execute("SELECT version FROM schema_version").fetchone()
    return int(row[0]) if row is not None else 0


def migrate(conn: sqlite3.Connection, migrations: tuple[Migration, ...] = MIGRATIONS) -> int:
    """Apply the pending migrations (``conn`` in autocommit mode); returns the resulting version."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        if conn.execute("SELECT COUNT(*) FROM schema_version").fetchone()[0] == 0:
            conn.execute("INSERT INTO schema_version (version) VALUES (0)")
        version = current_version(conn)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    if version > len(migrations):
        raise RuntimeError(
            f"database schema version {version} is newer than this hub supports ({len(migrations)})"
        )
    for target, migration in enumerate(migrations[version:], start=version + 1):
        conn.execute("BEGIN IMMEDIATE")
        try:
            if current_version(conn) >= target:  # another process migrated meanwhile
                conn.execute("COMMIT")
                continue
            migration(conn)
            conn.execute("UPDATE schema_version SET version = ?", (target,))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        _logger.info("Migrated hub database to schema version %d", target)
    return current_version(conn)


def _merge_bins_sql(existing: str | None, incoming: str | None) -> str:
    """SQL function ``merge_bins(a, b)``: add two JSON histograms (``{"<int>": count}``)."""
    merged: dict[int, int] = {}
    for text in (existing, incoming):
        if text:
            for key, count in json.loads(text).items():
                merged[int(key)] = merged.get(int(key), 0) + int(count)
    return json.dumps({str(k): merged[k] for k in sorted(merged)}, separators=(",", ":"))


def register_functions(conn: sqlite3.Connection) -> None:
    conn.create_function("merge_bins", 2, _merge_bins_sql, deterministic=True)
