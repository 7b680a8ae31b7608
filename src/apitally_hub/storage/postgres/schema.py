"""The PostgreSQL schema: a ``schema_version`` table and an ordered list of migrations.

``MIGRATIONS[i]`` upgrades a database from version ``i`` to ``i + 1``; :func:`migrate` applies the
missing ones, each in its own transaction together with the version bump, while holding a
session advisory lock, so hub processes starting at once against one database never race (the
ones that wait find the work done). Never edit a released migration; append a new one — e.g.
``statements(SHARED_DDL)`` for tables whose SQL lives in :mod:`..sql` (portable DDL, as the
alerting tables; :meth:`~..sql.dialect.Dialect.ddl` names types that differ).

Tables and columns are those of SQLite's schema 7 (the shared SQL reads and writes both), with
PostgreSQL types: ``BIGINT`` counters and buckets, ``DOUBLE PRECISION`` epoch seconds, ``BYTEA``
bodies, ``JSONB`` histogram bins (``{"<lower edge>": count}``, merged by ``merge_bins``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

import psycopg

from apitally_hub.storage.records import MAX_STORED_COUNT
from apitally_hub.storage.sql import (
    consumer_overrides,
    endpoint_settings,
    group_traffic,
    otlp_series,
    write_tokens,
)
from apitally_hub.storage.sql.alerts_schema import ALERTING_DDL
from apitally_hub.storage.sql.app_settings import APP_SETTINGS_DDL
from apitally_hub.storage.sql.apps import APPS_DDL
from apitally_hub.storage.sql.dialect import POSTGRES
from apitally_hub.storage.sql.request_log_schema import REQUEST_LOG_CLIENT_IP_DDL

_logger = logging.getLogger(__name__)

Migration = Callable[[psycopg.Connection], None]

MIGRATION_LOCK = int.from_bytes(b"apitally", "big")
"""The key of the advisory lock held while migrating (any 64-bit number no one else uses)."""


def script(sql: str) -> Migration:
    """A migration that runs ``sql`` (statements separated by ``;`` at the end of a line)."""

    def run(conn: psycopg.Connection) -> None:
        for statement in sql.split(";\n"):
            if statement.strip():
                conn.execute(statement)

    return run


_V1_TABLES = f"""
CREATE TABLE queue (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, client_id TEXT NOT NULL, env TEXT NOT NULL,
    kind TEXT NOT NULL, message_uuid TEXT NOT NULL, instance_uuid TEXT,
    received_at DOUBLE PRECISION NOT NULL, encoding TEXT NOT NULL, body BYTEA NOT NULL,
    body_size BIGINT NOT NULL, item_count BIGINT NOT NULL, fold_offset BIGINT NOT NULL DEFAULT 0,
    claimed_by TEXT, claimed_until DOUBLE PRECISION, folded_at DOUBLE PRECISION, fold_error TEXT,
    UNIQUE (client_id, kind, message_uuid)
);
-- bodies are compressed by ingest already: store them as they are
ALTER TABLE queue ALTER COLUMN body SET STORAGE EXTERNAL;

CREATE TABLE endpoint_traffic (
    client_id TEXT NOT NULL, env TEXT NOT NULL, resolution INTEGER NOT NULL, bucket BIGINT NOT NULL,
    method TEXT NOT NULL, path TEXT NOT NULL, status_code INTEGER NOT NULL,
    request_count BIGINT NOT NULL, request_size_sum BIGINT NOT NULL, response_size_sum BIGINT NOT NULL,
    response_times JSONB NOT NULL, request_sizes JSONB NOT NULL, response_sizes JSONB NOT NULL,
    PRIMARY KEY (client_id, env, resolution, bucket, method, path, status_code)
);

CREATE TABLE app_traffic (
    client_id TEXT NOT NULL, env TEXT NOT NULL, resolution INTEGER NOT NULL, bucket BIGINT NOT NULL,
    status_code INTEGER NOT NULL,
    request_count BIGINT NOT NULL, request_size_sum BIGINT NOT NULL, response_size_sum BIGINT NOT NULL,
    response_times JSONB NOT NULL, request_sizes JSONB NOT NULL, response_sizes JSONB NOT NULL,
    PRIMARY KEY (client_id, env, resolution, bucket, status_code)
);

CREATE TABLE consumer_traffic (
    client_id TEXT NOT NULL, env TEXT NOT NULL, resolution INTEGER NOT NULL, bucket BIGINT NOT NULL,
    consumer TEXT NOT NULL, method TEXT NOT NULL, path TEXT NOT NULL, status_code INTEGER NOT NULL,
    request_count BIGINT NOT NULL, request_size_sum BIGINT NOT NULL, response_size_sum BIGINT NOT NULL,
    response_times JSONB NOT NULL,
    PRIMARY KEY (client_id, env, resolution, bucket, consumer, method, path, status_code)
);

CREATE TABLE validation_errors (
    client_id TEXT NOT NULL, env TEXT NOT NULL, resolution INTEGER NOT NULL, bucket BIGINT NOT NULL,
    consumer TEXT NOT NULL, method TEXT NOT NULL, path TEXT NOT NULL,
    loc TEXT NOT NULL, msg TEXT NOT NULL, type TEXT NOT NULL, error_count BIGINT NOT NULL,
    PRIMARY KEY (client_id, env, resolution, bucket, consumer, method, path, loc, msg, type)
);

CREATE TABLE server_error_groups (
    client_id TEXT NOT NULL, env TEXT NOT NULL, error_hash TEXT NOT NULL, method TEXT NOT NULL,
    path TEXT NOT NULL, type TEXT NOT NULL, msg TEXT NOT NULL, traceback TEXT NOT NULL,
    sentry_event_id TEXT, first_seen DOUBLE PRECISION NOT NULL, last_seen DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (client_id, env, error_hash)
);

CREATE TABLE server_errors (
    client_id TEXT NOT NULL, env TEXT NOT NULL, resolution INTEGER NOT NULL, bucket BIGINT NOT NULL,
    error_hash TEXT NOT NULL, consumer TEXT NOT NULL, error_count BIGINT NOT NULL,
    PRIMARY KEY (client_id, env, resolution, bucket, error_hash, consumer)
);

CREATE TABLE heartbeats (
    client_id TEXT NOT NULL, env TEXT NOT NULL, minute BIGINT NOT NULL, syncs BIGINT NOT NULL,
    PRIMARY KEY (client_id, env, minute)
);

CREATE TABLE instances (
    client_id TEXT NOT NULL, env TEXT NOT NULL, instance_uuid TEXT NOT NULL,
    first_seen DOUBLE PRECISION NOT NULL, last_seen DOUBLE PRECISION NOT NULL,
    startup_at DOUBLE PRECISION, last_sync_at DOUBLE PRECISION, last_sync_ts DOUBLE PRECISION,
    sync_interval DOUBLE PRECISION, syncs BIGINT NOT NULL DEFAULT 0,
    client TEXT, versions TEXT, paths TEXT, openapi TEXT,
    cpu_percent DOUBLE PRECISION, memory_rss BIGINT,
    PRIMARY KEY (client_id, env, instance_uuid)
);

CREATE TABLE consumers (
    client_id TEXT NOT NULL, env TEXT NOT NULL, identifier TEXT NOT NULL,
    name TEXT, group_name TEXT, first_seen DOUBLE PRECISION NOT NULL, last_seen DOUBLE PRECISION NOT NULL,
    named_at DOUBLE PRECISION,
    PRIMARY KEY (client_id, env, identifier)
);

CREATE TABLE consumer_history (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, client_id TEXT NOT NULL, env TEXT NOT NULL,
    identifier TEXT NOT NULL, name TEXT, group_name TEXT, changed_at DOUBLE PRECISION NOT NULL
);

CREATE TABLE request_log (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, client_id TEXT NOT NULL, env TEXT NOT NULL,
    file_uuid TEXT NOT NULL, request_uuid TEXT NOT NULL, timestamp DOUBLE PRECISION NOT NULL,
    method TEXT NOT NULL, path TEXT, url TEXT NOT NULL, status_code INTEGER NOT NULL,
    response_time DOUBLE PRECISION NOT NULL, consumer TEXT, request_size BIGINT, response_size BIGINT,
    trace_id TEXT, exception_type TEXT, item TEXT NOT NULL,
    UNIQUE (client_id, env, request_uuid)
);

CREATE TABLE rejections (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, received_at DOUBLE PRECISION NOT NULL,
    client_id TEXT NOT NULL, env TEXT NOT NULL, endpoint TEXT NOT NULL, status_code INTEGER NOT NULL,
    detail TEXT NOT NULL
);

CREATE TABLE leases (name TEXT PRIMARY KEY, holder TEXT NOT NULL, expires_at DOUBLE PRECISION NOT NULL);

-- merge_bins(a, b): the sum of two histograms, each count capped at 2**53 (as in SQLite)
CREATE FUNCTION merge_bins(a JSONB, b JSONB) RETURNS JSONB
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(jsonb_object_agg(key, total), '{{}}'::jsonb) FROM (
        SELECT key, LEAST(SUM(value::numeric), {MAX_STORED_COUNT}) AS total FROM (
            SELECT key, value FROM jsonb_each_text(coalesce(a, '{{}}'::jsonb))
            UNION ALL
            SELECT key, value FROM jsonb_each_text(coalesce(b, '{{}}'::jsonb))
        ) AS both_bins GROUP BY key
    ) AS merged
$$;
"""

_V2_INDEXES = """
CREATE INDEX queue_pending ON queue (id) WHERE folded_at IS NULL;
CREATE INDEX queue_received_at ON queue (received_at);
CREATE INDEX consumer_traffic_consumer ON consumer_traffic (client_id, env, consumer, resolution, bucket);
CREATE INDEX consumers_last_seen ON consumers (last_seen);
CREATE INDEX consumers_group ON consumers (client_id, env, group_name) WHERE group_name IS NOT NULL;
CREATE INDEX consumer_history_key ON consumer_history (client_id, env, identifier);
CREATE INDEX consumer_history_changed_at ON consumer_history (changed_at);
CREATE INDEX instances_last_seen ON instances (last_seen);
CREATE INDEX server_error_groups_last_seen ON server_error_groups (last_seen);
CREATE INDEX request_log_by_app ON request_log (client_id, env, timestamp);
CREATE INDEX request_log_by_time ON request_log (timestamp);
CREATE INDEX rejections_app ON rejections (client_id, env, received_at);
CREATE INDEX rejections_received_at ON rejections (received_at);
"""


def statements(ddl: Sequence[str]) -> Migration:
    """A migration that runs each of ``ddl`` (e.g. portable DDL shared with SQLite)."""

    def run(conn: psycopg.Connection) -> None:
        for statement in ddl:
            conn.execute(statement)

    return run


def _v9_otlp(conn: psycopg.Connection) -> None:
    """Schema 9 (SQLite's 10): OTLP ingest's write tokens (a first one for each app of the
    registry) and the last point of each cumulative series."""
    statements((*write_tokens.DDL, *otlp_series.ddl(POSTGRES)))(conn)
    client_ids = [str(row[0]) for row in conn.execute("SELECT client_id FROM apps ORDER BY client_id")]
    write_tokens.backfill(
        lambda sql, params: conn.execute(POSTGRES.sql(sql), params), client_ids, time.time()
    )


MIGRATIONS: tuple[Migration, ...] = (
    script(_V1_TABLES),  # 1: the tables, keys and merge_bins
    script(_V2_INDEXES),  # 2: the indexes that the queue, pruning and reads need to stay fast
    statements(ALERTING_DDL),  # 3: alerting (portable DDL, SQLite's schema 3)
    statements(APP_SETTINGS_DDL),  # 4: the dashboard's settings and consumer list (SQLite's schema 5)
    statements(group_traffic.migration(POSTGRES)),  # 5: traffic per consumer group (SQLite's schema 6)
    statements(APPS_DDL),  # 6: the apps registry (SQLite's schema 7)
    # 7: consumers named in the dashboard, settings per endpoint (SQLite's 8)
    statements((*consumer_overrides.MIGRATION, *endpoint_settings.DDL)),
    statements(REQUEST_LOG_CLIENT_IP_DDL),  # 8: the request log's client address (SQLite's 9)
    _v9_otlp,  # 9: write tokens and cumulative series of OTLP ingest (SQLite's 10)
)
"""Ordered migrations; the schema version is the number applied. Append only."""

SCHEMA_VERSION = len(MIGRATIONS)


def current_version(conn: psycopg.Connection) -> int:
    """The schema version of the database behind ``conn`` (0 for an empty database)."""
    if conn.execute("SELECT to_regclass('schema_version')").fetchone() == (None,):
        return 0
    row = conn.execute("SELECT version FROM schema_version").fetchone()
    return int(row[0]) if row is not None else 0


def migrate(conn: psycopg.Connection, migrations: Sequence[Migration] = MIGRATIONS) -> int:
    """Apply the pending migrations (``conn`` in autocommit mode); returns the resulting version."""
    conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
    try:
        with conn.transaction():
            conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)")
            if conn.execute("SELECT COUNT(*) FROM schema_version").fetchone() == (0,):
                conn.execute("INSERT INTO schema_version (version) VALUES (0)")
        version = current_version(conn)
        if version > len(migrations):
            raise RuntimeError(
                f"database schema version {version} is newer than this hub supports ({len(migrations)})"
            )
        for target, migration in enumerate(migrations[version:], start=version + 1):
            with conn.transaction():
                migration(conn)
                conn.execute("UPDATE schema_version SET version = %s", (target,))
            _logger.info("Migrated hub database to schema version %d", target)
        return current_version(conn)
    finally:
        if not conn.broken:
            conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))
