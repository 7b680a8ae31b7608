"""Settings per endpoint (``endpoint_settings``): an Apdex threshold of its own, and whether the
dashboard leaves the endpoint out (its data is kept). One row per endpoint with a setting; both SQL
backends create, read and write it with the same statements."""

from __future__ import annotations

from apitally_hub.storage.records import AppKey, EndpointSetting
from apitally_hub.storage.sql.tx import Tx

DDL: tuple[str, ...] = (
    """
CREATE TABLE endpoint_settings (
    client_id TEXT NOT NULL, env TEXT NOT NULL, method TEXT NOT NULL, path TEXT NOT NULL,
    apdex_ms INTEGER, excluded INTEGER NOT NULL, updated_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (client_id, env, method, path)
)
""",
)
"""Part of SQLite schema 8 and PostgreSQL schema 7."""


def endpoint_settings(tx: Tx, app: AppKey) -> list[EndpointSetting]:
    rows = tx.execute(
        "SELECT method, path, apdex_ms, excluded, updated_at FROM endpoint_settings"
        " WHERE client_id = ? AND env = ? ORDER BY path, method",
        (app.client_id, app.env),
    ).fetchall()
    return [
        EndpointSetting(str(m), str(p), None if a is None else int(a), bool(e), float(u))
        for m, p, a, e, u in rows
    ]


def put_endpoint_setting(tx: Tx, app: AppKey, setting: EndpointSetting) -> None:
    """Store ``setting``; an endpoint back to the defaults (no threshold, not excluded) loses its row."""
    key = (app.client_id, app.env, setting.method, setting.path)
    if setting.apdex_ms is None and not setting.excluded:
        tx.execute(
            "DELETE FROM endpoint_settings WHERE client_id = ? AND env = ? AND method = ? AND path = ?", key
        )
        return
    tx.execute(
        "INSERT INTO endpoint_settings (client_id, env, method, path, apdex_ms, excluded, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (client_id, env, method, path) DO UPDATE SET"
        " apdex_ms = excluded.apdex_ms, excluded = excluded.excluded, updated_at = excluded.updated_at",
        (*key, setting.apdex_ms, int(setting.excluded), setting.updated_at),
    )
