"""Retention: delete everything older than the retention window (run on startup and periodically)."""

from __future__ import annotations

import sqlite3

# (table, time column) — aggregates use the client's minute, raw data the hub's receive time.
_PRUNED: tuple[tuple[str, str], ...] = (
    ("messages", "received_at"),
    ("request_counts", "minute"),
    ("validation_errors", "minute"),
    ("server_errors", "minute"),
    ("consumers", "last_seen"),
    ("consumer_history", "changed_at"),
    ("instances", "last_seen"),
    ("log_files", "received_at"),
    ("request_log", "timestamp"),
    ("rejections", "received_at"),
)


def prune(conn: sqlite3.Connection, cutoff: float) -> dict[str, int]:
    """Delete rows older than ``cutoff`` (epoch seconds); returns the number deleted per table."""
    deleted: dict[str, int] = {}
    for table, column in _PRUNED:
        cursor = conn.execute(f"DELETE FROM {table} WHERE {column} < ?", (cutoff,))
        deleted[table] = cursor.rowcount
    return deleted
