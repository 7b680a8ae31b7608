"""Instances, heartbeats and uptime: which instances of an app env are online, their details,
the syncs per minute, and whether the app env is up (heartbeats and its health check; the
interval arithmetic is :mod:`.uptime`'s)."""

from __future__ import annotations

import json
from typing import Any

from apitally_hub.ingest.otlp.held import MODE_KEY
from apitally_hub.query import uptime
from apitally_hub.query.base import QueryBase
from apitally_hub.query.cursors import FIRST_PAGE, Page, next_page_cursor, page_offset
from apitally_hub.query.timewindow import Window
from apitally_hub.storage.records import AppKey, InstanceInfo

OFFLINE_AFTER_INTERVALS = 3
"""An instance is offline when its last sync is older than this many sync intervals."""


class InstanceQueries(QueryBase):
    def counted_from(self, app: AppKey) -> dict[str, str]:
        """How each OTLP instance of ``app`` is counted: ``metrics`` (its HTTP server metrics),
        ``spans`` (its SERVER spans: the counts follow its trace sampling) or ``held`` (spans
        counted only if no metrics come). Instances of the classic protocol are not listed."""
        rows = self.storage.series_with_prefix(MODE_KEY, app=app, limit=100_000)
        return {ref.instance_id: point.value for ref, point in rows if ref.key == MODE_KEY}

    def span_counted_instances(self, app: AppKey) -> int:
        return sum(1 for mode in self.counted_from(app).values() if mode == "spans")

    def _instance(
        self, info: InstanceInfo, now: float, *, detail: bool, modes: dict[str, str] | None = None
    ) -> dict[str, Any]:
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
            "counted_from": (modes or {}).get(info.instance_uuid),
        }
        if detail:
            result["paths"] = info.paths
            result["openapi"] = json.loads(info.openapi) if info.openapi else None
        return result

    def instances(self, app: AppKey, page: Page = FIRST_PAGE) -> dict[str, Any]:
        now = self.clock()
        infos = self.storage.instances(app)
        modes = self.counted_from(app)
        offset = page_offset(page.cursor)
        shown = infos[offset : offset + page.limit]
        return {
            "now": now,
            "instances": [self._instance(info, now, detail=False, modes=modes) for info in shown],
            "total": len(infos),
            "next_cursor": next_page_cursor(offset, len(shown), len(infos)),
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
