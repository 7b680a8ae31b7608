"""Apps: the app envs the hub has seen, and one app's overview (totals over a window, instances
online, status now) as the apps page shows it."""

from __future__ import annotations

from typing import Any

from apitally_hub.query import stats
from apitally_hub.query.base import ALL_TRAFFIC
from apitally_hub.query.cursors import FIRST_PAGE, Page, next_page_cursor, page_offset
from apitally_hub.query.instances import InstanceQueries
from apitally_hub.query.timewindow import Window
from apitally_hub.storage.records import MINUTE, AppInfo, AppKey, TrafficFilter


class AppQueries(InstanceQueries):
    def apps(self, page: Page = FIRST_PAGE, *, window: Window | None = None) -> dict[str, Any]:
        """The apps (client id and env): every env that reported, and every env of the registry
        (:mod:`.app_registry`) even before it did (``instances`` 0, ``first_seen`` null); each
        with its ``name`` (null for an app that only reported), ``framework`` and ``registered``.
        Named apps first, by name. With ``window``, each with its ``overview`` over the window and
        its ``status`` now (what the dashboard's apps page shows)."""
        records = {record.client_id: record for record in self.storage.app_records()}
        infos: dict[AppKey, AppInfo | None] = {info.app: info for info in self.storage.list_apps()}
        for registered in records.values():
            for env in registered.envs:
                infos.setdefault(AppKey(registered.client_id, env), None)

        def order(app: AppKey) -> tuple[int, str, str, str]:
            record = records.get(app.client_id)
            return (0 if record else 1, record.name.casefold() if record else "", app.client_id, app.env)

        keys = sorted(infos, key=order)
        offset = page_offset(page.cursor)
        shown = keys[offset : offset + page.limit]
        apps = []
        for app in shown:
            info, record = infos[app], records.get(app.client_id)
            entry: dict[str, Any] = {
                "client_id": app.client_id,
                "env": app.env,
                "instances": info.instances if info else 0,
                "first_seen": info.first_seen if info else None,
                "last_seen": info.last_seen if info else None,
                "last_sync_at": info.last_sync_at if info else None,
                "name": record.name if record else None,
                "framework": record.framework if record else None,
                "registered": record is not None,
            }
            if window is not None:
                entry["overview"] = self.app_overview(app, window)
                entry["status"] = self.uptime_status(app)
            apps.append(entry)
        next_cursor = next_page_cursor(offset, len(shown), len(keys))
        return {"apps": apps, "total": len(keys), "next_cursor": next_cursor}

    def app_name(self, client_id: str) -> str | None:
        """The app's name in the registry (None: it has not been named)."""
        record = self.storage.app_record(client_id)
        return record.name if record else None

    def envs(self, client_id: str) -> list[str]:
        """The envs of a client id: those that reported, then the registry's others."""
        envs = [info.app.env for info in self.storage.list_apps() if info.app.client_id == client_id]
        record = self.storage.app_record(client_id)
        return envs + [env for env in (record.envs if record else ()) if env not in envs]

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
