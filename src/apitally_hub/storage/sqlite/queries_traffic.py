"""Read side, traffic: apps, per-endpoint summaries, per-minute series and consumers.

Counts come from the per-minute aggregates; percentiles from the merged 10 ms bins (see
:mod:`.percentiles`). ``client_errors`` are responses 400-499, ``server_errors`` 500-599, and
``error_rate`` is ``(client_errors + server_errors) / requests``.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from apitally_hub.query.percentiles import merge_bins, percentiles
from apitally_hub.query.timewindow import Window
from apitally_hub.storage.sqlite.writes import NO_CONSUMER

_COUNT_COLUMNS = (
    "method, path, status_code, request_count, request_size_sum, response_size_sum, response_times"
)


@dataclass
class TrafficStats:
    requests: int = 0
    client_errors: int = 0
    server_errors: int = 0
    request_bytes: int = 0
    response_bytes: int = 0
    status_codes: dict[int, int] = field(default_factory=dict)
    bins: dict[int, int] = field(default_factory=dict)

    def add(self, status: int, count: int, req_bytes: int, resp_bytes: int, times_json: str) -> None:
        self.requests += count
        if 400 <= status < 500:
            self.client_errors += count
        elif status >= 500:
            self.server_errors += count
        self.request_bytes += req_bytes
        self.response_bytes += resp_bytes
        self.status_codes[status] = self.status_codes.get(status, 0) + count
        merge_bins(self.bins, {int(k): v for k, v in json.loads(times_json).items()})

    def as_dict(self) -> dict[str, Any]:
        ps = percentiles(self.bins)
        errors = self.client_errors + self.server_errors
        return {
            "requests": self.requests,
            "client_errors": self.client_errors,
            "server_errors": self.server_errors,
            "error_rate": round(errors / self.requests, 6) if self.requests else 0.0,
            "p50_ms": ps["p50"],
            "p95_ms": ps["p95"],
            "p99_ms": ps["p99"],
            "request_bytes": self.request_bytes,
            "response_bytes": self.response_bytes,
            "status_codes": {str(k): self.status_codes[k] for k in sorted(self.status_codes)},
        }


def _window_rows(
    conn: sqlite3.Connection,
    columns: str,
    client_id: str,
    env: str,
    window: Window,
    extra: str = "",
    params: Iterable[Any] = (),
) -> list[tuple[Any, ...]]:
    sql = (
        f"SELECT {columns} FROM request_counts WHERE client_id = ? AND env = ?"
        f" AND minute >= ? AND minute <= ?{extra}"
    )
    return conn.execute(sql, (client_id, env, window.first_minute, window.until, *params)).fetchall()


def list_apps(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    rows = conn.execute(
        "SELECT client_id, env, COUNT(*), MIN(first_seen), MAX(last_seen) FROM instances"
        " GROUP BY client_id, env ORDER BY client_id, env"
    ).fetchall()
    return [
        {"client_id": c, "env": e, "instances": n, "first_seen": first, "last_seen": last}
        for c, e, n, first, last in rows
    ]


def endpoints(
    conn: sqlite3.Connection, client_id: str, env: str, window: Window, *, include_idle: bool = False
) -> list[dict[str, Any]]:
    stats: dict[tuple[str, str], TrafficStats] = {}
    for method, path, status, count, req_b, resp_b, times in _window_rows(
        conn, _COUNT_COLUMNS, client_id, env, window
    ):
        stats.setdefault((method, path), TrafficStats()).add(status, count, req_b, resp_b, times)
    if include_idle:
        for (paths_json,) in conn.execute(
            "SELECT paths FROM instances WHERE client_id = ? AND env = ? AND paths IS NOT NULL",
            (client_id, env),
        ):
            for entry in json.loads(paths_json):
                stats.setdefault((entry["method"], entry["path"]), TrafficStats())
    return [
        {"method": method, "path": path, **stats[(method, path)].as_dict()}
        for method, path in sorted(stats, key=lambda k: (k[1], k[0]))
    ]


def timeseries(
    conn: sqlite3.Connection,
    client_id: str,
    env: str,
    window: Window,
    *,
    method: str | None = None,
    path: str | None = None,
) -> list[dict[str, Any]]:
    extra, params = "", []
    if method:
        extra += " AND method = ?"
        params.append(method.upper())
    if path:
        extra += " AND path = ?"
        params.append(path)
    stats: dict[int, TrafficStats] = {}
    rows = _window_rows(conn, "minute, " + _COUNT_COLUMNS, client_id, env, window, extra, params)
    for minute, _method, _path, status, count, req_b, resp_b, times in rows:
        stats.setdefault(minute, TrafficStats()).add(status, count, req_b, resp_b, times)
    return [{"minute": minute, **stats[minute].as_dict()} for minute in sorted(stats)]


def consumers(conn: sqlite3.Connection, client_id: str, env: str, window: Window) -> list[dict[str, Any]]:
    """Consumers seen in the window (or renamed in it), with their traffic and name/group history."""
    stats: dict[str, TrafficStats] = {}
    rows = _window_rows(
        conn, "consumer, " + _COUNT_COLUMNS, client_id, env, window, " AND consumer != ?", [NO_CONSUMER]
    )
    for consumer, _method, _path, status, count, req_b, resp_b, times in rows:
        stats.setdefault(consumer, TrafficStats()).add(status, count, req_b, resp_b, times)
    known = conn.execute(
        "SELECT identifier, name, group_name, first_seen, last_seen FROM consumers"
        " WHERE client_id = ? AND env = ? AND last_seen >= ?",
        (client_id, env, window.first_minute),
    ).fetchall()
    history: dict[str, list[dict[str, Any]]] = {}
    for identifier, name, group, changed_at in conn.execute(
        "SELECT identifier, name, group_name, changed_at FROM consumer_history"
        " WHERE client_id = ? AND env = ? ORDER BY changed_at, id",
        (client_id, env),
    ):
        history.setdefault(identifier, []).append({"name": name, "group": group, "changed_at": changed_at})
    result = []
    for identifier, name, group, first_seen, last_seen in known:
        traffic = stats.pop(identifier, TrafficStats()).as_dict()
        del traffic["status_codes"]
        result.append(
            {
                "identifier": identifier,
                "name": name,
                "group": group,
                "first_seen": first_seen,
                "last_seen": last_seen,
                **traffic,
                "history": history.get(identifier, []),
            }
        )
    result.sort(key=lambda c: (-c["requests"], c["identifier"]))
    return result
