"""A consumer's name and group set in the dashboard (or the JSON API): kept in the ``consumers``
row next to the client's (``override_name``, ``override_group``), winning over the client's
until reset; the client's values fill in where the dashboard set none. Every read of a consumer's
name or group goes through :data:`NAME` and :data:`GROUP`.

Moving a consumer to another group re-attributes its history: the consumer's rows of
``consumer_traffic`` (every resolution and bucket still kept) are taken from the group it had and
added to the new one in ``group_traffic``, in the same transaction, so the groups' pages follow at
once. The totals taken away are clamped at zero: traffic the consumer brought to an earlier group
(before the client moved it) stays there, and the move takes no more than its current group holds.
Both SQL backends use the same statements.
"""

from __future__ import annotations

from apitally_hub.storage.records import MAX_STORED_COUNT, AppKey, ConsumerInfo
from apitally_hub.storage.sql.dialect import Dialect
from apitally_hub.storage.sql.tx import Tx

NAME = "COALESCE(override_name, name)"
GROUP = "COALESCE(override_group, group_name)"
"""The name and group a consumer has (the dashboard's, else the client's), as SQL over ``consumers``."""

INFO_COLUMNS = (
    f"identifier, {NAME}, {GROUP}, first_seen, last_seen, name, group_name, override_name, override_group"
)
"""The columns of :func:`info` (a :class:`~apitally_hub.storage.records.ConsumerInfo`)."""

MIGRATION: tuple[str, ...] = (
    "ALTER TABLE consumers ADD COLUMN override_name TEXT",
    "ALTER TABLE consumers ADD COLUMN override_group TEXT",
    "ALTER TABLE consumers ADD COLUMN overridden_at DOUBLE PRECISION",
    f"CREATE INDEX consumers_by_group ON consumers (client_id, env, ({GROUP}))",
)
"""Part of SQLite schema 8 and PostgreSQL schema 7 (the same statements): the dashboard's consumer
names and groups, and the index of the consumers by the group they have."""

_COUNTERS = ("request_count", "request_size_sum", "response_size_sum")
_KEYS = ("client_id", "env", "resolution", "bucket", "group_name", "status_code")


def info(row: tuple[object, ...]) -> ConsumerInfo:
    identifier, name, group, first, last, client_name, client_group, own_name, own_group = row
    return ConsumerInfo(
        str(identifier),
        None if name is None else str(name),
        None if group is None else str(group),
        float(first),  # type: ignore[arg-type]
        float(last),  # type: ignore[arg-type]
        client_name=None if client_name is None else str(client_name),
        client_group=None if client_group is None else str(client_group),
        dashboard_name=None if own_name is None else str(own_name),
        dashboard_group=None if own_group is None else str(own_group),
    )


def set_overrides(
    tx: Tx, dialect: Dialect, app: AppKey, identifier: str, name: str | None, group: str | None, now: float
) -> ConsumerInfo | None:
    """Set (or, with None, clear) the dashboard's name and group of a consumer; re-attribute its
    traffic when its group changes. None when the app env has no such consumer."""
    key = (app.client_id, app.env, identifier)
    where = "client_id = ? AND env = ? AND identifier = ?"
    before = tx.execute(f"SELECT {GROUP} FROM consumers WHERE {where}", key).fetchone()
    if before is None:
        return None
    tx.execute(
        f"UPDATE consumers SET override_name = ?, override_group = ?, overridden_at = ? WHERE {where}",
        (name, group, None if name is None and group is None else now, *key),
    )
    row = tx.execute(f"SELECT {INFO_COLUMNS} FROM consumers WHERE {where}", key).fetchone()
    after = info(tuple(row))
    if before[0] != after.group:
        _move_traffic(tx, dialect, app, identifier, before[0], after.group)
    return after


def _move_traffic(
    tx: Tx, dialect: Dialect, app: AppKey, identifier: str, old: str | None, new: str | None
) -> None:
    sums = ", ".join(f"SUM({c})" for c in _COUNTERS)
    rows = tx.execute(
        f"SELECT resolution, bucket, status_code, {sums} FROM consumer_traffic"
        " WHERE client_id = ? AND env = ? AND consumer = ?"
        " GROUP BY resolution, bucket, status_code ORDER BY resolution, bucket, status_code",
        (app.client_id, app.env, identifier),
    ).fetchall()
    if not rows:
        return
    a = (app.client_id, app.env)
    counts = [
        (int(r), int(b), int(s), *(min(int(v or 0), MAX_STORED_COUNT) for v in vs)) for r, b, s, *vs in rows
    ]
    if old is not None:
        taken = ", ".join(f"{c} = {dialect.greatest}({c} - ?, 0)" for c in _COUNTERS)
        tx.executemany(
            f"UPDATE group_traffic SET {taken} WHERE client_id = ? AND env = ? AND resolution = ?"
            " AND bucket = ? AND group_name = ? AND status_code = ?",
            [
                (*values, *a, resolution, bucket, old, status)
                for resolution, bucket, status, *values in counts
            ],
        )
        tx.execute(
            "DELETE FROM group_traffic WHERE client_id = ? AND env = ? AND group_name = ?"
            " AND request_count = 0 AND request_size_sum = 0 AND response_size_sum = 0",
            (*a, old),
        )
    if new is not None:
        added = ", ".join(
            f"{c} = {dialect.least}(group_traffic.{c} + excluded.{c}, {MAX_STORED_COUNT})" for c in _COUNTERS
        )
        tx.executemany(
            f"INSERT INTO group_traffic ({', '.join((*_KEYS, *_COUNTERS))})"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
            f" ON CONFLICT ({', '.join(_KEYS)}) DO UPDATE SET {added}",
            [
                (*a, resolution, bucket, new, status, *values)
                for resolution, bucket, status, *values in counts
            ],
        )
