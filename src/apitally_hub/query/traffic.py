"""Traffic over time: the chart of requests per bucket (numbers, status codes and classes, rate),
the chart of response-time percentiles, and the response-time and size histograms of a window."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from apitally_hub.query import planner, stats
from apitally_hub.query.base import ALL_TRAFFIC, QueryBase
from apitally_hub.query.percentiles import percentiles as percentile_values
from apitally_hub.query.timewindow import Window
from apitally_hub.storage.records import MINUTE, AppKey, TrafficFilter, TrafficQuery


class TrafficQueries(QueryBase):
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
        flt = self._scoped(app, flt)
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
            TrafficQuery(app, segments, ("bucket",), self._scoped(app, flt), bucket, response_times=True)
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
