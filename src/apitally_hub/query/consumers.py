"""Consumers: the identified consumers with traffic in a window (by requests, or most recently
seen), one consumer with its name/group history, and the consumer groups. A consumer's ``name``
and ``group`` are the ones it has: set in the dashboard, else the client's
(:mod:`.consumer_names`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from apitally_hub.query import stats
from apitally_hub.query.base import ALL_TRAFFIC, QueryBase
from apitally_hub.query.cursors import FIRST_PAGE, Page, encode_cursor, next_page_cursor, page_offset
from apitally_hub.query.timewindow import Window
from apitally_hub.storage.records import MINUTE, AppKey, TrafficFilter, TrafficQuery, TrafficRow

IDENTIFIED = TrafficFilter(identified_only=True)


class ConsumerQueries(QueryBase):
    def consumers(
        self,
        app: AppKey,
        window: Window,
        *,
        flt: TrafficFilter = ALL_TRAFFIC,
        page: Page = FIRST_PAGE,
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
        offset = page_offset(page.cursor)
        flt = self._scoped(app, replace(flt, identified_only=True))
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
            next_cursor = next_page_cursor(offset, len(rows), total)
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
        scoped = self._scoped(app, TrafficFilter(consumers=ids))
        query = TrafficQuery(app, self._segments(window), ("consumer",), scoped)
        traffic = {row.key[0]: row for row in self.storage.traffic(query)}
        rows = [traffic.get(i) or TrafficRow((i,), 0, 0, 0, 0, 0, {}, {}, {}) for i in ids]
        result = self._consumer_entries(app, rows, {info.identifier: info for info in shown}, history)
        return {
            "sort": "last_seen",
            "consumers": result,
            "total": total,
            "next_cursor": next_page_cursor(offset, len(shown), total),
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
            "client_name": info.client_name,
            "client_group": info.client_group,
            "dashboard_name": info.dashboard_name,
            "dashboard_group": info.dashboard_group,
            "first_seen": info.first_seen,
            "last_seen": info.last_seen,
            **stats.traffic_stats(row),
            "history": history,
        }

    def group_names(self, app: AppKey) -> list[str]:
        return sorted(group for group, _ in self.storage.consumer_groups(app))
