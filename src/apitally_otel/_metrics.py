"""Pure conversion between the aggregator's interval and OpenTelemetry metric data.

The hub's histograms are sparse bins (10 ms of time, 1 kB of size). They travel as ordinary OTel
histogram points whose explicit bounds are the edges of the non-empty bins, so the conversion is
lossless in both directions and the points stay meaningful to any OTLP backend.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Gauge,
    Histogram,
    HistogramDataPoint,
    Metric,
    MetricsData,
    NumberDataPoint,
    Sum,
)

from apitally_otel._aggregator import IntervalData
from apitally_otel._consumers import ATTR_GROUP, ATTR_IDENTIFIER, ATTR_NAME

SCOPE_NAME = "apitally_otel"

DURATION = "http.server.request.duration"
REQUEST_SIZE = "http.server.request.body.size"
RESPONSE_SIZE = "http.server.response.body.size"
VALIDATION_ERRORS = "apitally.validation_errors"
SERVER_ERRORS = "apitally.server_errors"
CONSUMERS = "apitally.consumers"

ATTR_METHOD = "http.request.method"
ATTR_ROUTE = "http.route"
ATTR_STATUS = "http.response.status_code"
ATTR_LOC = "apitally.validation_error.loc"
ATTR_MSG = "apitally.validation_error.msg"
ATTR_TYPE = "apitally.validation_error.type"
ATTR_EXC_TYPE = "exception.type"
ATTR_EXC_MESSAGE = "exception.message"
ATTR_EXC_STACKTRACE = "exception.stacktrace"
ATTR_SENTRY_EVENT_ID = "apitally.sentry_event_id"

_DELTA = AggregationTemporality.DELTA


def _base_attributes(consumer: str | None, method: str, route: str) -> dict[str, Any]:
    attributes: dict[str, Any] = {ATTR_METHOD: method, ATTR_ROUTE: route}
    if consumer is not None:
        attributes[ATTR_IDENTIFIER] = consumer
    return attributes


def _histogram_point(
    attributes: dict[str, Any],
    start: int,
    end: int,
    bins: Mapping[int, int],
    edges_of: Any,
    total: float,
    minimum: float,
    maximum: float,
) -> HistogramDataPoint:
    edges = sorted({edge for key in bins for edge in edges_of(key)})
    position = {edge: i for i, edge in enumerate(edges)}
    counts = [0] * (len(edges) + 1)
    for key, count in bins.items():
        counts[position[edges_of(key)[1]]] += count
    return HistogramDataPoint(
        attributes=attributes,
        start_time_unix_nano=start,
        time_unix_nano=end,
        count=sum(bins.values()),
        sum=total,
        bucket_counts=counts,
        explicit_bounds=edges,
        min=minimum,
        max=maximum,
    )


def _time_edges(key_ms: int) -> tuple[float, float]:
    return key_ms / 1000, (key_ms + 10) / 1000


def _size_edges(key_kb: int) -> tuple[float, float]:
    # Sizes are integers: (k*1000 - 1, k*1000 + 999] holds exactly the sizes of bin k.
    return float(key_kb * 1000 - 1), float(key_kb * 1000 + 999)


def _size_point(
    attributes: dict[str, Any], start: int, end: int, bins: dict[int, int], total: int
) -> HistogramDataPoint:
    # Min and max as far as the 1 kB bins tell.
    low, high = float(min(bins) * 1000), float(max(bins) * 1000 + 999)
    return _histogram_point(attributes, start, end, bins, _size_edges, total, low, high)


def interval_to_metrics(data: IntervalData) -> list[Metric]:
    start, end = int(data.start_time * 1e9), int(data.end_time * 1e9)
    durations: list[HistogramDataPoint] = []
    request_sizes: list[HistogramDataPoint] = []
    response_sizes: list[HistogramDataPoint] = []
    for (consumer, method, route, status), series in data.series.items():
        attributes = _base_attributes(consumer, method, route)
        attributes[ATTR_STATUS] = status
        durations.append(
            _histogram_point(
                attributes,
                start,
                end,
                series.time_bins,
                _time_edges,
                series.duration_sum,
                series.duration_min,
                series.duration_max,
            )
        )
        if series.request_size_bins:
            request_sizes.append(
                _size_point(attributes, start, end, series.request_size_bins, series.request_size_sum)
            )
        if series.response_size_bins:
            response_sizes.append(
                _size_point(attributes, start, end, series.response_size_bins, series.response_size_sum)
            )
    metrics = [
        Metric(DURATION, "Time to the first byte of the response", "s", Histogram(durations, _DELTA)),
        Metric(REQUEST_SIZE, "Size of the request body", "By", Histogram(request_sizes, _DELTA)),
        Metric(RESPONSE_SIZE, "Size of the response body", "By", Histogram(response_sizes, _DELTA)),
    ]
    validation_points = []
    for (consumer, method, route, loc, msg, type_), count in data.validation_errors.items():
        attributes = _base_attributes(consumer, method, route)
        attributes.update({ATTR_LOC: loc, ATTR_MSG: msg, ATTR_TYPE: type_})
        validation_points.append(NumberDataPoint(attributes, start, end, count))
    metrics.append(
        Metric(VALIDATION_ERRORS, "Validation errors", "{error}", Sum(validation_points, _DELTA, True))
    )
    error_points = []
    for (consumer, method, route, type_, msg, traceback), count in data.server_errors.items():
        attributes = _base_attributes(consumer, method, route)
        attributes.update({ATTR_EXC_TYPE: type_, ATTR_EXC_MESSAGE: msg, ATTR_EXC_STACKTRACE: traceback})
        sentry_event_id = data.sentry_event_ids.get((consumer, method, route, type_, msg, traceback))
        if sentry_event_id is not None:
            attributes[ATTR_SENTRY_EVENT_ID] = sentry_event_id
        error_points.append(NumberDataPoint(attributes, start, end, count))
    metrics.append(Metric(SERVER_ERRORS, "Unhandled exceptions", "{error}", Sum(error_points, _DELTA, True)))
    consumer_points = []
    for consumer_info in data.consumers:
        attributes = {ATTR_IDENTIFIER: consumer_info.identifier}
        if consumer_info.name is not None:
            attributes[ATTR_NAME] = consumer_info.name
        if consumer_info.group is not None:
            attributes[ATTR_GROUP] = consumer_info.group
        consumer_points.append(NumberDataPoint(attributes, start, end, 1))
    metrics.append(Metric(CONSUMERS, "Consumers with new names or groups", "1", Gauge(consumer_points)))
    return metrics


def iter_scope_metrics(metrics_data: MetricsData) -> Iterator[Metric]:
    """The metrics apitally-otel derived (its own instrumentation scope), from any MetricsData."""
    for resource_metrics in metrics_data.resource_metrics:
        for scope_metrics in resource_metrics.scope_metrics:
            if scope_metrics.scope.name == SCOPE_NAME:
                yield from scope_metrics.metrics


def time_bins(point: HistogramDataPoint) -> dict[str, int]:
    """Bins keyed by ``"<ms>"`` (a multiple of 10) from a duration point."""
    return _bins(point, lambda lower: round(lower * 1000) // 10 * 10)


def size_bins(point: HistogramDataPoint) -> dict[str, int]:
    """Bins keyed by ``"<kB>"`` from a size point."""
    return _bins(point, lambda lower: max(round(lower) + 1, 0) // 1000)


def _bins(point: HistogramDataPoint, key_of: Any) -> dict[str, int]:
    bins: dict[str, int] = {}
    bounds: Iterable[float] = point.explicit_bounds
    edges = list(bounds)
    for i, count in enumerate(point.bucket_counts):
        if not count:
            continue
        lower = edges[i - 1] if i > 0 else (edges[0] if edges else 0.0)
        key = str(key_of(lower))
        bins[key] = bins.get(key, 0) + int(count)
    return bins


# Fixed bucket bounds for other OTLP backends: every 10 ms bin falls wholly into one bucket, so the
# re-bucketing is exact for durations; sizes are assigned by their bin (1 kB resolution).
OTLP_DURATION_BOUNDS = (0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
OTLP_SIZE_BOUNDS = (1_000.0, 10_000.0, 100_000.0, 1_000_000.0, 10_000_000.0)


def for_otlp(metrics: list[Metric]) -> list[Metric]:
    """The request histograms (not the hub-only error details) with fixed bounds, for OTLP."""
    out = []
    for metric in metrics:
        bounds: tuple[float, ...]
        if metric.name == DURATION:
            bounds, divisor, factor = OTLP_DURATION_BOUNDS, 1000, 1  # bin keys are ms
        elif metric.name in (REQUEST_SIZE, RESPONSE_SIZE):
            bounds, divisor, factor = OTLP_SIZE_BOUNDS, 1, 1000  # bin keys are kB
        else:
            continue
        points = []
        for point in getattr(metric.data, "data_points", ()):
            if not isinstance(point, HistogramDataPoint):
                continue
            bins = time_bins(point) if metric.name == DURATION else size_bins(point)
            counts = [0] * (len(bounds) + 1)
            for key, count in bins.items():
                edge = int(key) * factor / divisor  # exact: 10 / 1000 == 0.01
                counts[next((i for i, bound in enumerate(bounds) if edge < bound), len(bounds))] += count
            points.append(
                HistogramDataPoint(
                    attributes=point.attributes,
                    start_time_unix_nano=point.start_time_unix_nano,
                    time_unix_nano=point.time_unix_nano,
                    count=point.count,
                    sum=point.sum,
                    bucket_counts=counts,
                    explicit_bounds=list(bounds),
                    min=point.min,
                    max=point.max,
                )
            )
        out.append(Metric(metric.name, metric.description, metric.unit, Histogram(points, _DELTA)))
    return out
