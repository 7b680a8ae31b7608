"""Read side, events: validation errors, server errors, instances, request log, rejections."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Any

from apitally_hub.query.timewindow import Window
from apitally_hub.settings import OFFLINE_AFTER_INTERVALS
from apitally_hub.storage.sqlite.writes import NO_CONSUMER


def validation_errors(
    conn: sqlite3.Connection, client_id: str, env: str, window: Window
) -> list[dict[str, Any]]:
    rows = conn.execute(
        "SELECT method, path, loc, msg, type, SUM(error_count), COUNT(DISTINCT nullif(consumer, ?)),"
        " MIN(minute), MAX(minute) FROM validation_errors"
        " WHERE client_id = ? AND env = ? AND minute >= ? AND minute <= ?"
        " GROUP BY method, path, loc, msg, type ORDER BY SUM(error_count) DESC, path, method, loc",
        (NO_CONSUMER, client_id, env, window.first_minute, window.until),
    ).fetchall()
    return [
        {
            "method": method,
            "path": path,
            "loc": json.loads(loc),
            "msg": msg,
            "type": type_,
            "count": count,
            "consumers": consumers,
            "first_minute": first,
            "last_minute": last,
        }
        for method, path, loc, msg, type_, count, consumers, first, last in rows
    ]


def server_errors(conn: sqlite3.Connection, client_id: str, env: str, window: Window) -> list[dict[str, Any]]:
    rows = conn.execute(
        "SELECT method, path, type, msg, traceback, SUM(error_count), MAX(sentry_event_id),"
        " MIN(minute), MAX(minute) FROM server_errors"
        " WHERE client_id = ? AND env = ? AND minute >= ? AND minute <= ?"
        " GROUP BY method, path, type, msg, traceback ORDER BY SUM(error_count) DESC, path, method, type",
        (client_id, env, window.first_minute, window.until),
    ).fetchall()
    return [
        {
            "method": method,
            "path": path,
            "type": type_,
            "msg": msg,
            "traceback": traceback,
            "count": count,
            "sentry_event_id": sentry,
            "first_minute": first,
            "last_minute": last,
        }
        for method, path, type_, msg, traceback, count, sentry, first, last in rows
    ]


_INSTANCE_COLUMNS = (
    "instance_uuid, first_seen, last_seen, startup_at, last_sync_at, last_sync_ts, sync_interval, syncs,"
    " client, versions, paths, openapi, cpu_percent, memory_rss"
)


def _instance(row: tuple[Any, ...], now: float, default_interval: float, *, detail: bool) -> dict[str, Any]:
    (
        uuid,
        first_seen,
        last_seen,
        startup_at,
        last_sync_at,
        last_sync_ts,
        interval,
        syncs,
        client,
        versions,
        paths,
        openapi,
        cpu,
        memory,
    ) = row
    effective_interval = interval or default_interval
    heartbeat = last_sync_at if last_sync_at is not None else startup_at
    online = heartbeat is not None and now - heartbeat <= OFFLINE_AFTER_INTERVALS * effective_interval
    paths_list = json.loads(paths) if paths else []
    result: dict[str, Any] = {
        "instance_uuid": uuid,
        "online": online,
        "first_seen": first_seen,
        "last_seen": last_seen,
        "startup_at": startup_at,
        "last_sync_at": last_sync_at,
        "last_sync_timestamp": last_sync_ts,
        "sync_interval": effective_interval,
        "sync_interval_inferred": interval is not None,
        "syncs": syncs,
        "client": client,
        "versions": json.loads(versions) if versions else {},
        "path_count": len(paths_list),
        "has_openapi": openapi is not None,
        "cpu_percent": cpu,
        "memory_rss": memory,
    }
    if detail:
        result["paths"] = paths_list
        result["openapi"] = json.loads(openapi) if openapi else None
    return result


def instances(
    conn: sqlite3.Connection, client_id: str, env: str, now: float, default_interval: float
) -> list[dict[str, Any]]:
    rows = conn.execute(
        f"SELECT {_INSTANCE_COLUMNS} FROM instances WHERE client_id = ? AND env = ?"
        " ORDER BY last_seen DESC, instance_uuid",
        (client_id, env),
    ).fetchall()
    return [_instance(row, now, default_interval, detail=False) for row in rows]


def instance_detail(
    conn: sqlite3.Connection,
    client_id: str,
    env: str,
    instance_uuid: str,
    now: float,
    default_interval: float,
) -> dict[str, Any] | None:
    row = conn.execute(
        f"SELECT {_INSTANCE_COLUMNS} FROM instances WHERE client_id = ? AND env = ? AND instance_uuid = ?",
        (client_id, env, instance_uuid),
    ).fetchone()
    return None if row is None else _instance(row, now, default_interval, detail=True)


@dataclass(frozen=True)
class LogFilter:
    window: Window
    method: str | None = None
    path: str | None = None
    status: str | None = None
    """An exact code (``404``) or a class (``4xx``)."""
    consumer: str | None = None
    search: str | None = None
    """Case-insensitive substring of the URL."""
    limit: int = 100
    offset: int = 0


_LOG_COLUMNS = (
    "request_uuid, timestamp, method, path, url, status_code, response_time, consumer, request_size,"
    " response_size, trace_id, exception_type"
)


def _log_summary(row: tuple[Any, ...]) -> dict[str, Any]:
    (uuid, ts, method, path, url, status, response_time, consumer, req_size, resp_size, trace_id, exc) = row
    return {
        "uuid": uuid,
        "timestamp": ts,
        "method": method,
        "path": path,
        "url": url,
        "status_code": status,
        "response_time_ms": round(response_time * 1000, 3),
        "consumer": consumer,
        "request_size": req_size,
        "response_size": resp_size,
        "trace_id": trace_id,
        "exception_type": exc,
    }


def request_log(conn: sqlite3.Connection, client_id: str, env: str, flt: LogFilter) -> dict[str, Any]:
    where = ["client_id = ?", "env = ?", "timestamp >= ?", "timestamp <= ?"]
    params: list[Any] = [client_id, env, flt.window.since, flt.window.until]
    if flt.method:
        where.append("method = ?")
        params.append(flt.method.upper())
    if flt.path:
        where.append("path = ?")
        params.append(flt.path)
    if flt.status:
        if flt.status.endswith("xx"):
            low = int(flt.status[0]) * 100
            where.append("status_code >= ? AND status_code < ?")
            params += [low, low + 100]
        else:
            where.append("status_code = ?")
            params.append(int(flt.status))
    if flt.consumer:
        where.append("consumer = ?")
        params.append(flt.consumer)
    if flt.search:
        where.append("instr(lower(url), ?) > 0")
        params.append(flt.search.lower())
    condition = " AND ".join(where)
    total = conn.execute(f"SELECT COUNT(*) FROM request_log WHERE {condition}", params).fetchone()[0]
    rows = conn.execute(
        f"SELECT {_LOG_COLUMNS} FROM request_log WHERE {condition} ORDER BY timestamp DESC, id DESC"
        " LIMIT ? OFFSET ?",
        [*params, flt.limit, flt.offset],
    ).fetchall()
    return {
        "total": total,
        "limit": flt.limit,
        "offset": flt.offset,
        "items": [_log_summary(r) for r in rows],
    }


def request_log_item(
    conn: sqlite3.Connection, client_id: str, env: str, request_uuid: str
) -> dict[str, Any] | None:
    row = conn.execute(
        f"SELECT {_LOG_COLUMNS}, file_uuid, item FROM request_log"
        " WHERE client_id = ? AND env = ? AND request_uuid = ?",
        (client_id, env, request_uuid),
    ).fetchone()
    if row is None:
        return None
    return {**_log_summary(row[:-2]), "file_uuid": row[-2], "item": json.loads(row[-1])}


def rejections(
    conn: sqlite3.Connection, client_id: str, env: str, window: Window, limit: int
) -> list[dict[str, Any]]:
    rows = conn.execute(
        "SELECT received_at, endpoint, status_code, detail FROM rejections"
        " WHERE client_id = ? AND env = ? AND received_at >= ? AND received_at <= ?"
        " ORDER BY received_at DESC, id DESC LIMIT ?",
        (client_id, env, window.since, window.until, limit),
    ).fetchall()
    return [
        {"received_at": at, "endpoint": endpoint, "status_code": status, "detail": json.loads(detail)}
        for at, endpoint, status, detail in rows
    ]
