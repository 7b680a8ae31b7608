"""Endpoints: one entry per (method, path) with its traffic numbers, sorted by any of
:data:`ENDPOINT_SORTS`; the endpoints the app announced at startup; the keys for pickers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from apitally_hub.query import stats
from apitally_hub.query.base import ALL_TRAFFIC, QueryBase
from apitally_hub.query.cursors import FIRST_PAGE, Page, next_page_cursor, page_offset
from apitally_hub.query.timewindow import Window
from apitally_hub.storage.records import AppKey, TrafficFilter, TrafficRow


class EndpointQueries(QueryBase):
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
        page: Page = FIRST_PAGE,
        show_excluded: bool = False,
    ) -> dict[str, Any]:
        """One entry per endpoint (method, path) with traffic in the window — and with
        ``include_idle`` those the app announced at startup without any — sorted by ``sort`` (a
        key of :data:`ENDPOINT_SORTS`; ``descending`` None: the key's natural order).

        Each endpoint's Apdex uses its own threshold where it has one (``apdex_ms`` of the entry),
        else ``apdex_ms`` (None: the app env's). Endpoints excluded in the dashboard are left out
        (``excluded`` in the answer counts them), unless ``show_excluded`` (each entry says
        whether it is)."""
        apdex_ms = self._apdex_ms(app, apdex_ms)
        own = {(s.method, s.path): s for s in self.storage.endpoint_settings(app)}
        excluded = {key for key, s in own.items() if s.excluded}
        rows = self._traffic(
            app,
            window,
            group_by=("method", "path", "status_code"),
            filter=flt,
            response_times=True,
            show_excluded=show_excluded,
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
            if (method, path) in excluded and not show_excluded and not (flt.method or flt.path):
                continue
            merged = stats.merge_rows(parts, (method, path))
            setting = own.get((method, path))
            threshold = setting.apdex_ms if setting is not None and setting.apdex_ms is not None else apdex_ms
            result.append(
                {
                    "method": method,
                    "path": path,
                    "apdex_ms": threshold,
                    "own_apdex_ms": None if setting is None else setting.apdex_ms,
                    "excluded": (method, path) in excluded,
                    **stats.traffic_stats(merged, apdex_ms=threshold),
                    "status_codes": {
                        str(r.key[2]): r.request_count for r in sorted(parts, key=lambda r: r.key[2])
                    },
                }
            )
        result = sort_endpoints(result, sort, descending)
        offset = page_offset(page.cursor)
        shown = result[offset : offset + page.limit]
        return {
            "apdex_ms": apdex_ms,
            "excluded": len(excluded),
            "endpoints": shown,
            "total": len(result),
            "next_cursor": next_page_cursor(offset, len(shown), len(result)),
        }

    def app_paths(self, app: AppKey) -> list[tuple[str, str]]:
        """Endpoints the app's instances announced at startup."""
        seen: set[tuple[str, str]] = set()
        for instance in self.storage.instances(app):
            seen.update((entry["method"].upper(), entry["path"]) for entry in instance.paths)
        return sorted(seen, key=lambda mp: (mp[1], mp[0]))

    def endpoint_keys(self, app: AppKey, window: Window) -> list[tuple[str, str]]:
        """(method, path) of every endpoint with traffic in the window or announced at startup,
        by path (cheap: no percentiles; for pickers)."""
        rows = self._traffic(app, window, group_by=("method", "path"))
        keys = {(str(r.key[0]), str(r.key[1])) for r in rows} | set(self.app_paths(app))
        return sorted(keys, key=lambda mp: (mp[1], mp[0]))


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
"""Sort keys of :meth:`EndpointQueries.endpoints`: (value, descending by default). Ties go by path
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


__all__ = ["ENDPOINT_SORTS", "EndpointQueries", "sort_endpoints"]
