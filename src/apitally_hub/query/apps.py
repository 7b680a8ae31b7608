"""Apps: the app envs the hub has seen, and one app's overview (totals over a window, instances
online, status now) as the apps page shows it."""

from __future__ import annotations

from typing import Any

from apitally_hub.query import stats
from apitally_hub.query.base import ALL_TRAFFIC
from apitally_hub.query.cursors import FIRST_PAGE, Page, next_page_cursor, page_offset
from apitally_hub.query.instances import InstanceQueries
from apitally_hub.query.timewindow import Window
from apitally_hub.storage.records import MINUTE, AppKey, TrafficFilter


class AppQueries(InstanceQueries):
    def apps(self, page: Page = FIRST_PAGE, *, window: Window | None = None) -> dict[str, Any]:
        """The apps (client id and env); with ``window``, each with its ``overview`` over the
        window and its ``status`` now (what the dashboard's apps page shows)."""
        infos = self.storage.list_apps()
        offset = page_offset(page.cursor)
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
        next_cursor = next_page_cursor(offset, len(shown), len(infos))
        return {"apps": apps, "total": len(infos), "next_cursor": next_cursor}

    def envs(self, client_id: str) -> list[str]:
        """The envs of a client id."""
        return [info.app.env for info in self.storage.list_apps() if info.app.client_id == client_id]

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
