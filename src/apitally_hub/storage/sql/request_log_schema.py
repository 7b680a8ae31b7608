"""Portable DDL for the request log's later columns (shared by the SQLite and PostgreSQL migrations)."""

from __future__ import annotations

REQUEST_LOG_CLIENT_IP_DDL: tuple[str, ...] = (
    "ALTER TABLE request_log ADD COLUMN client_ip TEXT",
    "CREATE INDEX request_log_client_ip ON request_log (client_id, env, client_ip, timestamp)",
)
"""The request's client address (hub-protocol.md §5 ``request.client_ip``), for the request log's
filter; items logged before the column have none."""
