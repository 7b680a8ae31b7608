"""The last point of each cumulative OTLP series (``otlp_series``), by app env, instance and series
key: what turns the next cumulative point into a delta. Kept in the store, so it survives restarts
and is shared by the hub processes of one PostgreSQL database. Both SQL backends create, read and
write the table with the same statements.

:func:`swap_series` is one transaction: it locks the stored rows of the keys it is given (SQLite's
write transaction holds the whole file; PostgreSQL's ``FOR UPDATE`` the rows), inserts the keys
that have none — a key another process inserted meanwhile is read (and locked) after all — and
replaces the stored points unless they are newer. So two processes given points of one series see
one after the other's: each point's delta is counted once.
"""

from __future__ import annotations

from collections.abc import Sequence

from apitally_hub.storage.records import DAY, AppKey, SeriesPoint, SeriesRef
from apitally_hub.storage.sql.dialect import Dialect
from apitally_hub.storage.sql.tx import Tx

DDL: tuple[str, ...] = (
    """
CREATE TABLE otlp_series (
    client_id TEXT NOT NULL, env TEXT NOT NULL, instance_id TEXT NOT NULL, series_key TEXT NOT NULL,
    start_nano {int} NOT NULL, time_nano {int} NOT NULL, value TEXT NOT NULL,
    updated_at {float} NOT NULL,
    PRIMARY KEY (client_id, env, instance_id, series_key)
){keyed}
""",
    "CREATE INDEX otlp_series_updated_at ON otlp_series (updated_at)",
)
"""Part of SQLite schema 10 and PostgreSQL schema 9 (portable DDL: :meth:`Dialect.ddl`)."""

KEEP_SECONDS = 2 * DAY
"""A series not updated for this long is forgotten by pruning (its next point starts it anew)."""

_CHUNK = 100
"""Keys per statement (8 parameters a row stays under SQLite's limit of 999)."""


def ddl(dialect: Dialect) -> tuple[str, ...]:
    return tuple(dialect.ddl(statement) for statement in DDL)


def _chunks(items: Sequence[str]) -> list[Sequence[str]]:
    return [items[i : i + _CHUNK] for i in range(0, len(items), _CHUNK)]


def _stored(
    tx: Tx, dialect: Dialect, app: AppKey, instance_id: str, keys: Sequence[str]
) -> dict[str, SeriesPoint]:
    """The stored points of ``keys``, locked for the rest of the transaction."""
    found: dict[str, SeriesPoint] = {}
    for chunk in _chunks(keys):
        marks = ", ".join("?" * len(chunk))
        rows = tx.execute(
            "SELECT series_key, start_nano, time_nano, value FROM otlp_series"
            f" WHERE client_id = ? AND env = ? AND instance_id = ? AND series_key IN ({marks})"
            f" ORDER BY series_key{dialect.for_update}",
            (app.client_id, app.env, instance_id, *chunk),
        ).fetchall()
        for key, start, time, value in rows:
            found[str(key)] = SeriesPoint(str(key), int(start), int(time), str(value))
    return found


def _keeps(stored: SeriesPoint | None, point: SeriesPoint) -> bool:
    """Whether ``stored`` stays: ``point`` is of the same run and not newer (a resend, or late)."""
    return (
        stored is not None and stored.start_nano == point.start_nano and stored.time_nano >= point.time_nano
    )


def _latest(before: dict[str, SeriesPoint], points: Sequence[SeriesPoint]) -> dict[str, SeriesPoint]:
    """The point each key has after ``points`` (in order: several of one key apply one by one),
    for the keys whose stored point is replaced."""
    latest: dict[str, SeriesPoint] = {}
    for point in points:
        if not _keeps(latest.get(point.key, before.get(point.key)), point):
            latest[point.key] = point
    return latest


def _insert_new(tx: Tx, app: AppKey, instance_id: str, points: Sequence[SeriesPoint], now: float) -> set[str]:
    """Insert the points of keys that have none stored; returns the keys inserted (not those
    another transaction inserted first)."""
    inserted: set[str] = set()
    for start in range(0, len(points), _CHUNK):
        rows = points[start : start + _CHUNK]
        params: list[object] = []
        for p in rows:
            params += [app.client_id, app.env, instance_id, p.key, p.start_nano, p.time_nano, p.value, now]
        cursor = tx.execute(
            "INSERT INTO otlp_series (client_id, env, instance_id, series_key, start_nano, time_nano,"
            " value, updated_at) VALUES "
            + ", ".join("(?, ?, ?, ?, ?, ?, ?, ?)" for _ in rows)
            + " ON CONFLICT (client_id, env, instance_id, series_key) DO NOTHING RETURNING series_key",
            params,
        )
        inserted.update(str(row[0]) for row in cursor.fetchall())
    return inserted


def swap_series(
    tx: Tx, dialect: Dialect, app: AppKey, instance_id: str, points: Sequence[SeriesPoint], now: float
) -> dict[str, SeriesPoint]:
    """See :meth:`~apitally_hub.storage.base.Storage.swap_series`; runs in the caller's write
    transaction."""
    keys = sorted({point.key for point in points})  # one lock order for every process
    before = _stored(tx, dialect, app, instance_id, keys)
    inserted: set[str] = set()
    missing = [key for key in keys if key not in before]
    if missing:
        first = _latest(before, points)
        inserted = _insert_new(tx, app, instance_id, [first[key] for key in missing], now)
        raced = [key for key in missing if key not in inserted]  # another process inserted it meanwhile
        if raced:
            before.update(_stored(tx, dialect, app, instance_id, raced))
    updates = [
        (p.start_nano, p.time_nano, p.value, now, app.client_id, app.env, instance_id, key)
        for key, p in sorted(_latest(before, points).items())
        if key not in inserted and p != before.get(key)
    ]
    if updates:
        tx.executemany(
            "UPDATE otlp_series SET start_nano = ?, time_nano = ?, value = ?, updated_at = ?"
            " WHERE client_id = ? AND env = ? AND instance_id = ? AND series_key = ?",
            updates,
        )
    return before


def prune(tx: Tx, now: float) -> int:
    """Forget the series not updated for :data:`KEEP_SECONDS`; returns how many."""
    return max(tx.execute("DELETE FROM otlp_series WHERE updated_at < ?", (now - KEEP_SECONDS,)).rowcount, 0)


def with_prefix(
    tx: Tx,
    prefix: str,
    *,
    updated_before: float | None,
    app: AppKey | None,
    instance_id: str | None,
    limit: int,
) -> list[tuple[SeriesRef, SeriesPoint]]:
    """The rows whose key starts with ``prefix`` (oldest update first), optionally only those not
    updated since ``updated_before`` and of one app env and instance."""
    sql = (
        "SELECT client_id, env, instance_id, series_key, start_nano, time_nano, value FROM otlp_series"
        " WHERE substr(series_key, 1, ?) = ?"
    )
    params: list[object] = [len(prefix), prefix]
    if updated_before is not None:
        sql += " AND updated_at < ?"
        params.append(updated_before)
    if app is not None:
        sql += " AND client_id = ? AND env = ?"
        params += [app.client_id, app.env]
    if instance_id is not None:
        sql += " AND instance_id = ?"
        params.append(instance_id)
    sql += " ORDER BY updated_at, client_id, env, instance_id, series_key LIMIT ?"
    params.append(limit)
    return [
        (
            SeriesRef(AppKey(str(client_id), str(env)), str(instance), str(key)),
            SeriesPoint(str(key), int(start), int(time), str(value)),
        )
        for client_id, env, instance, key, start, time, value in tx.execute(sql, params).fetchall()
    ]


def forget(tx: Tx, refs: Sequence[SeriesRef]) -> None:
    """Delete the rows ``refs`` name (in the caller's transaction)."""
    if refs:
        tx.executemany(
            "DELETE FROM otlp_series WHERE client_id = ? AND env = ? AND instance_id = ? AND series_key = ?",
            [(ref.app.client_id, ref.app.env, ref.instance_id, ref.key) for ref in sorted(refs)],
        )
