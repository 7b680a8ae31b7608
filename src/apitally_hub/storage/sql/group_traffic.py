"""Traffic per consumer group, kept as an aggregate of its own (``group_traffic``).

Summing a group's traffic from its members' rows means reading every consumer row of the window:
~4 M rows and seconds over 30 days of 150 000 consumers. So folding also adds each consumer's
requests to the group the consumer has when they are folded (one row per group, status and
bucket), and the groups' totals read those rows. A consumer the client moves to another group takes
only its later requests along; its earlier ones stay with the group it had then. A consumer moved
in the dashboard takes its history along (:mod:`.consumer_overrides`). Both SQL backends create,
fill and read the table with the same statements (the reads are in :mod:`.reads`).
"""

from __future__ import annotations

from apitally_hub.storage.records import MAX_STORED_COUNT, NO_CONSUMER, AppDelta, AppKey, TrafficFilter
from apitally_hub.storage.sql.consumer_overrides import GROUP
from apitally_hub.storage.sql.dialect import Dialect
from apitally_hub.storage.sql.tx import Tx

_DDL = """
CREATE TABLE group_traffic (
    client_id TEXT NOT NULL, env TEXT NOT NULL, resolution INTEGER NOT NULL, bucket {int} NOT NULL,
    group_name TEXT NOT NULL, status_code INTEGER NOT NULL,
    request_count {int} NOT NULL, request_size_sum {int} NOT NULL, response_size_sum {int} NOT NULL,
    PRIMARY KEY (client_id, env, resolution, bucket, group_name, status_code)
){keyed}
"""

_COUNTERS = ("request_count", "request_size_sum", "response_size_sum")
_LOOKUP_CHUNK = 500


def migration(dialect: Dialect) -> list[str]:
    """The table, filled from the consumer rows already stored (with the consumers' groups of now,
    the only ones known): SQLite schema 6, PostgreSQL schema 5."""
    sums = ", ".join(
        f"CAST({dialect.least}({dialect.sum}(t.{c}), {MAX_STORED_COUNT}) AS BIGINT)" for c in _COUNTERS
    )
    backfill = (
        "INSERT INTO group_traffic (client_id, env, resolution, bucket, group_name, status_code,"
        f" {', '.join(_COUNTERS)})"
        f" SELECT t.client_id, t.env, t.resolution, t.bucket, c.group_name, t.status_code, {sums}"
        " FROM consumer_traffic AS t JOIN consumers AS c"
        " ON c.client_id = t.client_id AND c.env = t.env AND c.identifier = t.consumer"
        " WHERE c.group_name IS NOT NULL"
        " GROUP BY t.client_id, t.env, t.resolution, t.bucket, c.group_name, t.status_code"
    )
    return [dialect.ddl(_DDL), backfill]


def usable(flt: TrafficFilter) -> bool:
    """Whether the group rows answer a per-group query with ``flt`` (they have no endpoint and no
    consumer: a filter on those, or endpoints left out, sums the members' rows instead)."""
    return (
        not flt.method
        and not flt.path
        and not flt.excluded
        and flt.consumer is None
        and flt.consumers is None
    )


def apply(tx: Tx, dialect: Dialect, app: AppKey, delta: AppDelta) -> None:
    """Add the delta's consumer traffic to the consumers' groups (after the delta's names are
    written, so a consumer named in the same sync counts for its new group)."""
    identifiers = sorted({key[2] for key in delta.consumer_traffic} - {NO_CONSUMER})
    if not identifiers:
        return
    groups: dict[str, str] = {}
    for start in range(0, len(identifiers), _LOOKUP_CHUNK):
        chunk = identifiers[start : start + _LOOKUP_CHUNK]
        rows = tx.execute(
            f"SELECT identifier, {GROUP} FROM consumers WHERE client_id = ? AND env = ?"
            f" AND {GROUP} IS NOT NULL AND identifier IN ({', '.join('?' * len(chunk))})",
            (app.client_id, app.env, *chunk),
        ).fetchall()
        groups.update((str(identifier), str(group)) for identifier, group in rows)
    if not groups:
        return
    totals: dict[tuple[int, int, str, int], list[int]] = {}
    for (resolution, bucket, consumer, _, _, status_code), counts in delta.consumer_traffic.items():
        group = groups.get(consumer)
        if group is None:
            continue
        row = totals.setdefault((resolution, bucket, group, status_code), [0, 0, 0])
        row[0] += counts.request_count
        row[1] += counts.request_size_sum
        row[2] += counts.response_size_sum
    keys = ("client_id", "env", "resolution", "bucket", "group_name", "status_code")
    updates = ", ".join(
        f"{c} = {dialect.least}(group_traffic.{c} + excluded.{c}, {MAX_STORED_COUNT})" for c in _COUNTERS
    )
    tx.executemany(
        f"INSERT INTO group_traffic ({', '.join((*keys, *_COUNTERS))}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
        f" ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {updates}",
        [
            (app.client_id, app.env, *key, *(min(v, MAX_STORED_COUNT) for v in values))
            for key, values in sorted(totals.items())  # key order: no deadlock between processes
        ],
    )
