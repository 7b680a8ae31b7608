"""The values alert rules are evaluated on: traffic stats and validation-error counts in a rule's
scope (an endpoint match, a traffic filter), for all of it or per endpoint or consumer."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from apitally_hub.query import stats
from apitally_hub.query.base import ALL_TRAFFIC, QueryBase
from apitally_hub.query.timewindow import Window
from apitally_hub.storage.records import AppKey, EventQuery, TrafficFilter, TrafficRow

EndpointMatch = Callable[[str, str], bool]
"""``(method, path) -> in scope?``"""


class AlertValueQueries(QueryBase):
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
        flt = self._scoped(app, flt, always=True)  # excluded endpoints are out of every rule
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
        segments, flt = self._segments(window), self._scoped(app, flt, always=True)
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
