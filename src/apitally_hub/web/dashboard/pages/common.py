"""What the app pages share: the data their controls need, and chart specs for ``dashboard.js``.

A chart spec is JSON: ``{"kind": "stacked" | "lines", "unit": "count" | "ms" | "%" | "bytes",
"since": ..., "until": ..., "x": [bucket starts], "series": [{"label": ..., "values": [...]}]}``
with one value per bucket of the window (buckets without traffic are 0 for counts, null for
percentiles and rates), so the chart shows quiet periods as such.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from apitally_hub.query.service import QueryService
from apitally_hub.web.dashboard.views import RANGES, View

STATUS_CLASSES = ("2xx", "3xx", "4xx", "5xx")


def chrome(q: QueryService, view: View) -> dict[str, Any]:
    """What ``app.html``'s controls need: the app's name, the envs, endpoints and groups to pick from."""
    assert view.app is not None
    return {
        "ranges": RANGES,
        "chrome": {
            "app_name": q.app_name(view.app.client_id),
            "envs": q.envs(view.app.client_id) or [view.app.env],
            "endpoints": q.endpoint_keys(view.app, view.window),
            "groups": q.group_names(view.app),
            "bucket": view.bucket,
        },
    }


def axis(since: float, until: float, bucket: int) -> list[int]:
    start = int(since // bucket) * bucket
    return list(range(start, int(until) + 1, bucket)) or [start]


def chart(
    timeseries: dict[str, Any],
    view: View,
    series: Sequence[tuple[str, Callable[[dict[str, Any]], Any]]],
    *,
    kind: str = "lines",
    unit: str = "count",
    missing: Any = 0,
) -> dict[str, Any]:
    """A chart spec from a :meth:`QueryService.timeseries` answer: one series per (label, value of a
    point)."""
    bucket = int(timeseries["bucket_seconds"])
    x = axis(view.window.since, view.window.until, bucket)
    by_bucket = {int(p["bucket"]): p for p in timeseries["points"]}
    return {
        "kind": kind,
        "unit": unit,
        "since": x[0],
        "until": x[-1] + bucket,
        "x": x,
        "series": [
            {"label": label, "values": [value(by_bucket[b]) if b in by_bucket else missing for b in x]}
            for label, value in series
        ],
    }


def per_minute(bucket: int) -> Callable[[Callable[[dict[str, Any]], int]], Callable[[dict[str, Any]], float]]:
    def wrap(count: Callable[[dict[str, Any]], int]) -> Callable[[dict[str, Any]], float]:
        return lambda point: round(count(point) * 60 / bucket, 3)

    return wrap


def _field(name: str) -> Callable[[dict[str, Any]], Any]:
    return lambda point: point[name]


CLIENT_ERROR_COLORS = ("#f0a73c", "#d98a1c", "#f6c46b", "#b86e00", "#e9b949", "#c7922f")
SERVER_ERROR_COLORS = ("#e05656", "#b83232", "#f08a8a", "#8f1f1f")


def status_color(code: int, index: int) -> str:
    """Shades of amber for 4xx and of red for 5xx, so a chart of status codes reads at a glance."""
    colors = SERVER_ERROR_COLORS if code >= 500 else CLIENT_ERROR_COLORS
    return colors[index % len(colors)]


def status_count(code: str) -> Callable[[dict[str, Any]], int]:
    return lambda point: int(point["status_codes"].get(code, 0))


def class_count(name: str) -> Callable[[dict[str, Any]], int]:
    return lambda point: int(point["status_classes"].get(name, 0))


def requests_chart(timeseries: dict[str, Any], view: View) -> dict[str, Any]:
    """Requests per minute, stacked by status class."""
    rate = per_minute(int(timeseries["bucket_seconds"]))
    return chart(
        timeseries, view, [(name, rate(class_count(name))) for name in STATUS_CLASSES], kind="stacked"
    )


def percentiles_chart(timeseries: dict[str, Any], view: View) -> dict[str, Any]:
    """From a :meth:`QueryService.percentiles` answer."""
    return chart(
        timeseries,
        view,
        [(f"p{p}", _field(f"p{p}_ms")) for p in (50, 75, 95, 99)],
        unit="ms",
        missing=None,
    )


def status_buckets(timeseries: dict[str, Any], *, low: int = 100, high: int = 599) -> list[dict[str, Any]]:
    """Rows of a chart's data table: bucket, requests, the status codes in ``[low, high]``."""
    rows = []
    for point in timeseries["points"]:
        codes = {c: n for c, n in point["status_codes"].items() if low <= int(c) <= high}
        rows.append({**point, "codes": codes})
    return rows


def histogram_bars(bins: dict[str, int], *, max_bars: int = 40) -> list[dict[str, Any]]:
    """Response-time bins (10 ms wide) merged into at most ``max_bars`` bars of equal width, for
    the SVG histogram: ``[{"low": ms, "high": ms, "count": n, "height": 0..1}]``."""
    if not bins:
        return []
    edges = sorted(int(edge) for edge in bins)
    low, high = edges[0], edges[-1] + 10
    step = max(10, -(-(high - low) // max_bars // 10) * 10)
    bars: dict[int, int] = {}
    for edge, count in bins.items():
        start = low + (int(edge) - low) // step * step
        bars[start] = bars.get(start, 0) + count
    tallest = max(bars.values())
    return [
        {
            "low": start,
            "high": start + step,
            "count": bars.get(start, 0),
            "height": bars.get(start, 0) / tallest,
        }
        for start in range(low, high, step)
    ]
