"""``/v1/metrics``: HTTP server metrics -> request counts, response times and sizes; process
gauges -> the instance's CPU and memory.

Read: ``http.server.request.duration`` (stable semconv, seconds) and ``http.server.duration``
(the older one, milliseconds) for counts and response times; ``http.server.request.body.size`` /
``http.server.response.body.size`` (and the older ``http.server.request.size`` /
``http.server.response.size``) for sizes; explicit or exponential histograms, delta or
cumulative. A point without ``http.route`` is not counted (as the classic protocol never counts a
request that matched no route). Cumulative points become deltas against the series' previous
point, which the store keeps (:meth:`~apitally_hub.storage.base.Storage.swap_series`).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.metrics.v1.metrics_pb2 import (
    AGGREGATION_TEMPORALITY_CUMULATIVE,
    Metric,
    NumberDataPoint,
)

from apitally_hub.ingest.otlp import values
from apitally_hub.ingest.otlp.batch import (
    InstanceBatch,
    RequestKey,
    consumer_id,
    response_time_bins,
    size_bins,
)
from apitally_hub.ingest.otlp.histograms import Histogram

Role = Literal["duration", "request_size", "response_size"]

DURATION_METRICS: dict[str, float] = {"http.server.request.duration": 1000.0, "http.server.duration": 1.0}
"""Duration metric -> milliseconds per unit when the metric names no unit."""
SIZE_METRICS: dict[str, Role] = {
    "http.server.request.body.size": "request_size",
    "http.server.request.size": "request_size",
    "http.server.response.body.size": "response_size",
    "http.server.response.size": "response_size",
}
TIME_UNITS = {"s": 1000.0, "ms": 1.0, "us": 0.001, "ns": 0.000001}
SIZE_UNITS = {"By": 1.0, "By/s": 1.0, "1": 1.0, "kBy": 1000.0, "KiBy": 1024.0}

MAX_METHOD = 16


@dataclass
class HttpPoint:
    instance: str
    role: Role
    key: RequestKey
    unit_scale: float
    time: float
    time_nano: int
    series: str | None
    """Cumulative points: the series' key in the store (instance, metric, attributes, start)."""
    histogram: Histogram


@dataclass
class MetricsBatch:
    batches: dict[str, InstanceBatch] = field(default_factory=dict)
    points: list[HttpPoint] = field(default_factory=list)
    routed_instances: set[str] = field(default_factory=set)
    """Instances that sent HTTP duration points with a route: they are counted from metrics, not
    from their spans."""
    rejected: int = 0
    notes: list[str] = field(default_factory=list)


def request_key(attrs: Mapping[str, Any]) -> RequestKey | None:
    method = values.text(values.first(attrs, "http.request.method", "http.method"))
    route = values.text(attrs.get("http.route"))
    status = values.integer(values.first(attrs, "http.response.status_code", "http.status_code"))
    if not method or not route or status is None:
        return None
    method = method.upper()
    if method == "OPTIONS" or len(method) > MAX_METHOD or not 100 <= status <= 599:
        return None
    consumer = consumer_id(values.text(attrs.get("apitally.consumer.identifier")))
    return consumer, method, route[:2000], status


def refusal(attrs: Mapping[str, Any]) -> str | None:
    """Why a point with a route is refused (None: it is fine, or skipped by design)."""
    if not values.text(attrs.get("http.route")):
        return None
    status = values.integer(values.first(attrs, "http.response.status_code", "http.status_code"))
    method = values.text(values.first(attrs, "http.request.method", "http.method"))
    if status is None or not 100 <= status <= 599:
        return f"status code {status!r} is not an HTTP status"
    if not method or len(method) > MAX_METHOD:
        return "no HTTP method"
    return None


def extract(request: ExportMetricsServiceRequest, now: float | None = None) -> MetricsBatch:
    now = time.time() if now is None else now
    result = MetricsBatch()
    for resource_metrics in request.resource_metrics:
        resource = values.attributes(resource_metrics.resource.attributes)
        instance = values.instance_uuid(resource)
        batch = result.batches.get(instance)
        if batch is None:
            batch = result.batches[instance] = InstanceBatch.of(instance, resource)
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                _metric(result, batch, metric, now)
    return result


def _metric(result: MetricsBatch, batch: InstanceBatch, metric: Metric, now: float) -> None:
    name = metric.name
    if name in DURATION_METRICS:
        role: Role = "duration"
        unit_scale = TIME_UNITS.get(metric.unit, DURATION_METRICS[name])
    elif name in SIZE_METRICS:
        role = SIZE_METRICS[name]
        unit_scale = SIZE_UNITS.get(metric.unit, 1.0)
    else:
        _gauge(batch, metric, now)
        return
    kind = metric.WhichOneof("data")
    points: list[tuple[Any, Histogram]]
    if kind == "histogram":
        temporality = metric.histogram.aggregation_temporality
        points = [(point, Histogram.from_explicit(point)) for point in metric.histogram.data_points]
    elif kind == "exponential_histogram":
        temporality = metric.exponential_histogram.aggregation_temporality
        points = [
            (point, Histogram.from_exponential(point)) for point in metric.exponential_histogram.data_points
        ]
    else:
        result.notes.append(f"{name}: a {kind} is not read (a histogram is)")
        return
    cumulative = temporality == AGGREGATION_TEMPORALITY_CUMULATIVE
    for point, histogram in points:
        attrs = values.attributes(point.attributes)
        key = request_key(attrs)
        point_time = point.time_unix_nano / 1e9 if point.time_unix_nano else now
        batch.heartbeat_time = max(batch.heartbeat_time, min(point_time, now))
        if key is None:
            reason = refusal(attrs)
            if reason is not None:  # not a point the hub skips by design (no route, OPTIONS)
                result.rejected += 1
                if len(result.notes) < 5:
                    result.notes.append(f"{name} point refused: {reason}")
            continue
        if role == "duration":
            result.routed_instances.add(batch.instance_uuid)
        series = None
        if cumulative:
            identity = json.dumps(
                [name, sorted((k, repr(v)) for k, v in attrs.items()), point.start_time_unix_nano]
            )
            series = hashlib.sha256(identity.encode()).hexdigest()[:40]
        result.points.append(
            HttpPoint(
                batch.instance_uuid,
                role,
                key,
                unit_scale,
                min(point_time, now),
                int(point.time_unix_nano),
                series,
                histogram,
            )
        )


def _gauge(batch: InstanceBatch, metric: Metric, now: float) -> None:
    if metric.WhichOneof("data") != "gauge" or metric.name not in (
        "process.cpu.utilization",
        "process.memory.usage",
    ):
        return
    newest: NumberDataPoint | None = None
    for point in metric.gauge.data_points:
        if newest is None or point.time_unix_nano >= newest.time_unix_nano:
            newest = point
    if newest is None:
        return
    value = newest.as_double if newest.WhichOneof("value") == "as_double" else float(newest.as_int)
    point_time = min(newest.time_unix_nano / 1e9 if newest.time_unix_nano else now, now)
    if value < 0 or value != value:  # NaN
        return
    if metric.name == "process.cpu.utilization":
        batch.resources["cpu_percent"] = round(value * 100, 3)
    else:
        batch.resources["memory_rss"] = int(value)
    batch.resources_time = max(batch.resources_time, point_time)
    batch.heartbeat_time = max(batch.heartbeat_time, point_time)


def apply(result: MetricsBatch, previous: Mapping[tuple[str, str], tuple[Histogram, int]]) -> None:
    """Add the points to their instances' batches: a delta point as it is, a cumulative one minus
    ``previous[(instance, series)]`` (its histogram and time): the whole point when the series is
    new or was reset, nothing when the stored point is as new (a duplicate or a late retry)."""
    for point in result.points:
        histogram = point.histogram
        if point.series is not None:
            before = previous.get((point.instance, point.series))
            if before is not None:
                stored, stored_time = before
                if stored_time >= point.time_nano:
                    continue
                gained = histogram.minus(stored)
                histogram = gained if gained is not None else histogram
        if histogram.count <= 0:
            continue
        intervals = list(histogram.intervals(point.unit_scale))
        batch = result.batches[point.instance]
        if point.role == "duration":
            batch.add_request(point.time, point.key, histogram.count, response_time_bins(intervals))
        else:
            total = round(histogram.total * point.unit_scale)
            sizes = (max(total, 0), size_bins(intervals))
            if point.role == "request_size":
                batch.add_request(point.time, point.key, 0, request_size=sizes)
            else:
                batch.add_request(point.time, point.key, 0, response_size=sizes)
