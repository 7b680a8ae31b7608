"""The SQLite schema: a ``schema_version`` table and an ordered list of migrations.

``MIGRATIONS[i]`` upgrades a database from version ``i`` to ``i + 1``. :func:`migrate` applies the
missing ones, each in its own transaction together with the version bump, so running it again
is a no-op. Never edit a released migration; append a new one.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
import zlib
from collections.abc import Callable

from apitally_hub.storage.records import MAX_STORED_COUNT, error_group_hash
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
from apitally_hub.storage.sql.dialect import SQLITE
from apitally_hub.storage.sql.request_log_schema import REQUEST_LOG_CLIENT_IP_DDL

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

_V2 = """
CREATE TABLE queue (
    id INTEGER PRIMARY KEY, client_id TEXT NOT NULL, env TEXT NOT NULL, kind TEXT NOT NULL,
    message_uuid TEXT NOT NULL, instance_uuid TEXT, received_at REAL NOT NULL, encoding TEXT NOT NULL,
    body BLOB NOT NULL, body_size INTEGER NOT NULL, item_count INTEGER NOT NULL,
    fold_offset INTEGER NOT NULL DEFAULT 0, claimed_by TEXT, claimed_until REAL, folded_at REAL,
    fold_error TEXT,
    UNIQUE (client_id, kind, message_uuid)
);
CREATE INDEX queue_pending ON queue (id) WHERE folded_at IS NULL;
CREATE INDEX queue_received_at ON queue (received_at);

CREATE TABLE endpoint_traffic (
    client_id TEXT NOT NULL, env TEXT NOT NULL, resolution INTEGER NOT NULL, bucket INTEGER NOT NULL,
    method TEXT NOT NULL, path TEXT NOT NULL, status_code INTEGER NOT NULL,
    request_count INTEGER NOT NULL, request_size_sum INTEGER NOT NULL, response_size_sum INTEGER NOT NULL,
    response_times TEXT NOT NULL, request_sizes TEXT NOT NULL, response_sizes TEXT NOT NULL,
    PRIMARY KEY (client_id, env, resolution, bucket, method, path, status_code)
) WITHOUT ROWID;

CREATE TABLE consumer_traffic (
    client_id TEXT NOT NULL, env TEXT NOT NULL, resolution INTEGER NOT NULL, bucket INTEGER NOT NULL,
    consumer TEXT NOT NULL, method TEXT NOT NULL, path TEXT NOT NULL, status_code INTEGER NOT NULL,
    request_count INTEGER NOT NULL, request_size_sum INTEGER NOT NULL, response_size_sum INTEGER NOT NULL,
    response_times TEXT NOT NULL,
    PRIMARY KEY (client_id, env, resolution, bucket, consumer, method, path, status_code)
) WITHOUT ROWID;
CREATE INDEX consumer_traffic_consumer ON consumer_traffic (client_id, env, consumer, resolution, bucket);

CREATE TABLE validation_errors (
    client_id TEXT NOT NULL, env TEXT NOT NULL, resolution INTEGER NOT NULL, bucket INTEGER NOT NULL,
    consumer TEXT NOT NULL, method TEXT NOT NULL, path TEXT NOT NULL,
    loc TEXT NOT NULL, msg TEXT NOT NULL, type TEXT NOT NULL, error_count INTEGER NOT NULL,
    PRIMARY KEY (client_id, env, resolution, bucket, consumer, method, path, loc, msg, type)
) WITHOUT ROWID;

CREATE TABLE server_error_groups (
    client_id TEXT NOT NULL, env TEXT NOT NULL, error_hash TEXT NOT NULL, method TEXT NOT NULL,
    path TEXT NOT NULL, type TEXT NOT NULL, msg TEXT NOT NULL, traceback TEXT NOT NULL, sentry_event_id TEXT,
    first_seen REAL NOT NULL, last_seen REAL NOT NULL,
    PRIMARY KEY (client_id, env, error_hash)
);

CREATE TABLE server_errors (
    client_id TEXT NOT NULL, env TEXT NOT NULL, resolution INTEGER NOT NULL, bucket INTEGER NOT NULL,
    error_hash TEXT NOT NULL, consumer TEXT NOT NULL, error_count INTEGER NOT NULL,
    PRIMARY KEY (client_id, env, resolution, bucket, error_hash, consumer)
) WITHOUT ROWID;

CREATE TABLE heartbeats (
    client_id TEXT NOT NULL, env TEXT NOT NULL, minute INTEGER NOT NULL, syncs INTEGER NOT NULL,
    PRIMARY KEY (client_id, env, minute)
) WITHOUT ROWID;

CREATE TABLE request_log (
    id INTEGER PRIMARY KEY, client_id TEXT NOT NULL, env TEXT NOT NULL, file_uuid TEXT NOT NULL,
    request_uuid TEXT NOT NULL, timestamp REAL NOT NULL, method TEXT NOT NULL, path TEXT,
    url TEXT NOT NULL, status_code INTEGER NOT NULL, response_time REAL NOT NULL, consumer TEXT,
    request_size INTEGER, response_size INTEGER, trace_id TEXT, exception_type TEXT, item TEXT NOT NULL,
    UNIQUE (client_id, env, request_uuid)
);
CREATE INDEX request_log_by_app ON request_log (client_id, env, timestamp);
CREATE INDEX request_log_by_time ON request_log (timestamp);

CREATE TABLE leases (name TEXT PRIMARY KEY, holder TEXT NOT NULL, expires_at REAL NOT NULL);

ALTER TABLE consumers ADD COLUMN named_at REAL;
CREATE INDEX rejections_app ON rejections (client_id, env, received_at);
"""

_V1_RENAMED = ("validation_errors", "server_errors", "request_log")

_RESOLUTIONS = (60, 3600, 86400)


def _v2_queue_and_rollups(conn: sqlite3.Connection) -> None:
    """Schema 2: the ingest queue and aggregates across instances at three resolutions.

    Version-1 data is kept: raw messages and log files move into the queue (as folded), the
    per-instance minute rows are summed into the new tables at every resolution, the request log
    is copied; then the version-1 tables go.
    """
    for table in _V1_RENAMED:
        conn.execute(f"ALTER TABLE {table} RENAME TO v1_{table}")
    for statement in _V2.split(";"):
        if statement.strip():
            conn.execute(statement)
    conn.create_function("v2_compress", 1, lambda body: zlib.compress(body, 1), deterministic=True)
    conn.create_function("v2_error_hash", 5, error_group_hash, deterministic=True)
    conn.create_aggregate("v2_merge_bins", 1, _MergeBins)  # type: ignore[arg-type]
    conn.execute(
        "INSERT INTO queue (client_id, env, kind, message_uuid, instance_uuid, received_at, encoding, body,"
        " body_size, item_count, fold_offset, folded_at)"
        " SELECT client_id, env, kind, message_uuid, instance_uuid, received_at, 'zlib', v2_compress(body),"
        " length(body), 0, 0, received_at FROM messages ORDER BY received_at"
    )
    conn.execute(
        "INSERT INTO queue (client_id, env, kind, message_uuid, received_at, encoding, body, body_size,"
        " item_count, fold_offset, folded_at)"
        " SELECT client_id, env, 'log', file_uuid, received_at, 'gzip', compressed, length(compressed),"
        " line_count, line_count, received_at FROM log_files ORDER BY received_at"
    )
    conn.execute(
        "INSERT INTO heartbeats (client_id, env, minute, syncs)"
        " SELECT client_id, env, CAST(json_extract(CAST(body AS TEXT), '$.timestamp') / 60 AS INTEGER) * 60,"
        " COUNT(*) FROM messages WHERE kind = 'sync' GROUP BY 1, 2, 3"
    )
    for resolution in _RESOLUTIONS:
        bucket = f"(minute / {resolution}) * {resolution}"
        conn.execute(
            "INSERT INTO endpoint_traffic SELECT client_id, env, ?, "
            + bucket
            + ", method, path, status_code,"
            " SUM(request_count), SUM(request_size_sum), SUM(response_size_sum),"
            " v2_merge_bins(response_times),"
            " v2_merge_bins(request_sizes), v2_merge_bins(response_sizes) FROM request_counts"
            " GROUP BY client_id, env, " + bucket + ", method, path, status_code",
            (resolution,),
        )
        conn.execute(
            "INSERT INTO consumer_traffic SELECT client_id, env, ?, " + bucket + ", consumer, method, path,"
            " status_code, SUM(request_count), SUM(request_size_sum), SUM(response_size_sum),"
            " v2_merge_bins(response_times) FROM request_counts"
            " GROUP BY client_id, env, " + bucket + ", consumer, method, path, status_code",
            (resolution,),
        )
        conn.execute(
            "INSERT INTO validation_errors SELECT client_id, env, ?, "
            + bucket
            + ", consumer, method, path, loc,"
            " msg, type, SUM(error_count) FROM v1_validation_errors"
            " GROUP BY client_id, env, " + bucket + ", consumer, method, path, loc, msg, type",
            (resolution,),
        )
        conn.execute(
            "INSERT INTO server_errors SELECT client_id, env, ?, " + bucket + ","
            " v2_error_hash(method, path, type, msg, traceback), consumer, SUM(error_count)"
            " FROM v1_server_errors GROUP BY 1, 2, 3, 4, 5, 6",
            (resolution,),
        )
    conn.execute(
        "INSERT INTO server_error_groups"
        " SELECT client_id, env, v2_error_hash(method, path, type, msg, traceback),"
        " method, path, type, msg, traceback, MAX(sentry_event_id), MIN(minute), MAX(minute + 59)"
        " FROM v1_server_errors GROUP BY 1, 2, 3"
    )
    conn.execute(
        "INSERT INTO request_log (client_id, env, file_uuid, request_uuid, timestamp, method, path, url,"
        " status_code, response_time, consumer, request_size, response_size, trace_id, exception_type, item)"
        " SELECT client_id, env, file_uuid, request_uuid, timestamp, method, path, url, status_code,"
        " response_time, consumer, request_size, response_size, trace_id, exception_type, item"
        " FROM v1_request_log ORDER BY id"
    )
    conn.execute(
        "UPDATE consumers SET named_at = (SELECT MAX(changed_at) FROM consumer_history h"
        " WHERE h.client_id = consumers.client_id AND h.env = consumers.env"
        " AND h.identifier = consumers.identifier)"
    )
    for table in ("messages", "log_files", "request_counts", *(f"v1_{t}" for t in _V1_RENAMED)):
        conn.execute(f"DROP TABLE {table}")


class _MergeBins:
    def __init__(self) -> None:
        self.bins: dict[int, int] = {}

    def step(self, text: str | None) -> None:
        for key, count in json.loads(text or "{}").items():
            self.bins[int(key)] = self.bins.get(int(key), 0) + int(count)

    def finalize(self) -> str:
        return json.dumps({str(k): self.bins[k] for k in sorted(self.bins)}, separators=(",", ":"))


def _v3_alerting(conn: sqlite3.Connection) -> None:
    """Schema 3: alert channels, rules, state, history, silences, outbox and health checks
    (the portable DDL shared with PostgreSQL)."""
    for statement in ALERTING_DDL:
        conn.execute(statement)


_V4 = """
CREATE TABLE app_traffic (
    client_id TEXT NOT NULL, env TEXT NOT NULL, resolution INTEGER NOT NULL, bucket INTEGER NOT NULL,
    status_code INTEGER NOT NULL,
    request_count INTEGER NOT NULL, request_size_sum INTEGER NOT NULL, response_size_sum INTEGER NOT NULL,
    response_times TEXT NOT NULL, request_sizes TEXT NOT NULL, response_sizes TEXT NOT NULL,
    PRIMARY KEY (client_id, env, resolution, bucket, status_code)
) WITHOUT ROWID
"""


def _v4_app_traffic(conn: sqlite3.Connection) -> None:
    """Schema 4: traffic per app and status at every resolution (what app-wide charts and totals
    read: one row per status instead of one per endpoint), filled from ``endpoint_traffic``."""
    conn.execute(_V4)
    conn.create_aggregate("v4_merge_bins", 1, _CappedMergeBins)  # type: ignore[arg-type]
    conn.execute(
        "INSERT INTO app_traffic SELECT client_id, env, resolution, bucket, status_code,"
        f" min(SUM(request_count), {MAX_STORED_COUNT}), min(SUM(request_size_sum), {MAX_STORED_COUNT}),"
        f" min(SUM(response_size_sum), {MAX_STORED_COUNT}), v4_merge_bins(response_times),"
        " v4_merge_bins(request_sizes), v4_merge_bins(response_sizes) FROM endpoint_traffic"
        " GROUP BY client_id, env, resolution, bucket, status_code"
    )


class _CappedMergeBins(_MergeBins):
    def finalize(self) -> str:
        capped = {str(k): min(self.bins[k], MAX_STORED_COUNT) for k in sorted(self.bins)}
        return json.dumps(capped, separators=(",", ":"))


def _v5_app_settings(conn: sqlite3.Connection) -> None:
    """Schema 5: named settings per app (the dashboard's Apdex threshold, the session secret), and
    the consumers by app and last sighting (the dashboard's consumer list)."""
    for statement in APP_SETTINGS_DDL:
        conn.execute(statement)


def _v6_group_traffic(conn: sqlite3.Connection) -> None:
    """Schema 6: traffic per consumer group at every resolution (the groups' page), filled from
    ``consumer_traffic`` with the consumers' current groups."""
    for statement in group_traffic.migration(SQLITE):
        conn.execute(statement)


def _v7_apps(conn: sqlite3.Connection) -> None:
    """Schema 7: the apps registry (name, framework and envs by client id; portable DDL shared
    with PostgreSQL). Apps that reported before stay as they are, without a row until named."""
    for statement in APPS_DDL:
        conn.execute(statement)


def _v8_workspace(conn: sqlite3.Connection) -> None:
    """Schema 8: a consumer's name and group set in the dashboard, and settings per endpoint
    (portable DDL shared with PostgreSQL)."""
    for statement in (*consumer_overrides.MIGRATION, *endpoint_settings.DDL):
        conn.execute(statement)


def _v9_client_ip(conn: sqlite3.Connection) -> None:
    """Schema 9: the request log's client address (its filter; portable DDL shared with PostgreSQL).
    Items logged before have none."""
    for statement in REQUEST_LOG_CLIENT_IP_DDL:
        conn.execute(statement)


def _v10_otlp(conn: sqlite3.Connection) -> None:
    """Schema 10: OTLP ingest's write tokens (a first one for each app of the registry) and the
    last point of each cumulative series (portable DDL shared with PostgreSQL)."""
    for statement in (*write_tokens.DDL, *otlp_series.ddl(SQLITE)):
        conn.execute(statement)
    client_ids = [str(row[0]) for row in conn.execute("SELECT client_id FROM apps ORDER BY client_id")]
    write_tokens.backfill(conn.execute, client_ids, time.time())


MIGRATIONS: tuple[Migration, ...] = (
    _v1_initial,
    _v2_queue_and_rollups,
    _v3_alerting,
    _v4_app_traffic,
    _v5_app_settings,
    _v6_group_traffic,
    _v7_apps,
    _v8_workspace,
    _v9_client_ip,
    _v10_otlp,
)
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
    return json.dumps(
        {str(k): min(merged[k], MAX_STORED_COUNT) for k in sorted(merged)}, separators=(",", ":")
    )


class _SumBins:
    """SQL aggregate ``sum_bins(bins)``: the JSON histograms of the group's rows added into one.
    Keys stay strings (the rows' keys are canonical integers), and Python's ints never overflow."""

    def __init__(self) -> None:
        self.bins: dict[str, int] = {}

    def step(self, text: str | None) -> None:
        if text:
            bins, get = self.bins, self.bins.get
            for key, count in json.loads(text).items():
                bins[key] = get(key, 0) + count

    def finalize(self) -> str:
        return json.dumps(self.bins, separators=(",", ":"))


def register_functions(conn: sqlite3.Connection) -> None:
    """The SQL functions the shared SQL uses on SQLite (on every connection: readers too)."""
    conn.create_function("merge_bins", 2, _merge_bins_sql, deterministic=True)
    conn.create_aggregate("sum_bins", 1, _SumBins)  # type: ignore[arg-type]
