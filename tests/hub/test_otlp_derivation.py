"""OTLP derivation without HTTP: re-binning and its error, cumulative deltas, OTLP/JSON decoding,
and the counting rules (metrics or spans, held span counts, counted once) against a real store."""

from __future__ import annotations

import json
import math
import random
import time
import uuid
import zlib
from typing import Any

import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import (
    AGGREGATION_TEMPORALITY_CUMULATIVE,
    AGGREGATION_TEMPORALITY_DELTA,
    ExponentialHistogramDataPoint,
    HistogramDataPoint,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from apitally_hub.ingest import folding
from apitally_hub.ingest.otlp import decoding, held, rebinning
from apitally_hub.ingest.otlp.decoding import OtlpDecodeError
from apitally_hub.ingest.otlp.histograms import Histogram
from apitally_hub.ingest.otlp.intake import OtlpIntake, Target
from apitally_hub.protocol.checker import TimeWindow
from apitally_hub.storage.base import Storage
from apitally_hub.storage.records import DAY

SCALE = 3
DEFAULT_BOUNDS_S = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)


def _exp_index(value: float, scale: int) -> int:
    """The OTLP exponential bucket of ``value``: (base**i, base**(i+1)], base = 2**(2**-scale)."""
    return math.ceil(math.log2(value) * 2**scale) - 1


def _exponential(values: list[float], scale: int = SCALE) -> ExponentialHistogramDataPoint:
    point = ExponentialHistogramDataPoint(count=len(values), sum=sum(values), scale=scale)
    point.min, point.max = min(values), max(values)
    buckets: dict[int, int] = {}
    for value in values:
        buckets[_exp_index(value, scale)] = buckets.get(_exp_index(value, scale), 0) + 1
    offset = min(buckets)
    point.positive.offset = offset
    point.positive.bucket_counts.extend(buckets.get(i, 0) for i in range(offset, max(buckets) + 1))
    return point


def _explicit(values: list[float], bounds: tuple[float, ...] = DEFAULT_BOUNDS_S) -> HistogramDataPoint:
    counts = [0] * (len(bounds) + 1)
    for value in values:
        counts[next((i for i, bound in enumerate(bounds) if value <= bound), len(bounds))] += 1
    point = HistogramDataPoint(
        count=len(values), sum=sum(values), explicit_bounds=bounds, bucket_counts=counts
    )
    point.min, point.max = min(values), max(values)
    return point


def _percentile(bins: dict[int, int], share: float) -> int:
    """The lower edge of the bin holding the ``share`` quantile (as the hub computes it)."""
    total, seen = sum(bins.values()), 0
    for key in sorted(bins):
        seen += bins[key]
        if seen >= share * total:
            return key
    raise AssertionError("empty")


def _true_percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[max(math.ceil(share * len(ordered)) - 1, 0)]


@pytest.mark.parametrize("shape", ["exponential", "explicit"])
def test_rebinning_keeps_counts_exact_and_moves_values_at_most_a_source_bucket(shape: str) -> None:
    rng = random.Random(7)
    values = [rng.lognormvariate(math.log(0.08), 0.9) for _ in range(20_000)]  # seconds
    point = _exponential(values) if shape == "exponential" else _explicit(values)
    histogram = (
        Histogram.from_exponential(point) if shape == "exponential" else Histogram.from_explicit(point)
    )
    intervals = list(histogram.intervals(1000.0))
    bins = rebinning.to_bins(intervals, 10.0)
    assert sum(bins.values()) == len(values)
    as_ms = {key * 10: count for key, count in bins.items()}
    for share in (0.5, 0.75, 0.95, 0.99):
        true_ms = _true_percentile(values, share) * 1000
        got = _percentile(as_ms, share)
        if shape == "exponential":
            allowed = true_ms * (2 ** (2**-SCALE) - 1) + 10  # one bucket (9.05 %) and one 10 ms bin
        else:
            upper = next((b * 1000 for b in DEFAULT_BOUNDS_S if b * 1000 >= true_ms), true_ms)
            lower = max((b * 1000 for b in DEFAULT_BOUNDS_S if b * 1000 < true_ms), default=0.0)
            allowed = upper - lower + 10  # the whole source bucket
        assert abs(got - true_ms) <= allowed, (share, got, true_ms, allowed)


def test_rebinning_is_bounded_whatever_the_bounds() -> None:
    bins = rebinning.to_bins([(0.0, 1e300, 10**12), (5.0, 5.0, 3)], 10.0)
    assert sum(bins.values()) == 10**12 + 3
    assert len(bins) <= rebinning.MAX_SHARES + 1
    intervals = list(rebinning.exponential_intervals(20, 0, {10**9: 1}, None, None, 1000.0))
    assert intervals and all(math.isfinite(upper) for _, upper, _ in intervals)


def test_cumulative_differences() -> None:
    def point(values: list[float]) -> Histogram:
        return Histogram.from_explicit(_explicit(values))

    seven = point([0.01] * 7)
    fifteen = point([0.01] * 7 + [0.3] * 8)
    gained = fifteen.minus(seven)
    assert gained is not None and gained.count == 8
    assert sum(gained.buckets.values()) == 8 and gained.low is None
    assert seven.minus(fifteen) is None  # went down: a reset, counted whole by the caller
    same = seven.minus(seven)
    assert same is not None and same.count == 0
    assert Histogram.from_json(fifteen.to_json()) == Histogram(
        fifteen.count, fifteen.total, fifteen.bounds, 0, 0, fifteen.buckets
    )
    fine, coarse = _exponential([0.1, 0.2, 0.3], scale=4), _exponential([0.1, 0.2, 0.3, 0.4], scale=3)
    difference = Histogram.from_exponential(coarse).minus(Histogram.from_exponential(fine))
    assert difference is not None and difference.count == 1 and difference.scale == 3


def test_otlp_json_with_hex_ids_and_concatenated_documents() -> None:
    span = {
        "traceId": "5b8efff798038103d269b633813fc60c",
        "spanId": "eee19b7ec3c1b174",
        "name": "GET /items",
        "kind": 2,
        "startTimeUnixNano": "1700000000000000000",
        "endTimeUnixNano": "1700000000100000000",
    }
    document = {"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]}
    body = (json.dumps(document) + "\n" + json.dumps(document)).encode()
    request = decoding.decode(ExportTraceServiceRequest, body, "json")
    assert len(request.resource_spans) == 2
    assert request.resource_spans[0].scope_spans[0].spans[0].trace_id.hex() == span["traceId"]
    with pytest.raises(OtlpDecodeError):
        decoding.decode(
            ExportTraceServiceRequest,
            b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "zz"}]}]}]}',
            "json",
        )
    with pytest.raises(OtlpDecodeError):
        decoding.decode(ExportTraceServiceRequest, b"\xff\xff\xff", "protobuf")
    serialized = ExportTraceServiceRequest.FromString(b"").SerializeToString()
    assert decoding.decode(ExportTraceServiceRequest, serialized, "protobuf") == ExportTraceServiceRequest()


# -- counting rules, against a real store ---------------------------------------------------------


def _kv(key: str, value: Any) -> KeyValue:
    item = KeyValue(key=key)
    if isinstance(value, int):
        item.value.int_value = value
    else:
        item.value.string_value = value
    return item


RESOURCE = [
    _kv("service.name", "svc"),
    _kv("service.instance.id", "i-1"),
    _kv("telemetry.sdk.language", "python"),
]


def _traces(now: float, count: int, route: str = "/items") -> bytes:
    request = ExportTraceServiceRequest()
    spans = request.resource_spans.add()
    spans.resource.attributes.extend(RESOURCE)
    scope = spans.scope_spans.add()
    for index in range(count):
        end = int((now - 1) * 1e9) + index
        span = scope.spans.add(
            trace_id=random.randbytes(16),
            span_id=random.randbytes(8),
            name=f"GET {route}",
            kind=Span.SPAN_KIND_SERVER,
            start_time_unix_nano=end - 20_000_000,
            end_time_unix_nano=end,
        )
        span.attributes.extend(
            [
                _kv("http.request.method", "GET"),
                _kv("http.route", route),
                _kv("http.response.status_code", 200),
            ]
        )
    return request.SerializeToString()


def _metrics(now: float, values: list[float], start: float, *, cumulative: bool = True) -> bytes:
    request = ExportMetricsServiceRequest()
    metrics = request.resource_metrics.add()
    metrics.resource.attributes.extend(RESOURCE)
    metric = metrics.scope_metrics.add().metrics.add(name="http.server.request.duration", unit="s")
    metric.histogram.aggregation_temporality = (
        AGGREGATION_TEMPORALITY_CUMULATIVE if cumulative else AGGREGATION_TEMPORALITY_DELTA
    )
    point = metric.histogram.data_points.add()
    point.CopyFrom(_explicit(values))
    point.start_time_unix_nano, point.time_unix_nano = int(start * 1e9), int(now * 1e9)
    point.attributes.extend(
        [
            _kv("http.request.method", "GET"),
            _kv("http.route", "/items"),
            _kv("http.response.status_code", 200),
        ]
    )
    return request.SerializeToString()


def _counted(store: Storage, client_id: str) -> int:
    """Requests in the sync messages of ``client_id`` queued since the last call (what folding
    would add): each call claims them under a worker name of its own."""
    total = 0
    for claimed in store.claim(uuid.uuid4().hex, limit=10_000, lease_seconds=600, now=time.time()):
        message = claimed.message
        if message.app.client_id == client_id and message.kind == "sync":
            body = json.loads(zlib.decompress(message.body))
            total += sum(item["request_count"] for item in body["requests"])
    return total


def _intake(store: Storage) -> OtlpIntake:
    return OtlpIntake(store, TimeWindow(time.time(), 30 * DAY))


def test_cumulative_totals_are_counted_once(store: Storage) -> None:
    target, now = Target("c-cumulative", None, "prod"), time.time()
    start = now - 100
    for offset, total in enumerate((7, 7, 15, 15, 15)):
        body = _metrics(now - 50 + offset, [0.01] * total, start)
        _intake(store).take(target, "metrics", body, "protobuf")
        _intake(store).take(target, "metrics", body, "protobuf")  # a resend: stored once
    restarted = _metrics(now, [0.01] * 4, now - 10)  # a new start time: the new process's totals
    _intake(store).take(target, "metrics", restarted, "protobuf")
    assert _counted(store, "c-cumulative") == 15 + 4


def test_spans_are_held_then_dropped_when_metrics_come(store: Storage) -> None:
    target, now = Target("c-held", None, "prod"), time.time()
    _intake(store).take(target, "traces", _traces(now, 9), "protobuf")
    assert store.series_with_prefix(held.PREFIX, app=None)  # held, not queued
    assert _counted(store, "c-held") == 0
    _intake(store).take(target, "metrics", _metrics(now, [0.01] * 11, now - 60), "protobuf")
    _intake(store).take(target, "traces", _traces(now, 2), "protobuf")  # after the metrics: not counted
    assert held.release_due(store, now + 1000, held.DEFAULT_HOLD_SECONDS) == 0
    assert _counted(store, "c-held") == 11


def test_spans_of_a_traces_only_sender_are_released_after_the_hold(store: Storage) -> None:
    target, now = Target("c-spans", None, "prod"), time.time()
    body = _traces(now, 5)
    _intake(store).take(target, "traces", body, "protobuf")
    _intake(store).take(target, "traces", body, "protobuf")  # a resend: held once
    assert held.release_due(store, now, held.DEFAULT_HOLD_SECONDS) == 0  # not yet due
    assert (
        held.release_due(store, time.time() + held.DEFAULT_HOLD_SECONDS + 1, held.DEFAULT_HOLD_SECONDS) == 1
    )
    assert not store.series_with_prefix(held.PREFIX)
    _intake(store).take(target, "traces", _traces(now, 3), "protobuf")  # counted at once from now on
    assert _counted(store, "c-spans") == 8
    # metrics that come after all: their first point is the baseline (those requests were counted)
    _intake(store).take(target, "metrics", _metrics(now, [0.01] * 8, now - 60), "protobuf")
    _intake(store).take(target, "metrics", _metrics(now + 1, [0.01] * 10, now - 60), "protobuf")
    assert _counted(store, "c-spans") == 2


def test_released_messages_add_up_items_of_one_minute() -> None:
    from apitally_hub.storage.records import AppKey, SeriesPoint

    item = {
        "consumer": None,
        "method": "GET",
        "path": "/a",
        "status_code": 200,
        "request_count": 2,
        "request_size_sum": 0,
        "response_size_sum": 0,
        "response_times": {"10": 2},
        "request_sizes": {},
        "response_sizes": {},
    }
    now = time.time()
    points = [
        SeriesPoint(f"held:1:{n}", 0, 0, json.dumps({"t": now - n, "requests": [dict(item)]}))
        for n in range(3)
    ]
    points.append(SeriesPoint("held:1:x", 0, 0, "not json"))
    messages = held.release_messages(AppKey("c", "prod"), "i", points, now)
    bodies = [json.loads(folding.decode_body(message)) for message in messages]
    assert sum(item["request_count"] for body in bodies for item in body["requests"]) == 6
