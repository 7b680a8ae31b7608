"""The hub's query layer: every number the JSON API, the dashboard, the report and alerting show
comes from a method here (one code path), computed from :class:`~apitally_hub.storage.base.Storage`
with the windows planned by :mod:`.planner` and the statistics of :mod:`.stats`.

Methods are synchronous (call them from a worker thread) and return plain JSON-able values.
Lists are paged: ``limit`` items from ``cursor`` (an opaque string from the previous page's
``next_cursor``; None when there is no next page).
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from apitally_hub.query import planner, stats, uptime
from apitally_hub.query.percentiles import percentiles as percentile_values
from apitally_hub.query.settings import APDEX_MS, read_settings
from apitally_hub.query.timewindow import Window
from apitally_hub.storage.base import (
    MINUTE,
    NO_CONSUMER,
    AppKey,
    EventQuery,
    InstanceInfo,
    LogQuery,
    LogSummary,
    Storage,
    TrafficFilter,
    TrafficQuery,
    TrafficRow,
)

OFFLINE_AFTER_INTERVALS = 3
"""An instance is offline when its last sync is older than this many sync intervals."""


UPTIME_MIN_WINDOW = 180.0
"""An app env is down after no sync for 3 sync intervals, but never sooner than this."""

EndpointMatch = Callable[[str, str], bool]
"""``(method, path) -> in scope?``"""


class BadCursor(ValueError):
    """A ``cursor`` that no page of this list handed out."""


def encode_cursor(value: Mapping[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(value, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None, *keys: str) -> dict[str, Any] | None:
    if cursor is None:
        return None
    try:
        value = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise BadCursor("cursor is not one this list handed out") from None
    if not isinstance(value, dict) or set(value) != set(keys):
        raise BadCursor("cursor is not one this list handed out")
    for key in keys:
        if not isinstance(value[key], int | float) or isinstance(value[key], bool) or value[key] < 0:
            raise BadCursor("cursor is not one this list handed out")
    return value


def _offset(cursor: str | None) -> int:
    value = decode_cursor(cursor, "o")
    return int(value["o"]) if value else 0


def _next_offset(offset: int, shown: int, total: int) -> str | None:
    return encode_cursor({"o": offset + shown}) if offset + shown < total else None


@dataclass(frozen=True)
class Page:
    limit: int = 100
    cursor: str | None = None


ALL_TRAFFIC = TrafficFilter()
IDENTIFIED = TrafficFilter(identified_only=True)


class QueryService:
    def __init__(
        self,
        storage: Storage,
        retention: Mapping[int, float],
        *,
        default_sync_interval: float = 60.0,
        uptime_min_window: float = UPTIME_MIN_WINDOW,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.storage = storage
        self.retention = dict(retention)
        self.default_sync_interval = default_sync_interval
        self.uptime_min_window = uptime_min_window
        self.clock = clock

    # -- windows ------------------------------------------------------------------------------

    def _segments(self, window: Window) -> tuple[Any, ...]:
        return planner.summary_segments(window.since, window.until, self.clock(), self.retention)

    def _traffic(self, app: AppKey, window: Window, **query: Any) -> list[TrafficRow]:
        return self.storage.traffic(TrafficQuery(app, self._segments(window), **query))

    # -- apps ---------------------------------------------------------------------------------

    def apps(self, page: Page = Page(), *, window: Window | None = None) -> dict[str, Any]:
        """The apps (client id and env); with ``window``, each with its ``overview`` over the
        window and its ``status`` now (what the dashboard's apps page shows)."""
        infos = self.storage.list_apps()
        offset = _offset(page.cursor)
        shown = infos[offset : offset + page.limit]
        apps = []
        for info in shown:
            entry: dict[str, Any] = {
                "client_id": info.app.client_id,
                "env": info.app.env,
                "instances": info.instances,
                "first_seen": info.first_seen,
                "last_seen": info.last_seen,
                "last_sync_at": info.last_sync_at,
            }
            if window is not None:
                entry["overview"] = self.app_overview(info.app, window)
                entry["status"] = self.uptime_status(info.app)
            apps.append(entry)
        next_cursor = _next_offset(offset, len(shown), len(infos))
        return {"apps": apps, "total": len(infos), "next_cursor": next_cursor}

    def envs(self, client_id: str) -> list[str]:
        """The envs of a client id."""
        return [info.app.env for info in self.storage.list_apps() if info.app.client_id == client_id]

    def endpoint_keys(self, app: AppKey, window: Window) -> list[tuple[str, str]]:
        """(method, path) of every endpoint with traffic in the window or announced at startup,
        by path (cheap: no percentiles; for pickers)."""
        rows = self._traffic(app, window, group_by=("method", "path"))
        keys = {(str(r.key[0]), str(r.key[1])) for r in rows} | set(self.app_paths(app))
        return sorted(keys, key=lambda mp: (mp[1], mp[0]))

    def group_names(self, app: AppKey) -> list[str]:
        return sorted(group for group, _ in self.storage.consumer_groups(app))

    def settings(self, app: AppKey) -> dict[str, Any]:
        """The app's settings (``apdex_ms``), defaults filled in."""
        return read_settings(self.storage, app)

    def _apdex_ms(self, app: AppKey, apdex_ms: int | None) -> int:
        return int(self.settings(app)[APDEX_MS]) if apdex_ms is None else apdex_ms

    def app_overview(
        self, app: AppKey, window: Window, *, flt: TrafficFilter = ALL_TRAFFIC, apdex_ms: int | None = None
    ) -> dict[str, Any]:
        """Totals of one app over the window, and its instances online now. ``apdex_ms`` None:
        the app's own threshold (its settings)."""
        apdex_ms = self._apdex_ms(app, apdex_ms)
        [row] = self._traffic(app, window, filter=flt, response_times=True)
        online = sum(1 for instance in self.instances(app)["instances"] if instance["online"])
        minutes = max((window.until - window.since) / MINUTE, 1.0)
        return {
            **stats.traffic_stats(row, apdex_ms=apdex_ms),
            "apdex_ms": apdex_ms,
            "requests_per_minute": round(row.request_count / minutes, 3),
            "instances_online": online,
        }

    # -- traffic ------------------------------------------------------------------------------

    def endpoints(
        self,
        app: AppKey,
        window: Window,
        *,
        flt: TrafficFilter = ALL_TRAFFIC,
        include_idle: bool = False,
        apdex_ms: int | None = None,
        sort: str = "path",
        descending: bool | None = None,
        page: Page = Page(),
    ) -> dict[str, Any]:
        """One entry per endpoint (method, path) with traffic in the window — and with
        ``include_idle`` those the app announced at startup without any — sorted by ``sort`` (a
        key of :data:`ENDPOINT_SORTS`; ``descending`` None: the key's natural order)."""
        apdex_ms = self._apdex_ms(app, apdex_ms)
        rows = self._traffic(
            app,
            window,
            group_by=("method", "path", "status_code"),
            filter=flt,
            response_times=True,
        )
        by_endpoint: dict[tuple[str, str], list[TrafficRow]] = {}
        for row in rows:
            by_endpoint.setdefault((row.key[0], row.key[1]), []).append(row)
        if include_idle:
            for method, path in self.app_paths(app):
                if (flt.method is None or flt.method.upper() == method) and (
                    flt.path is None or flt.path == path
                ):
                    by_endpoint.setdefault((method, path), [])
        result = []
        for (method, path), parts in by_endpoint.items():
            merged = stats.merge_rows(parts, (method, path))
            result.append(
                {
                    "method": method,
                    "path": path,
                    **stats.traffic_stats(merged, apdex_ms=apdex_ms),
                    "status_codes": {
                        str(r.key[2]): r.request_count for r in sorted(parts, key=lambda r: r.key[2])
                    },
                }
            )
        result = sort_endpoints(result, sort, descending)
        offset = _offset(page.cursor)
        shown = result[offset : offset + page.limit]
        return {
            "apdex_ms": apdex_ms,
            "endpoints": shown,
            "total": len(result),
            "next_cursor": _next_offset(offset, len(shown), len(result)),
        }

    def error_status_codes(
        self, app: AppKey, window: Window, *, flt: TrafficFilter = ALL_TRAFFIC
    ) -> list[dict[str, Any]]:
        """Responses 400-599 per (method, path, status code), most frequent first."""
        rows = self._traffic(app, window, group_by=("method", "path", "status_code"), filter=flt)
        errors = [
            {"method": r.key[0], "path": r.key[1], "status_code": int(r.key[2]), "requests": r.request_count}
            for r in rows
            if 400 <= int(r.key[2]) <= 599 and r.request_count
        ]
        errors.sort(key=lambda e: (-e["requests"], e["status_code"], e["path"], e["method"]))
        return errors

    def app_paths(self, app: AppKey) -> list[tuple[str, str]]:
        """Endpoints the app's instances announced at startup."""
        seen: set[tuple[str, str]] = set()
        for instance in self.storage.instances(app):
            seen.update((entry["method"].upper(), entry["path"]) for entry in instance.paths)
        return sorted(seen, key=lambda mp: (mp[1], mp[0]))

    def timeseries(
        self,
        app: AppKey,
        window: Window,
        *,
        flt: TrafficFilter = ALL_TRAFFIC,
        bucket_seconds: int | None = None,
        apdex_ms: int | None = None,
        percentiles: bool = True,
    ) -> dict[str, Any]:
        """Per bucket of ``bucket_seconds`` (None: chosen for the window) the traffic numbers,
        requests per status code and per class (``2xx`` ...) and the rate per minute.
        ``percentiles=False``: without percentiles and Apdex (None), which need every row's
        histogram — the cost of a fine chart over a long window; see :meth:`percentiles`."""
        apdex_ms = self._apdex_ms(app, apdex_ms)
        bucket = planner.chart_bucket(window.since, window.until, bucket_seconds)
        bucket, segments = planner.chart_segments(
            window.since, window.until, bucket, self.clock(), self.retention
        )
        # bins per bucket, and only the counts per status code: a third of the rows to sum and
        # nothing to merge in Python (a 24-hour chart of minutes has 1 440 buckets)
        totals = self.storage.traffic(
            TrafficQuery(app, segments, ("bucket",), flt, bucket, response_times=percentiles)
        )
        by_status = self.storage.traffic(TrafficQuery(app, segments, ("bucket", "status_code"), flt, bucket))
        status_codes: dict[int, dict[str, int]] = {}
        for row in sorted(by_status, key=lambda r: r.key):
            status_codes.setdefault(int(row.key[0]), {})[str(row.key[1])] = row.request_count
        points = []
        for row in sorted(totals, key=lambda r: r.key):
            codes = status_codes.get(int(row.key[0]), {})
            classes: dict[str, int] = {}
            for code, count in codes.items():
                classes[f"{code[0]}xx"] = classes.get(f"{code[0]}xx", 0) + count
            point = {
                "bucket": int(row.key[0]),
                **stats.traffic_stats(row, apdex_ms=apdex_ms),
                "requests_per_minute": round(row.request_count * MINUTE / bucket, 3),
                "status_codes": codes,
                "status_classes": dict(sorted(classes.items())),
            }
            if not percentiles:
                point.update(p50_ms=None, p75_ms=None, p95_ms=None, p99_ms=None, apdex=None)
            points.append(point)
        return {"bucket_seconds": bucket, "points": points}

    def percentiles(
        self,
        app: AppKey,
        window: Window,
        *,
        flt: TrafficFilter = ALL_TRAFFIC,
        bucket_seconds: int | None = None,
    ) -> dict[str, Any]:
        """Response-time percentiles (p50/p75/p95/p99) and requests per bucket: a chart of
        percentiles, which can take coarser buckets than the chart of requests."""
        bucket = planner.chart_bucket(window.since, window.until, bucket_seconds)
        bucket, segments = planner.chart_segments(
            window.since, window.until, bucket, self.clock(), self.retention
        )
        rows = self.storage.traffic(
            TrafficQuery(app, segments, ("bucket",), flt, bucket, response_times=True)
        )
        points = []
        for row in sorted(rows, key=lambda r: int(r.key[0])):
            ps = percentile_values(row.response_times, (50, 75, 95, 99))
            points.append(
                {
                    "bucket": int(row.key[0]),
                    "requests": row.request_count,
                    **{f"{name}_ms": value for name, value in ps.items()},
                }
            )
        return {"bucket_seconds": bucket, "points": points}

    def response_time_histogram(
        self, app: AppKey, window: Window, *, flt: TrafficFilter = ALL_TRAFFIC
    ) -> dict[str, int]:
        [row] = self._traffic(app, window, filter=flt, response_times=True)
        return {str(edge): row.response_times[edge] for edge in sorted(row.response_times)}

    def size_histograms(
        self, app: AppKey, window: Window, *, flt: TrafficFilter = ALL_TRAFFIC
    ) -> dict[str, dict[str, int]]:
        """Request and response sizes: kB bin (lower edge) -> requests. Per endpoint and status only
        (the store keeps size bins per endpoint, not per consumer): consumer filters are ignored."""
        flt = replace(flt, consumer=None, consumer_group=None, identified_only=False)
        [row] = self._traffic(app, window, filter=flt, sizes=True)
        return {
            name: {str(edge): bins[edge] for edge in sorted(bins)}
            for name, bins in (("request_sizes", row.request_sizes), ("response_sizes", row.response_sizes))
        }

    # -- consumers ----------------------------------------------------------------------------

    def consumers(
        self,
        app: AppKey,
        window: Window,
        *,
        flt: TrafficFilter = ALL_TRAFFIC,
        page: Page = Page(),
        history: bool = True,
        sort: str = "requests",
        count: bool = True,
    ) -> dict[str, Any]:
        """The identified consumers with traffic in the window, with their numbers, paged.

        ``sort="requests"``: most requests first. ``sort="last_seen"``: most recently seen first,
        from the registry — only the page's consumers' traffic is read, so a long window over
        many consumers stays cheap; it applies to windows that end now and filters by consumer or
        group only (else the list is by requests; ``sort`` in the answer says which).
        ``count=False``: no ``total`` (None) — a second pass over the window's rows saved, for a
        top-N list.
        """
        offset = _offset(page.cursor)
        flt = replace(flt, identified_only=True)
        endpoint_filter = any(
            v is not None for v in (flt.method, flt.path, flt.status_code, flt.status_class, flt.consumers)
        )
        if sort == "last_seen" and not endpoint_filter and window.until >= self.clock() - MINUTE:
            return self._recent_consumers(app, window, flt, page, offset, history)
        query = TrafficQuery(
            app,
            self._segments(window),
            ("consumer",),
            flt,
            order="requests",
            limit=page.limit + (0 if count else 1),
            offset=offset,
        )
        rows = self.storage.traffic(query)
        total: int | None = None
        if count:
            total = self.storage.count_traffic_groups(query)
            next_cursor = _next_offset(offset, len(rows), total)
        else:
            more, rows = len(rows) > page.limit, rows[: page.limit]
            next_cursor = encode_cursor({"o": offset + len(rows)}) if more else None
        infos = self.storage.consumers_info(app, [row.key[0] for row in rows])
        result = self._consumer_entries(app, rows, infos, history)
        return {"sort": "requests", "consumers": result, "total": total, "next_cursor": next_cursor}

    def _recent_consumers(
        self, app: AppKey, window: Window, flt: TrafficFilter, page: Page, offset: int, history: bool
    ) -> dict[str, Any]:
        if flt.consumer is not None:
            found = self.storage.consumers_info(app, [flt.consumer])
            shown = [info for info in found.values() if info.last_seen >= window.since]
            shown = [i for i in shown if flt.consumer_group is None or i.group == flt.consumer_group]
            total = len(shown)
        else:
            shown, total = self.storage.recent_consumers(
                app, window.since, group=flt.consumer_group, limit=page.limit, offset=offset
            )
        ids = tuple(info.identifier for info in shown)
        query = TrafficQuery(app, self._segments(window), ("consumer",), TrafficFilter(consumers=ids))
        traffic = {row.key[0]: row for row in self.storage.traffic(query)}
        rows = [traffic.get(i) or TrafficRow((i,), 0, 0, 0, 0, 0, {}, {}, {}) for i in ids]
        result = self._consumer_entries(app, rows, {info.identifier: info for info in shown}, history)
        return {
            "sort": "last_seen",
            "consumers": result,
            "total": total,
            "next_cursor": _next_offset(offset, len(shown), total),
        }

    def _consumer_entries(
        self, app: AppKey, rows: list[TrafficRow], infos: Mapping[str, Any], history: bool
    ) -> list[dict[str, Any]]:
        identifiers = [row.key[0] for row in rows]
        changes: dict[str, list[dict[str, Any]]] = {}
        if history:
            for change in self.storage.consumer_history(app, identifiers):
                changes.setdefault(change.identifier, []).append(
                    {"name": change.name, "group": change.group, "changed_at": change.changed_at}
                )
        result = []
        for row in rows:
            identifier = row.key[0]
            info = infos.get(identifier)
            traffic = stats.traffic_stats(row)
            for key in ("p50_ms", "p75_ms", "p95_ms", "p99_ms"):
                del traffic[key]
            result.append(
                {
                    "identifier": identifier,
                    "name": info.name if info else None,
                    "group": info.group if info else None,
                    "first_seen": info.first_seen if info else None,
                    "last_seen": info.last_seen if info else None,
                    **traffic,
                    **({"history": changes.get(identifier, [])} if history else {}),
                }
            )
        return result

    def consumer_groups(self, app: AppKey, window: Window) -> list[dict[str, Any]]:
        sizes = dict(self.storage.consumer_groups(app))
        rows = {
            row.key[0]: row
            for row in self._traffic(app, window, group_by=("consumer_group",), filter=IDENTIFIED)
        }
        result = []
        for group, members in sorted(sizes.items()):
            row = rows.get(group) or TrafficRow((group,), 0, 0, 0, 0, 0, {}, {}, {})
            traffic = stats.traffic_stats(row)
            result.append(
                {
                    "group": group,
                    "consumers": members,
                    "requests": traffic["requests"],
                    "client_errors": traffic["client_errors"],
                    "server_errors": traffic["server_errors"],
                    "error_rate": traffic["error_rate"],
                }
            )
        return result

    def consumer(self, app: AppKey, identifier: str, window: Window) -> dict[str, Any] | None:
        """One consumer: its registry entry, name/group history and traffic over the window;
        None when the app never saw it."""
        info = self.storage.consumers_info(app, [identifier]).get(identifier)
        if info is None:
            return None
        [row] = self._traffic(app, window, filter=TrafficFilter(consumer=identifier), response_times=True)
        history = [
            {"name": c.name, "group": c.group, "changed_at": c.changed_at}
            for c in self.storage.consumer_history(app, [identifier])
        ]
        return {
            "identifier": identifier,
            "name": info.name,
            "group": info.group,
            "first_seen": info.first_seen,
            "last_seen": info.last_seen,
            **stats.traffic_stats(row),
            "history": history,
        }

    # -- errors -------------------------------------------------------------------------------

    def validation_errors(
        self, app: AppKey, window: Window, *, flt: TrafficFilter = ALL_TRAFFIC, page: Page = Page()
    ) -> dict[str, Any]:
        offset = _offset(page.cursor)
        rows, total = self.storage.validation_errors(
            EventQuery(app, self._segments(window), flt, page.limit, offset)
        )
        return {
            "validation_errors": [
                {
                    "method": r.method,
                    "path": r.path,
                    "loc": json.loads(r.loc),
                    "msg": r.msg,
                    "type": r.type,
                    "count": r.count,
                    "consumers": r.consumers,
                    "first_bucket": r.first_bucket,
                    "last_bucket": r.last_bucket,
                }
                for r in rows
            ],
            "total": total,
            "next_cursor": _next_offset(offset, len(rows), total),
        }

    def server_errors(
        self, app: AppKey, window: Window, *, flt: TrafficFilter = ALL_TRAFFIC, page: Page = Page()
    ) -> dict[str, Any]:
        offset = _offset(page.cursor)
        rows, total = self.storage.server_errors(
            EventQuery(app, self._segments(window), flt, page.limit, offset)
        )
        return {
            "server_errors": [
                {
                    "id": r.error_hash,
                    "method": r.method,
                    "path": r.path,
                    "type": r.type,
                    "msg": r.msg,
                    "traceback": r.traceback,
                    "sentry_event_id": r.sentry_event_id,
                    "count": r.count,
                    "consumers": r.consumers,
                    "first_bucket": r.first_bucket,
                    "last_bucket": r.last_bucket,
                }
                for r in rows
            ],
            "total": total,
            "next_cursor": _next_offset(offset, len(rows), total),
        }

    # -- instances and uptime -----------------------------------------------------------------

    def _instance(self, info: InstanceInfo, now: float, *, detail: bool) -> dict[str, Any]:
        interval = info.sync_interval or self.default_sync_interval
        heartbeat = info.last_sync_at if info.last_sync_at is not None else info.startup_at
        online = heartbeat is not None and now - heartbeat <= OFFLINE_AFTER_INTERVALS * interval
        result: dict[str, Any] = {
            "instance_uuid": info.instance_uuid,
            "online": online,
            "first_seen": info.first_seen,
            "last_seen": info.last_seen,
            "startup_at": info.startup_at,
            "last_sync_at": info.last_sync_at,
            "last_sync_timestamp": info.last_sync_ts,
            "sync_interval": interval,
            "sync_interval_inferred": info.sync_interval is not None,
            "syncs": info.syncs,
            "client": info.client,
            "versions": info.versions,
            "path_count": len(info.paths),
            "has_openapi": info.openapi is not None,
            "cpu_percent": info.cpu_percent,
            "memory_rss": info.memory_rss,
        }
        if detail:
            result["paths"] = info.paths
            result["openapi"] = json.loads(info.openapi) if info.openapi else None
        return result

    def instances(self, app: AppKey, page: Page = Page()) -> dict[str, Any]:
        now = self.clock()
        infos = self.storage.instances(app)
        offset = _offset(page.cursor)
        shown = infos[offset : offset + page.limit]
        return {
            "now": now,
            "instances": [self._instance(info, now, detail=False) for info in shown],
            "total": len(infos),
            "next_cursor": _next_offset(offset, len(shown), len(infos)),
        }

    def instance(self, app: AppKey, instance_uuid: str) -> dict[str, Any] | None:
        now = self.clock()
        for info in self.storage.instances(app):
            if info.instance_uuid == instance_uuid:
                return self._instance(info, now, detail=True)
        return None

    def heartbeats(self, app: AppKey, window: Window) -> list[tuple[int, int]]:
        """(minute, syncs) for each minute of the window in which the app synced."""
        return self.storage.heartbeats(app, window.first_minute, window.last_minute)

    def _down_window(self, infos: list[InstanceInfo]) -> tuple[float | None, float, float]:
        """(last heartbeat, sync interval, down window) of an app env (see :mod:`.uptime`)."""
        beats = [(i.last_sync_at or i.startup_at or 0.0, i) for i in infos if i.last_sync_at or i.startup_at]
        inferred = [i.sync_interval for i in infos if i.sync_interval]
        last = max(beats, key=lambda b: b[0]) if beats else None
        interval = last[1].sync_interval if last else None
        interval = interval or min(inferred, default=self.default_sync_interval)
        return (last[0] if last else None), interval, uptime.down_window(interval, self.uptime_min_window)

    def uptime_status(self, app: AppKey) -> dict[str, Any]:
        """Up or down now: ``status`` is ``up``, ``down`` or ``unknown`` (never seen)."""
        now = self.clock()
        last, interval, window = self._down_window(self.storage.instances(app))
        check = self.storage.alerts.health_check(app)
        health = None
        if check is not None and check.config.get("enabled", True):
            health = {
                "url": check.url,
                "status": check.status,
                "checked_at": check.checked_at,
                "status_code": check.status_code,
                "latency_ms": check.latency_ms,
                "error": check.error,
                "since": check.changed_at,
            }
        heartbeat = "unknown" if last is None else ("up" if now - last <= window else "down")
        status = heartbeat
        down_since = last + window if heartbeat == "down" and last is not None else None
        if health is not None and health["status"] == "down":
            status, down_since = "down", min(filter(None, (down_since, check.changed_at if check else None)))
        elif heartbeat == "unknown" and health is not None and health["status"] == "up":
            status = "up"
        return {
            "status": status,
            "down_since": down_since,
            "heartbeat": {
                "status": heartbeat,
                "last_sync_at": last,
                "sync_interval": interval,
                "window": window,
            },
            "health_check": health,
        }

    def uptime(self, app: AppKey, window: Window) -> dict[str, Any]:
        """The status now, and over the window: down intervals, an up/down timeline, uptime per day."""
        now = self.clock()
        until = min(window.until, now)
        infos = self.storage.instances(app)
        last, _, down_window = self._down_window(infos)
        beats = self.heartbeats(app, window)
        first_seen = min((i.first_seen for i in infos), default=None)
        events = self.storage.alerts.health_events(app, window.since, until)
        firsts = (first_seen, beats[0][0] if beats else None, events[0].at if events else None)
        starts = [t for t in firsts if t]
        observed_since = max(window.since, min(starts)) if starts else until
        down = uptime.union(
            uptime.heartbeat_down_intervals(
                (m for m, _ in beats), down_window, observed_since, until, last if last else None
            )
            + uptime.health_down_intervals([(e.at, e.status) for e in events], observed_since, until)
        )
        observed = max(until - observed_since, 0.0)
        lost = uptime.measure(down, observed_since, until)
        return {
            **self.uptime_status(app),
            "observed_since": observed_since if observed else None,
            "uptime": round(1 - lost / observed, 6) if observed else None,
            "down_intervals": [{"start": a, "end": b} for a, b in down],
            "timeline": uptime.timeline(down, observed_since, until) if observed else [],
            "days": uptime.days(down, observed_since, until) if observed else [],
            "heartbeats": [{"minute": m, "syncs": n} for m, n in beats],
        }

    # -- values for alert rules ---------------------------------------------------------------

    def scoped_traffic(
        self,
        app: AppKey,
        window: Window,
        *,
        flt: TrafficFilter = ALL_TRAFFIC,
        match: EndpointMatch | None = None,
        by: str | None = None,
        apdex_ms: int = stats.DEFAULT_APDEX_MS,
    ) -> dict[tuple[str, ...], dict[str, Any]]:
        """Traffic stats (as :func:`.stats.traffic_stats`, with Apdex) per label set: one set
        ``()`` for all traffic in scope, or one per endpoint ``(method, path)`` (``by="endpoint"``)
        or per consumer ``(identifier,)`` (``by="consumer"``, identified requests only)."""
        if by == "consumer":
            flt = replace(flt, identified_only=True)
        dims: tuple[Any, ...] = ("method", "path") if (match is not None or by == "endpoint") else ()
        if by == "consumer":
            dims = ("consumer", *dims)
        rows = self._traffic(app, window, group_by=dims, filter=flt, response_times=True)
        grouped: dict[tuple[str, ...], list[TrafficRow]] = {}
        for row in rows:
            named = dict(zip(dims, row.key, strict=True))
            if match is not None and not match(named["method"], named["path"]):
                continue
            key: tuple[str, ...] = ()
            if by == "endpoint":
                key = (named["method"], named["path"])
            elif by == "consumer":
                key = (named["consumer"],)
            grouped.setdefault(key, []).append(row)
        if by is None and not grouped:
            grouped[()] = []
        return {
            key: stats.traffic_stats(stats.merge_rows(parts), apdex_ms=apdex_ms)
            for key, parts in grouped.items()
        }

    def scoped_validation_errors(
        self,
        app: AppKey,
        window: Window,
        *,
        flt: TrafficFilter = ALL_TRAFFIC,
        match: EndpointMatch | None = None,
        by_endpoint: bool = False,
    ) -> dict[tuple[str, ...], int]:
        """Validation errors in scope: one total ``()``, or one per endpoint ``(method, path)``."""
        segments = self._segments(window)
        totals: dict[tuple[str, ...], int] = {} if by_endpoint else {(): 0}
        offset = 0
        while True:
            rows, total = self.storage.validation_errors(EventQuery(app, segments, flt, 1000, offset))
            for row in rows:
                if match is None or match(row.method, row.path):
                    key = (row.method, row.path) if by_endpoint else ()
                    totals[key] = totals.get(key, 0) + row.count
            offset += len(rows)
            if not rows or offset >= total:
                return totals

    # -- request log and rejections -----------------------------------------------------------

    def request_log(self, query: LogQuery, cursor: str | None = None) -> dict[str, Any]:
        before = decode_cursor(cursor, "t", "id")
        limit = query.limit
        query = replace(
            query, limit=limit + 1, before=(float(before["t"]), int(before["id"])) if before else None
        )
        items, total = self.storage.request_log(query)
        shown = items[:limit]
        next_cursor = None
        if len(items) > limit:
            next_cursor = encode_cursor({"t": shown[-1].timestamp, "id": shown[-1].row_id})
        return {
            "total": total,
            "limit": limit,
            "items": [_log_summary(i) for i in shown],
            "next_cursor": next_cursor,
        }

    def request_log_item(self, app: AppKey, request_uuid: str) -> dict[str, Any] | None:
        found = self.storage.request_log_item(app, request_uuid)
        if found is None:
            return None
        summary, file_uuid, item = found
        return {**_log_summary(summary), "file_uuid": file_uuid, "item": json.loads(item)}

    def rejections(self, app: AppKey, window: Window, page: Page = Page()) -> dict[str, Any]:
        before = decode_cursor(page.cursor, "t", "id")
        rows = self.storage.rejections(
            app,
            window.since,
            window.until,
            limit=page.limit + 1,
            before=(float(before["t"]), int(before["id"])) if before else None,
        )
        shown = rows[: page.limit]
        next_cursor = None
        if len(rows) > page.limit:
            next_cursor = encode_cursor({"t": shown[-1].received_at, "id": shown[-1].row_id})
        return {
            "rejections": [
                {
                    "received_at": r.received_at,
                    "endpoint": r.endpoint,
                    "status_code": r.status_code,
                    "detail": json.loads(r.detail),
                }
                for r in shown
            ],
            "next_cursor": next_cursor,
        }


def _log_summary(item: LogSummary) -> dict[str, Any]:
    return {
        "uuid": item.request_uuid,
        "timestamp": item.timestamp,
        "method": item.method,
        "path": item.path,
        "url": item.url,
        "status_code": item.status_code,
        "response_time_ms": round(item.response_time * 1000, 3),
        "consumer": item.consumer,
        "request_size": item.request_size,
        "response_size": item.response_size,
        "trace_id": item.trace_id,
        "exception_type": item.exception_type,
    }


def _field(name: str) -> Callable[[dict[str, Any]], Any]:
    return lambda e: e[name]


ENDPOINT_SORTS: dict[str, tuple[Callable[[dict[str, Any]], Any], bool]] = {
    "path": (_field("path"), False),
    "method": (_field("method"), False),
    "requests": (_field("requests"), True),
    "client_errors": (_field("client_errors"), True),
    "server_errors": (_field("server_errors"), True),
    "errors": (lambda e: e["client_errors"] + e["server_errors"], True),
    "error_rate": (_field("error_rate"), True),
    "p50": (_field("p50_ms"), True),
    "p75": (_field("p75_ms"), True),
    "p95": (_field("p95_ms"), True),
    "p99": (_field("p99_ms"), True),
    "apdex": (_field("apdex"), False),
    "request_bytes": (_field("request_bytes"), True),
    "response_bytes": (_field("response_bytes"), True),
}
"""Sort keys of :meth:`QueryService.endpoints`: (value, descending by default). Ties go by path
and method; endpoints without a value (no traffic: no percentiles, no Apdex) come last."""


def sort_endpoints(
    endpoints: list[dict[str, Any]], sort: str, descending: bool | None = None
) -> list[dict[str, Any]]:
    value, natural = ENDPOINT_SORTS.get(sort, ENDPOINT_SORTS["path"])
    ordered = sorted(endpoints, key=lambda e: (e["path"], e["method"]))
    present = [e for e in ordered if value(e) is not None]
    # a stable sort: ties keep the path order
    present.sort(key=value, reverse=natural if descending is None else descending)
    return present + [e for e in ordered if value(e) is None]


__all__ = ["ENDPOINT_SORTS", "NO_CONSUMER", "BadCursor", "Page", "QueryService", "sort_endpoints"]
