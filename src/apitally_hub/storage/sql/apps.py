"""The apps registry (``apps``: one row per client id with its name, framework and envs), and
deleting an app with everything the hub holds for it. Both SQL backends create the table with the
same portable DDL and use the same statements."""

from __future__ import annotations

import json

from apitally_hub.storage.records import AppRecord
from apitally_hub.storage.sql.tx import Tx

APPS_DDL: tuple[str, ...] = (
    """
CREATE TABLE apps (
    client_id TEXT PRIMARY KEY, name TEXT NOT NULL, framework TEXT NOT NULL, envs TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL, updated_at DOUBLE PRECISION NOT NULL
)
""",
)
"""The registry's migration (SQLite schema 7, PostgreSQL schema 6: the same statement). ``envs``
is a JSON array of env names."""

APP_DATA_TABLES: tuple[str, ...] = (
    "queue",
    "endpoint_traffic",
    "app_traffic",
    "consumer_traffic",
    "group_traffic",
    "validation_errors",
    "server_error_groups",
    "server_errors",
    "heartbeats",
    "instances",
    "consumers",
    "consumer_history",
    "request_log",
    "rejections",
    "app_settings",
    "endpoint_settings",
    "alert_channels",
    "alert_rules",
    "alert_instances",
    "alert_history",
    "alert_silences",
    "alert_outbox",
    "health_checks",
    "health_check_events",
    "write_tokens",
    "otlp_series",
    "apps",
)
"""Every table with a ``client_id`` column: what deleting an app empties of its rows (a test
holds this list to the schema)."""

_COLUMNS = "client_id, name, framework, envs, created_at, updated_at"


def _record(row: tuple[object, ...]) -> AppRecord:
    client_id, name, framework, envs, created_at, updated_at = row
    return AppRecord(
        str(client_id),
        str(name),
        str(framework),
        tuple(str(env) for env in json.loads(str(envs))),
        float(created_at),  # type: ignore[arg-type]
        float(updated_at),  # type: ignore[arg-type]
    )


def app_records(tx: Tx) -> list[AppRecord]:
    rows = tx.execute(f"SELECT {_COLUMNS} FROM apps ORDER BY client_id").fetchall()
    return [_record(tuple(row)) for row in rows]


def app_record(tx: Tx, client_id: str) -> AppRecord | None:
    row = tx.execute(f"SELECT {_COLUMNS} FROM apps WHERE client_id = ?", (client_id,)).fetchone()
    return None if row is None else _record(tuple(row))


def put_app(tx: Tx, record: AppRecord) -> None:
    tx.execute(
        f"INSERT INTO apps ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (client_id) DO UPDATE SET"
        " name = excluded.name, framework = excluded.framework, envs = excluded.envs,"
        " updated_at = excluded.updated_at",
        (
            record.client_id,
            record.name,
            record.framework,
            json.dumps(list(record.envs)),
            record.created_at,
            record.updated_at,
        ),
    )


def delete_app(tx: Tx, client_id: str) -> dict[str, int]:
    """Delete every row of ``client_id`` (all its envs) in every table; returns rows per table."""
    deleted: dict[str, int] = {}
    for table in APP_DATA_TABLES:
        count = tx.execute(f"DELETE FROM {table} WHERE client_id = ?", (client_id,)).rowcount
        if count > 0:
            deleted[table] = count
    return deleted
