""":class:`QueryBase`: what every family of queries shares — the store, the retention that
decides which resolution covers which part of a window (:mod:`.planner`), the clock — and the
app's settings (its Apdex threshold), which several families honour, and the endpoints excluded
in the dashboard, which every family leaves out (:mod:`.endpoint_settings`)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from apitally_hub.query import planner
from apitally_hub.query.app_settings import APDEX_MS, read_settings
from apitally_hub.query.timewindow import Window
from apitally_hub.storage.base import Storage
from apitally_hub.storage.records import AppKey, TrafficFilter, TrafficQuery, TrafficRow

UPTIME_MIN_WINDOW = 180.0
"""An app env is down after no sync for 3 sync intervals, but never sooner than this."""

ALL_TRAFFIC = TrafficFilter()


class QueryBase:
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

    def _traffic(
        self, app: AppKey, window: Window, *, show_excluded: bool = False, **query: Any
    ) -> list[TrafficRow]:
        """Traffic rows of the window; endpoints excluded in the dashboard left out, unless
        ``show_excluded`` (:meth:`_scoped`)."""
        flt = query.pop("filter", ALL_TRAFFIC)
        if not show_excluded:
            flt = self._scoped(app, flt)
        return self.storage.traffic(TrafficQuery(app, self._segments(window), filter=flt, **query))

    def _scoped(self, app: AppKey, flt: TrafficFilter, *, always: bool = False) -> TrafficFilter:
        """``flt`` leaving out the endpoints excluded in the dashboard — unless it names an
        endpoint (that endpoint's page and queries still show its data) and not ``always``
        (alert rules: an excluded endpoint is out of every rule, one naming it too)."""
        if flt.excluded or ((flt.method or flt.path) and not always):
            return flt
        excluded = tuple((s.method, s.path) for s in self.storage.endpoint_settings(app) if s.excluded)
        return replace(flt, excluded=excluded) if excluded else flt

    # -- the app's settings -------------------------------------------------------------------

    def settings(self, app: AppKey) -> dict[str, Any]:
        """The app's settings (``apdex_ms``), defaults filled in."""
        return read_settings(self.storage, app)

    def _apdex_ms(self, app: AppKey, apdex_ms: int | None) -> int:
        return int(self.settings(app)[APDEX_MS]) if apdex_ms is None else apdex_ms
