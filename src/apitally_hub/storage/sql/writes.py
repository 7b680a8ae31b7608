"""The write side shared by the SQL backends: queue, claims, applying fold deltas, leases, pruning.

Every function runs inside the caller's write transaction (``tx``). Aggregate upserts add
counts (saturating at :data:`~apitally_hub.storage.records.MAX_STORED_COUNT`) and merge histogram
bins with the backend's ``merge_bins(a, b)`` SQL function.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from apitally_hub.storage.records import (
    MAX_STORED_COUNT,
    AppDelta,
    AppKey,
    Bins,
    ClaimedMessage,
    ClaimLost,
    Counts,
    FoldProgress,
    RawMessage,
    Rejection,
    RetentionPolicy,
)
from apitally_hub.storage.sql import group_traffic
from apitally_hub.storage.sql.dialect import Dialect
from apitally_hub.storage.sql.tx import Tx

CLAIM_BYTES = 16 * 1024 * 1024
"""A claim takes pending messages until their stored bodies add up to this (at least one)."""

PRUNE_SLICE = 6 * 3600
"""Aggregates are pruned a few hours of buckets per transaction, so no delete holds the lock long."""


def cap(value: int) -> int:
    return min(value, MAX_STORED_COUNT)


def bins_json(bins: Bins) -> str:
    """``{"0":3,"10":1}``: what ``json.dumps`` gives for int keys and counts, built directly (this
    runs for every aggregate row a fold writes)."""
    return "{" + ",".join(f'"{key}":{cap(bins[key])}' for key in sorted(bins)) + "}"


# -- queue ------------------------------------------------------------------------------------


def enqueue(tx: Tx, message: RawMessage) -> bool:
    cursor = tx.execute(
        "INSERT INTO queue (client_id, env, kind, message_uuid, instance_uuid, received_at, encoding,"
        " body, body_size, item_count) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (client_id, kind, message_uuid) DO NOTHING",
        (
            message.app.client_id,
            message.app.env,
            message.kind,
            message.message_uuid,
            message.instance_uuid,
            message.received_at,
            message.encoding,
            message.body,
            len(message.body),
            message.item_count,
        ),
    )
    return cursor.rowcount == 1


def record_rejection(tx: Tx, rejection: Rejection) -> None:
    tx.execute(
        "INSERT INTO rejections (received_at, client_id, env, endpoint, status_code, detail)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (
            rejection.received_at,
            rejection.app.client_id,
            rejection.app.env,
            rejection.endpoint,
            rejection.status_code,
            rejection.detail,
        ),
    )


def claim(
    tx: Tx, dialect: Dialect, worker: str, *, limit: int, lease_seconds: float, now: float
) -> list[ClaimedMessage]:
    candidates = tx.execute(
        "SELECT id, body_size FROM queue WHERE folded_at IS NULL"
        " AND (claimed_until IS NULL OR claimed_until < ? OR claimed_by = ?)"
        f" ORDER BY id LIMIT ?{dialect.lock_rows}",
        (now, worker, limit),
    ).fetchall()
    chosen: list[int] = []
    size = 0
    for row_id, body_size in candidates:
        if chosen and size + body_size > CLAIM_BYTES:
            break
        chosen.append(row_id)
        size += body_size
    if not chosen:
        return []
    marks = ", ".join("?" * len(chosen))
    rows = tx.execute(
        f"UPDATE queue SET claimed_by = ?, claimed_until = ? WHERE id IN ({marks})"
        " RETURNING id, client_id, env, kind, message_uuid, instance_uuid, received_at, encoding, body,"
        " item_count, fold_offset",
        (worker, now + lease_seconds, *chosen),
    ).fetchall()
    rows.sort(key=lambda row: row[0])
    return [
        ClaimedMessage(
            RawMessage(
                AppKey(client_id, env),
                kind,
                message_uuid,
                instance_uuid,
                received_at,
                bytes(body),
                encoding,
                item_count,
            ),
            fold_offset,
        )
        for (
            _,
            client_id,
            env,
            kind,
            message_uuid,
            instance_uuid,
            received_at,
            encoding,
            body,
            item_count,
            fold_offset,
        ) in rows
    ]


def record_progress(tx: Tx, worker: str, progress: Sequence[FoldProgress], now: float) -> None:
    if not progress:
        return
    cursor = tx.executemany(
        "UPDATE queue SET fold_offset = ?, folded_at = ?, fold_error = ?,"
        " claimed_by = CASE WHEN ? = 1 THEN NULL ELSE claimed_by END"
        " WHERE client_id = ? AND kind = ? AND message_uuid = ? AND claimed_by = ? AND fold_offset = ?"
        " AND folded_at IS NULL",
        [
            (
                step.offset,
                now if step.done else None,
                step.error,
                1 if step.done else 0,
                step.app.client_id,
                step.kind,
                step.message_uuid,
                worker,
                step.expected_offset,
            )
            for step in progress
        ],
    )
    if cursor.rowcount != len(progress):  # one step did not match: its claim was taken over
        raise ClaimLost(", ".join(step.message_uuid for step in progress))


# -- applying deltas --------------------------------------------------------------------------


def _counter(dialect: Dialect, table: str, column: str) -> str:
    return f"{column} = {dialect.least}({table}.{column} + excluded.{column}, {MAX_STORED_COUNT})"


def _upsert(
    dialect: Dialect, table: str, keys: Sequence[str], counters: Sequence[str], bins: Sequence[str] = ()
) -> str:
    columns = [*keys, *counters, *bins]
    updates = [_counter(dialect, table, c) for c in counters]
    updates += [f"{b} = merge_bins({table}.{b}, excluded.{b})" for b in bins]
    return (
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
        f" ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {', '.join(updates)}"
    )


_TRAFFIC_COUNTERS = ("request_count", "request_size_sum", "response_size_sum")
_TRAFFIC_BINS = ("response_times", "request_sizes", "response_sizes")
_APP = ("client_id", "env")


def apply_delta(tx: Tx, dialect: Dialect, app: AppKey, delta: AppDelta) -> None:
    # Rows are upserted in key order, so concurrent applies (workers of several processes on one
    # PostgreSQL) lock shared rows in the same order and do not deadlock.
    a = (app.client_id, app.env)
    serialised: dict[int, str] = {}

    def bins(histogram: Bins) -> str:
        # folding shares an item's histograms between its rows: serialise each object once
        # (the delta holds them all while this runs, so their ids are stable)
        text = serialised.get(id(histogram))
        if text is None:
            text = serialised[id(histogram)] = bins_json(histogram)
        return text

    if delta.endpoints:
        tx.executemany(
            _upsert(
                dialect,
                "endpoint_traffic",
                (*_APP, "resolution", "bucket", "method", "path", "status_code"),
                _TRAFFIC_COUNTERS,
                _TRAFFIC_BINS,
            ),
            [
                (
                    *a,
                    *key,
                    cap(c.request_count),
                    cap(c.request_size_sum),
                    cap(c.response_size_sum),
                    bins(c.response_times),
                    bins(c.request_sizes),
                    bins(c.response_sizes),
                )
                for key, c in sorted(delta.endpoints.items())
            ],
        )
    if delta.endpoints:
        totals: dict[tuple[int, int, int], Counts] = {}
        for (resolution, bucket, _, _, status_code), counts in delta.endpoints.items():
            totals.setdefault((resolution, bucket, status_code), Counts()).add(counts)
        tx.executemany(
            _upsert(
                dialect,
                "app_traffic",
                (*_APP, "resolution", "bucket", "status_code"),
                _TRAFFIC_COUNTERS,
                _TRAFFIC_BINS,
            ),
            [
                (
                    *a,
                    *key,
                    cap(c.request_count),
                    cap(c.request_size_sum),
                    cap(c.response_size_sum),
                    bins(c.response_times),
                    bins(c.request_sizes),
                    bins(c.response_sizes),
                )
                for key, c in sorted(totals.items())
            ],
        )
    if delta.consumer_traffic:
        tx.executemany(
            _upsert(
                dialect,
                "consumer_traffic",
                (*_APP, "resolution", "bucket", "consumer", "method", "path", "status_code"),
                _TRAFFIC_COUNTERS,
                ("response_times",),
            ),
            [
                (
                    *a,
                    *key,
                    cap(c.request_count),
                    cap(c.request_size_sum),
                    cap(c.response_size_sum),
                    bins(c.response_times),
                )
                for key, c in sorted(delta.consumer_traffic.items())
            ],
        )
    if delta.validation_errors:
        tx.executemany(
            _upsert(
                dialect,
                "validation_errors",
                (*_APP, "resolution", "bucket", "consumer", "method", "path", "loc", "msg", "type"),
                ("error_count",),
            ),
            [(*a, *key, cap(count)) for key, count in sorted(delta.validation_errors.items())],
        )
    if delta.server_error_groups:
        tx.executemany(
            "INSERT INTO server_error_groups (client_id, env, error_hash, method, path, type, msg, traceback,"
            " sentry_event_id, first_seen, last_seen) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (client_id, env, error_hash) DO UPDATE SET"
            " sentry_event_id = coalesce(excluded.sentry_event_id, server_error_groups.sentry_event_id),"
            f" first_seen = {dialect.least}(server_error_groups.first_seen, excluded.first_seen),"
            f" last_seen = {dialect.greatest}(server_error_groups.last_seen, excluded.last_seen)",
            [
                (
                    *a,
                    g.error_hash,
                    g.method,
                    g.path,
                    g.type,
                    g.msg,
                    g.traceback,
                    g.sentry_event_id,
                    g.seen_at,
                    g.seen_at,
                )
                for _, g in sorted(delta.server_error_groups.items())
            ],
        )
    if delta.server_errors:
        tx.executemany(
            _upsert(
                dialect,
                "server_errors",
                (*_APP, "resolution", "bucket", "error_hash", "consumer"),
                ("error_count",),
            ),
            [(*a, *key, cap(count)) for key, count in sorted(delta.server_errors.items())],
        )
    if delta.heartbeats:
        tx.executemany(
            _upsert(dialect, "heartbeats", (*_APP, "minute"), ("syncs",)),
            [(*a, minute, syncs) for minute, syncs in sorted(delta.heartbeats.items())],
        )
    _apply_instances(tx, dialect, app, delta)
    _apply_consumers(tx, dialect, app, delta)
    group_traffic.apply(tx, dialect, app, delta)
    if delta.log_rows:
        tx.executemany(
            "INSERT INTO request_log (client_id, env, file_uuid, request_uuid, timestamp, method, path, url,"
            " status_code, response_time, consumer, request_size, response_size, trace_id, exception_type,"
            " item, client_ip) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (client_id, env, request_uuid) DO NOTHING",
            [
                (
                    *a,
                    file_uuid,
                    r.request_uuid,
                    r.timestamp,
                    r.method,
                    r.path,
                    r.url,
                    r.status_code,
                    r.response_time,
                    r.consumer,
                    r.request_size,
                    r.response_size,
                    r.trace_id,
                    r.exception_type,
                    r.item,
                    r.client_ip,
                )
                for file_uuid, r in delta.log_rows
            ],
        )
    if delta.log_attachments:
        _attach_logs(tx, dialect, app, delta.log_attachments)


MAX_ATTACHED_LOGS = 1000
"""Log records an item holds at most (as a client's own item: hub-protocol.md §5)."""


def _attach_logs(
    tx: Tx, dialect: Dialect, app: AppKey, attachments: list[tuple[str, list[dict[str, Any]]]]
) -> None:
    """Add log records to stored request-log items (those not stored are left: their records
    came without the item, e.g. a request the sender's sampling dropped)."""
    records: dict[str, list[dict[str, Any]]] = {}
    for request_uuid, logs in attachments:
        records.setdefault(request_uuid, []).extend(logs)
    for request_uuid in sorted(records):
        row = tx.execute(
            "SELECT item FROM request_log WHERE client_id = ? AND env = ? AND request_uuid = ?"
            + dialect.for_update,
            (app.client_id, app.env, request_uuid),
        ).fetchone()
        if row is None:
            continue
        item = json.loads(str(row[0]))
        kept = item.get("logs") or []
        added = [record for record in records[request_uuid] if record not in kept]
        if not added:
            continue
        item["logs"] = sorted(kept + added, key=lambda record: record.get("timestamp", 0))[:MAX_ATTACHED_LOGS]
        tx.execute(
            "UPDATE request_log SET item = ? WHERE client_id = ? AND env = ? AND request_uuid = ?",
            (
                json.dumps(item, separators=(",", ":"), ensure_ascii=False),
                app.client_id,
                app.env,
                request_uuid,
            ),
        )


MIN_INTERVAL, MAX_INTERVAL = 1.0, 3600.0

_CHUNK = 500
"""Keys per ``IN (...)`` list."""


def _rows_by_key(
    tx: Tx, dialect: Dialect, sql: str, app: AppKey, keys: Sequence[str]
) -> dict[str, Sequence[Any]]:
    """``sql`` (``... WHERE client_id = ? AND env = ? AND <key> IN ({marks})``, the key selected
    first) for every key, locking the rows it returns until the transaction ends."""
    found: dict[str, Sequence[Any]] = {}
    for start in range(0, len(keys), _CHUNK):
        chunk = keys[start : start + _CHUNK]
        statement = sql.format(marks=", ".join("?" * len(chunk))) + dialect.for_update
        for row in tx.execute(statement, (app.client_id, app.env, *chunk)).fetchall():
            found[row[0]] = row
    return found


def _apply_instances(tx: Tx, dialect: Dialect, app: AppKey, delta: AppDelta) -> None:
    a = (app.client_id, app.env)
    for startup in delta.startups:
        paths = json.dumps([{"method": m, "path": p} for m, p in startup.paths], separators=(",", ":"))
        tx.execute(
            "INSERT INTO instances (client_id, env, instance_uuid, first_seen, last_seen, startup_at, client,"
            " versions, paths, openapi) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (client_id, env, instance_uuid) DO UPDATE SET"
            f" last_seen = {dialect.greatest}(instances.last_seen, excluded.last_seen),"
            " startup_at = excluded.startup_at, client = excluded.client, versions = excluded.versions,"
            " paths = excluded.paths, openapi = excluded.openapi",
            (
                *a,
                startup.instance_uuid,
                startup.received_at,
                startup.received_at,
                startup.received_at,
                startup.client,
                json.dumps(dict(startup.versions), separators=(",", ":"), ensure_ascii=False),
                paths,
                startup.openapi,
            ),
        )
    if not delta.instance_syncs:
        return
    # One read of every instance the syncs name, the syncs applied to it in Python in the order
    # they were received (as if folded one by one: sorting by timestamp would take a late resend
    # for the newest sync and shrink the inferred interval), then one write per instance.
    uuids = sorted({beat.instance_uuid for beat in delta.instance_syncs})
    stored = _rows_by_key(
        tx,
        dialect,
        "SELECT instance_uuid, last_sync_ts, sync_interval, last_seen, last_sync_at FROM instances"
        " WHERE client_id = ? AND env = ? AND instance_uuid IN ({marks})",
        app,
        uuids,
    )
    state: dict[str, dict[str, Any]] = {}
    for beat in delta.instance_syncs:
        current = state.get(beat.instance_uuid)
        if current is None:
            row = stored.get(beat.instance_uuid)
            current = state[beat.instance_uuid] = {
                "exists": row is not None,
                "last_ts": row[1] if row else None,
                "interval": row[2] if row else None,
                "first_seen": beat.received_at,
                "seen": max(row[3], beat.received_at) if row else beat.received_at,
                "sync_at": row[4] if row else None,
                "syncs": 0,
                "cpu": None,
                "memory": None,
            }
        current["syncs"] += 1
        current["first_seen"] = min(current["first_seen"], beat.received_at)
        current["seen"] = max(current["seen"], beat.received_at)
        last_ts = current["last_ts"]
        if last_ts is not None and beat.timestamp <= last_ts:
            continue  # a late resend: it proves the instance was alive, but says nothing newer
        if last_ts is not None:
            current["interval"] = min(MAX_INTERVAL, max(MIN_INTERVAL, beat.timestamp - last_ts))
        current["last_ts"] = beat.timestamp
        current["sync_at"] = max(current["sync_at"] or 0.0, beat.received_at)
        current["cpu"] = beat.cpu_percent if beat.cpu_percent is not None else current["cpu"]
        current["memory"] = beat.memory_rss if beat.memory_rss is not None else current["memory"]
    updates = [(uuid, s) for uuid, s in sorted(state.items()) if s["exists"]]
    if updates:
        tx.executemany(
            # the rows are locked since the read: the values computed from it still hold
            "UPDATE instances SET last_seen = ?, last_sync_at = ?, last_sync_ts = ?, sync_interval = ?,"
            " syncs = syncs + ?, cpu_percent = coalesce(?, cpu_percent), memory_rss = coalesce(?, memory_rss)"
            " WHERE client_id = ? AND env = ? AND instance_uuid = ?",
            [
                (
                    s["seen"],
                    s["sync_at"],
                    s["last_ts"],
                    s["interval"],
                    s["syncs"],
                    s["cpu"],
                    s["memory"],
                    *a,
                    uuid,
                )
                for uuid, s in updates
            ],
        )
    inserts = [(uuid, s) for uuid, s in sorted(state.items()) if not s["exists"]]
    if inserts:
        # ON CONFLICT: another process's worker may insert the same new instance concurrently
        tx.executemany(
            "INSERT INTO instances (client_id, env, instance_uuid, first_seen, last_seen, last_sync_at,"
            " last_sync_ts, sync_interval, syncs, cpu_percent, memory_rss)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (client_id, env, instance_uuid) DO UPDATE SET"
            f" last_seen = {dialect.greatest}(instances.last_seen, excluded.last_seen),"
            f" last_sync_at = {dialect.greatest}(coalesce(instances.last_sync_at, 0), excluded.last_sync_at),"
            f" last_sync_ts = {dialect.greatest}(coalesce(instances.last_sync_ts, 0), excluded.last_sync_ts),"
            " syncs = instances.syncs + excluded.syncs",
            [
                (
                    *a,
                    uuid,
                    s["first_seen"],
                    s["seen"],
                    s["sync_at"],
                    s["last_ts"],
                    s["interval"],
                    s["syncs"],
                    s["cpu"],
                    s["memory"],
                )
                for uuid, s in inserts
            ],
        )


def _apply_consumers(tx: Tx, dialect: Dialect, app: AppKey, delta: AppDelta) -> None:
    a = (app.client_id, app.env)
    if delta.consumers_seen:
        tx.executemany(
            "INSERT INTO consumers (client_id, env, identifier, first_seen, last_seen) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (client_id, env, identifier) DO UPDATE SET"
            f" last_seen = {dialect.greatest}(consumers.last_seen, excluded.last_seen),"
            f" first_seen = {dialect.least}(consumers.first_seen, excluded.first_seen)",
            [
                (*a, s.identifier, s.first_seen, s.last_seen)
                for s in sorted(delta.consumers_seen.values(), key=lambda s: s.identifier)
            ],
        )
    if not delta.consumers_named:
        return
    identifiers = sorted({named.identifier for named in delta.consumers_named})
    current: dict[str, Sequence[Any]] = dict(
        _rows_by_key(
            tx,
            dialect,
            "SELECT identifier, name, group_name, named_at FROM consumers"
            " WHERE client_id = ? AND env = ? AND identifier IN ({marks})",
            app,
            identifiers,
        )
    )
    changes: list[tuple[Any, ...]] = []
    for named in sorted(delta.consumers_named, key=lambda n: n.at):
        row = current.get(named.identifier)
        if row is not None and row[3] is not None and row[3] > named.at:
            continue  # an older sync arriving late must not undo a newer name
        if row is not None and (row[1], row[2]) == (named.name, named.group):
            continue
        current[named.identifier] = (named.identifier, named.name, named.group, named.at)
        changes.append((named.identifier, named.name, named.group, named.at))
    if not changes:
        return
    final = {identifier: (name, group, at) for identifier, name, group, at in changes}
    tx.executemany(
        "UPDATE consumers SET name = ?, group_name = ?, named_at = ?"
        " WHERE client_id = ? AND env = ? AND identifier = ?",
        [(*final[identifier], *a, identifier) for identifier in sorted(final)],
    )
    tx.executemany(
        "INSERT INTO consumer_history (client_id, env, identifier, name, group_name, changed_at)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        [(*a, *change) for change in changes],
    )


# -- leases and retention ---------------------------------------------------------------------


def try_lease(tx: Tx, name: str, holder: str, seconds: float, now: float) -> bool:
    tx.execute(
        "INSERT INTO leases (name, holder, expires_at) VALUES (?, ?, ?) ON CONFLICT (name) DO NOTHING",
        (name, holder, now + seconds),
    )
    cursor = tx.execute(
        "UPDATE leases SET holder = ?, expires_at = ? WHERE name = ? AND (holder = ? OR expires_at < ?)",
        (holder, now + seconds, name, holder, now),
    )
    return cursor.rowcount == 1


def release_lease(tx: Tx, name: str, holder: str) -> None:
    tx.execute("UPDATE leases SET expires_at = 0 WHERE name = ? AND holder = ?", (name, holder))


AGGREGATE_TABLES = (
    "app_traffic",
    "endpoint_traffic",
    "consumer_traffic",
    "group_traffic",
    "validation_errors",
    "server_errors",
)

# (table, time column) of what is pruned by time outside the aggregates
_TIMED: tuple[tuple[str, str, str], ...] = (
    ("request_log", "timestamp", "request_log"),
    ("rejections", "received_at", "rejections"),
    ("consumer_history", "changed_at", "registries"),
    ("consumers", "last_seen", "registries"),
    ("instances", "last_seen", "registries"),
    ("server_error_groups", "last_seen", "server_error_groups"),
)


def prune_steps(
    policy: RetentionPolicy, now: float, apps: Iterable[AppKey]
) -> Iterable[tuple[str, str, list[Any]]]:
    """(kind, statement, params) to run, each in a short transaction of its own."""
    for app in apps:
        for resolution, keep in policy.resolutions.items():
            cutoff = int((now - keep) // resolution) * resolution
            for table in AGGREGATE_TABLES:
                yield (
                    table,
                    f"DELETE FROM {table} WHERE client_id = ? AND env = ? AND resolution = ? AND bucket < ?",
                    [app.client_id, app.env, resolution, cutoff],
                )
        yield (
            "heartbeats",
            "DELETE FROM heartbeats WHERE client_id = ? AND env = ? AND minute < ?",
            [app.client_id, app.env, now - policy.resolutions[60]],
        )
    yield (
        "queue",
        "DELETE FROM queue WHERE folded_at IS NOT NULL AND received_at < ?",
        [now - policy.raw_messages],
    )
    longest = max(policy.resolutions.values())
    for table, column, kind in _TIMED:
        keep = {
            "request_log": policy.request_log,
            "rejections": policy.rejections,
            "registries": policy.registries,
            "server_error_groups": longest,
        }[kind]
        yield table, f"DELETE FROM {table} WHERE {column} < ?", [now - keep]


def apply_all(tx: Tx, dialect: Dialect, deltas: Mapping[AppKey, AppDelta]) -> None:
    for app in sorted(deltas):
        delta = deltas[app]
        if not delta.is_empty():
            apply_delta(tx, dialect, app, delta)
