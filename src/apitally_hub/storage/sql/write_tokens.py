"""Write tokens (``write_tokens``): the per-app credentials of OTLP ingest, one row per token,
revoked ones kept with their ``revoked_at``. Both SQL backends create, read and write the table
with the same statements. Looking a token up (:func:`app_for_write_token`) is one primary-key read:
it runs for every OTLP request."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from apitally_hub.storage.records import WriteToken
from apitally_hub.storage.sql.tx import Tx

DDL: tuple[str, ...] = (
    """
CREATE TABLE write_tokens (
    token TEXT PRIMARY KEY, client_id TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL, revoked_at DOUBLE PRECISION
)
""",
    "CREATE INDEX write_tokens_client ON write_tokens (client_id)",
)
"""Part of SQLite schema 10 and PostgreSQL schema 9."""

_INSERT = "INSERT INTO write_tokens (token, client_id, created_at, revoked_at) VALUES (?, ?, ?, ?)"


def backfill(
    execute: Callable[[str, Sequence[Any]], Any], client_ids: Sequence[str], now: float
) -> list[WriteToken]:
    """The migration's second step: a first write token for each app of the registry (apps created
    later get theirs when they are created). ``execute`` runs one statement with ``?`` placeholders."""
    tokens = [WriteToken.generate(client_id, now) for client_id in client_ids]
    for token in tokens:
        execute(_INSERT, (token.token, token.client_id, token.created_at, token.revoked_at))
    return tokens


def write_tokens(tx: Tx, client_id: str) -> list[WriteToken]:
    rows = tx.execute(
        "SELECT token, client_id, created_at, revoked_at FROM write_tokens WHERE client_id = ?"
        " ORDER BY created_at, token",
        (client_id,),
    ).fetchall()
    return [
        WriteToken(str(t), str(c), float(created), None if revoked is None else float(revoked))
        for t, c, created, revoked in rows
    ]


def add_write_token(tx: Tx, token: WriteToken) -> None:
    tx.execute(_INSERT, (token.token, token.client_id, token.created_at, token.revoked_at))


def revoke_write_token(tx: Tx, client_id: str, token: str, now: float) -> bool:
    """Revoke ``token`` of ``client_id`` (one already revoked keeps its first ``revoked_at``);
    False: the app has no such token."""
    cursor = tx.execute(
        "UPDATE write_tokens SET revoked_at = COALESCE(revoked_at, ?) WHERE token = ? AND client_id = ?",
        (now, token, client_id),
    )
    return cursor.rowcount == 1


APP_FOR_WRITE_TOKEN = "SELECT client_id FROM write_tokens WHERE token = ? AND revoked_at IS NULL"


def app_for_write_token(tx: Tx, token: str) -> str | None:
    row = tx.execute(APP_FOR_WRITE_TOKEN, (token,)).fetchone()
    return None if row is None else str(row[0])
