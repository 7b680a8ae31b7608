"""Per-app settings (e.g. the Apdex threshold the dashboard sets): a small key/value table that
both SQL backends create with the same portable DDL and read and write with the same statements."""

from __future__ import annotations

from apitally_hub.storage.records import AppKey
from apitally_hub.storage.sql.tx import Tx

APP_SETTINGS_DDL = (
    """
CREATE TABLE app_settings (
    client_id TEXT NOT NULL, env TEXT NOT NULL, name TEXT NOT NULL, value TEXT NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (client_id, env, name)
)
""",
    "CREATE INDEX consumers_by_app_last_seen ON consumers (client_id, env, last_seen)",
)
"""The migration of the dashboard's reads (SQLite schema 5, PostgreSQL schema 4: the same
statements):
the settings table, and the index of the consumers list ordered by last sighting."""


def app_settings(tx: Tx, app: AppKey) -> dict[str, str]:
    rows = tx.execute(
        "SELECT name, value FROM app_settings WHERE client_id = ? AND env = ? ORDER BY name",
        (app.client_id, app.env),
    ).fetchall()
    return {str(name): str(value) for name, value in rows}


def put_app_setting(tx: Tx, app: AppKey, name: str, value: str, now: float, keep_existing: bool) -> str:
    conflict = (
        "DO NOTHING"
        if keep_existing
        else "DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at"
    )
    tx.execute(
        "INSERT INTO app_settings (client_id, env, name, value, updated_at) VALUES (?, ?, ?, ?, ?)"
        f" ON CONFLICT (client_id, env, name) {conflict}",
        (app.client_id, app.env, name, value, now),
    )
    row = tx.execute(
        "SELECT value FROM app_settings WHERE client_id = ? AND env = ? AND name = ?",
        (app.client_id, app.env, name),
    ).fetchone()
    return str(row[0])


def delete_app_setting(tx: Tx, app: AppKey, name: str) -> None:
    tx.execute(
        "DELETE FROM app_settings WHERE client_id = ? AND env = ? AND name = ?",
        (app.client_id, app.env, name),
    )
