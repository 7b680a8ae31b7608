"""Write side of the store: one function per accepted message, each run inside one transaction.

Every function first claims the message's UUID (``messages`` or ``log_files`` primary key). When
the claim finds the UUID already stored, the message is a resend: nothing else is written and
the function returns False. Aggregates are keyed per minute (``floor(timestamp / 60) * 60`` of
the sync's client ``timestamp``), client_id/env, instance, consumer, method, path and status,
with histogram bins merged on upsert by the ``merge_bins`` SQL function.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

NO_CONSUMER = ""
"""Stored in place of a null consumer (identifiers are never empty), so keys stay unique."""

MIN_INTERVAL, MAX_INTERVAL = 1.0, 3600.0


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _bins_json(bins: dict[str, int]) -> str:
    return _dumps({str(k): bins[str(k)] for k in sorted(int(key) for key in bins)})


def _claim_message(
    conn: sqlite3.Connection, client_id: str, env: str, kind: str, msg: dict[str, Any], raw: bytes, now: float
) -> bool:
    cursor = conn.execute(
        "INSERT OR IGNORE INTO messages"
        " (client_id, message_uuid, kind, env, instance_uuid, received_at, body)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (client_id, msg["message_uuid"], kind, env, msg["instance_uuid"], now, raw),
    )
    return cursor.rowcount == 1


def store_startup(
    conn: sqlite3.Connection, client_id: str, env: str, msg: dict[str, Any], raw: bytes, now: float
) -> bool:
    """Store a validated startup message; False when it was a resend."""
    if not _claim_message(conn, client_id, env, "startup", msg, raw, now):
        return False
    paths = [{"method": p["method"].upper(), "path": p["path"]} for p in msg["paths"]]
    conn.execute(
        "INSERT INTO instances (client_id, env, instance_uuid, first_seen, last_seen, startup_at,"
        " client, versions, paths, openapi) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (client_id, env, instance_uuid) DO UPDATE SET"
        " last_seen = max(last_seen, excluded.last_seen), startup_at = excluded.startup_at,"
        " client = excluded.client, versions = excluded.versions, paths = excluded.paths,"
        " openapi = excluded.openapi",
        (
            client_id,
            env,
            msg["instance_uuid"],
            now,
            now,
            now,
            msg["client"],
            _dumps(msg["versions"]),
            _dumps(paths),
            msg.get("openapi"),
        ),
    )
    return True


def store_sync(
    conn: sqlite3.Connection, client_id: str, env: str, msg: dict[str, Any], raw: bytes, now: float
) -> bool:
    """Store a validated sync message; False when it was a resend."""
    if not _claim_message(conn, client_id, env, "sync", msg, raw, now):
        return False
    timestamp = float(msg["timestamp"])
    minute = int(timestamp // 60) * 60
    instance = msg["instance_uuid"]
    _record_heartbeat(conn, client_id, env, instance, timestamp, msg.get("resources"), now)
    key = (client_id, env, minute, instance)
    conn.executemany(
        "INSERT INTO request_counts VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT DO UPDATE SET request_count = request_count + excluded.request_count,"
        " request_size_sum = request_size_sum + excluded.request_size_sum,"
        " response_size_sum = response_size_sum + excluded.response_size_sum,"
        " response_times = merge_bins(response_times, excluded.response_times),"
        " request_sizes = merge_bins(request_sizes, excluded.request_sizes),"
        " response_sizes = merge_bins(response_sizes, excluded.response_sizes)",
        [
            (
                *key,
                item["consumer"] or NO_CONSUMER,
                item["method"],
                item["path"],
                item["status_code"],
                item["request_count"],
                item["request_size_sum"],
                item["response_size_sum"],
                _bins_json(item["response_times"]),
                _bins_json(item["request_sizes"]),
                _bins_json(item["response_sizes"]),
            )
            for item in msg["requests"]
        ],
    )
    conn.executemany(
        "INSERT INTO validation_errors VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT DO UPDATE SET error_count = error_count + excluded.error_count",
        [
            (
                *key,
                item["consumer"] or NO_CONSUMER,
                item["method"],
                item["path"],
                _dumps(item["loc"]),
                item["msg"],
                item["type"],
                item["error_count"],
            )
            for item in msg["validation_errors"]
        ],
    )
    conn.executemany(
        "INSERT INTO server_errors VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT DO UPDATE SET error_count = error_count + excluded.error_count,"
        " sentry_event_id = coalesce(excluded.sentry_event_id, sentry_event_id)",
        [_server_error_row(key, item) for item in msg["server_errors"]],
    )
    _record_consumers(conn, client_id, env, msg, timestamp)
    return True


def _server_error_row(key: tuple[str, str, int, str], item: dict[str, Any]) -> tuple[Any, ...]:
    identity = (item["consumer"], item["method"], item["path"], item["type"], item["msg"], item["traceback"])
    digest = hashlib.sha256(_dumps(identity).encode()).hexdigest()
    return (
        *key,
        digest,
        item["consumer"] or NO_CONSUMER,
        item["method"],
        item["path"],
        item["type"],
        item["msg"],
        item["traceback"],
        item.get("sentry_event_id"),
        item["error_count"],
    )


def _record_heartbeat(
    conn: sqlite3.Connection,
    client_id: str,
    env: str,
    instance: str,
    timestamp: float,
    resources: dict[str, Any] | None,
    now: float,
) -> None:
    """Update the instance row; the interval is the gap to the previous (older) sync timestamp."""
    row = conn.execute(
        "SELECT last_sync_ts, sync_interval FROM instances"
        " WHERE client_id = ? AND env = ? AND instance_uuid = ?",
        (client_id, env, instance),
    ).fetchone()
    cpu = resources["cpu_percent"] if resources else None
    memory = resources["memory_rss"] if resources else None
    if row is None:
        conn.execute(
            "INSERT INTO instances (client_id, env, instance_uuid, first_seen, last_seen, last_sync_at,"
            " last_sync_ts, syncs, cpu_percent, memory_rss) VALUES (?, ?, ?, ?, ?, ?, ?, 1, ?, ?)",
            (client_id, env, instance, now, now, now, timestamp, cpu, memory),
        )
        return
    last_ts, interval = row
    newest = last_ts is None or timestamp > last_ts
    if last_ts is not None and timestamp > last_ts:
        interval = min(MAX_INTERVAL, max(MIN_INTERVAL, timestamp - last_ts))
    conn.execute(
        "UPDATE instances SET last_seen = max(last_seen, ?), last_sync_at = ?, last_sync_ts = ?,"
        " sync_interval = ?, syncs = syncs + 1,"
        " cpu_percent = CASE WHEN ? THEN coalesce(?, cpu_percent) ELSE cpu_percent END,"
        " memory_rss = CASE WHEN ? THEN coalesce(?, memory_rss) ELSE memory_rss END"
        " WHERE client_id = ? AND env = ? AND instance_uuid = ?",
        (
            now,
            now,
            timestamp if newest else last_ts,
            interval,
            newest,
            cpu,
            newest,
            memory,
            client_id,
            env,
            instance,
        ),
    )


def _record_consumers(
    conn: sqlite3.Connection, client_id: str, env: str, msg: dict[str, Any], timestamp: float
) -> None:
    seen: set[str] = set()
    for key in ("requests", "validation_errors", "server_errors"):
        seen.update(item["consumer"] for item in msg[key] if item["consumer"])
    seen.update(item["identifier"] for item in msg["consumers"])
    conn.executemany(
        "INSERT INTO consumers (client_id, env, identifier, first_seen, last_seen) VALUES (?, ?, ?, ?, ?)"
        " ON CONFLICT DO UPDATE SET last_seen = max(last_seen, excluded.last_seen),"
        " first_seen = min(first_seen, excluded.first_seen)",
        [(client_id, env, identifier, timestamp, timestamp) for identifier in sorted(seen)],
    )
    for item in msg["consumers"]:
        identifier, name, group = item["identifier"], item["name"], item["group"]
        current = conn.execute(
            "SELECT name, group_name FROM consumers WHERE client_id = ? AND env = ? AND identifier = ?",
            (client_id, env, identifier),
        ).fetchone()
        if current is not None and tuple(current) == (name, group):
            continue
        conn.execute(
            "UPDATE consumers SET name = ?, group_name = ?"
            " WHERE client_id = ? AND env = ? AND identifier = ?",
            (name, group, client_id, env, identifier),
        )
        conn.execute(
            "INSERT INTO consumer_history (client_id, env, identifier, name, group_name, changed_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (client_id, env, identifier, name, group, timestamp),
        )


def store_log_file(
    conn: sqlite3.Connection,
    client_id: str,
    env: str,
    file_uuid: str,
    lines: Sequence[tuple[str, dict[str, Any]]],
    compressed: bytes,
    now: float,
) -> bool:
    """Store a validated request-log file given as ``(line_text, line)``; False when it was a resend."""
    cursor = conn.execute(
        "INSERT OR IGNORE INTO log_files (client_id, file_uuid, env, received_at, line_count, compressed)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (client_id, file_uuid, env, now, len(lines), compressed),
    )
    if cursor.rowcount != 1:
        return False
    conn.executemany(
        "INSERT OR IGNORE INTO request_log (client_id, env, file_uuid, request_uuid, timestamp, method, path,"
        " url, status_code, response_time, consumer, request_size, response_size, trace_id, exception_type,"
        " item) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        _log_rows(client_id, env, file_uuid, lines),
    )
    return True


def _log_rows(
    client_id: str, env: str, file_uuid: str, lines: Sequence[tuple[str, dict[str, Any]]]
) -> Iterable[tuple[Any, ...]]:
    for text, line in lines:
        request, response = line["request"], line["response"]
        exception = line.get("exception") or {}
        yield (
            client_id,
            env,
            file_uuid,
            line["uuid"],
            request["timestamp"],
            request["method"],
            request.get("path"),
            request["url"],
            response["status_code"],
            response["response_time"],
            request.get("consumer"),
            request.get("size"),
            response.get("size"),
            line.get("trace_id"),
            exception.get("type"),
            text,
        )


def store_rejection(
    conn: sqlite3.Connection,
    client_id: str,
    env: str,
    endpoint: str,
    status_code: int,
    detail: Any,
    now: float,
) -> None:
    """Keep a record of a rejected message (what the client got back), for debugging clients."""
    conn.execute(
        "INSERT INTO rejections (received_at, client_id, env, endpoint, status_code, detail)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (now, client_id, env, endpoint, status_code, json.dumps(detail)),
    )
