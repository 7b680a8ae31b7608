"""OTLP/HTTP ingest (issue 29) at the HTTP level: ``POST /v1/traces|metrics|logs`` on a real hub (each
backend), with OTLP messages built here from the opentelemetry-proto classes.

Who may send (the app's write token), what is refused before anything is stored (401, 400, 415,
413), the encodings (binary protobuf, OTLP/JSON, several messages in one body, gzip), and how
metrics become counts: a body sent twice counts once, cumulative series count their growth (and a
restarted process its own totals), exponential histograms are re-binned with exact counts. An item
with an invalid field is refused alone, named in the answer's partial success.
"""

from __future__ import annotations

import base64
import gzip
import json
import math
import os
import secrets
import string
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from google.protobuf.json_format import MessageToDict
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import (
    AGGREGATION_TEMPORALITY_CUMULATIVE,
    AGGREGATION_TEMPORALITY_DELTA,
    AggregationTemporality,
    ExponentialHistogram,
    ExponentialHistogramDataPoint,
    Histogram,
    HistogramDataPoint,
    Metric,
    ResourceMetrics,
    ScopeMetrics,
)
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

from apitally_hub import HubServer

PROTOBUF = "application/x-protobuf"
INTERVAL_HEADER = "apitally-export-interval"
BOUNDS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
"""The OpenTelemetry SDKs' default bucket bounds of ``http.server.request.duration`` (seconds)."""

Endpoints = dict[tuple[str, str], dict[str, int]]


# -- OTLP messages ------------------------------------------------------------------------------


def any_value(value: str | int | float | bool) -> AnyValue:
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    return AnyValue(string_value=value)


def key_values(attrs: Mapping[str, str | int | float | bool]) -> list[KeyValue]:
    return [KeyValue(key=key, value=any_value(value)) for key, value in attrs.items()]


def resource(instance: str = "instance-1", **extra: str) -> Resource:
    return Resource(attributes=key_values({"service.name": "shop", "service.instance.id": instance, **extra}))


def route_attrs(method: str, route: str, status: int) -> list[KeyValue]:
    return key_values(
        {"http.request.method": method, "http.route": route, "http.response.status_code": status}
    )


def now_ns(offset_seconds: float = 0.0) -> int:
    return time.time_ns() + int(offset_seconds * 1e9)


def explicit_point(
    method: str, route: str, status: int, count: int, *, start: int, at: int, seconds: float = 0.02
) -> HistogramDataPoint:
    """``count`` requests of ``seconds`` each, in the SDK's default buckets."""
    counts = [0] * (len(BOUNDS) + 1)
    counts[next((i for i, bound in enumerate(BOUNDS) if seconds <= bound), len(BOUNDS))] = count
    return HistogramDataPoint(
        attributes=route_attrs(method, route, status),
        start_time_unix_nano=start,
        time_unix_nano=at,
        count=count,
        sum=seconds * count,
        bucket_counts=counts,
        explicit_bounds=BOUNDS,
    )


def duration_metric(
    points: Sequence[HistogramDataPoint], temporality: AggregationTemporality.ValueType
) -> Metric:
    return Metric(
        name="http.server.request.duration",
        unit="s",
        histogram=Histogram(data_points=points, aggregation_temporality=temporality),
    )


def metrics_request(*metrics: Metric, res: Resource | None = None) -> ExportMetricsServiceRequest:
    return ExportMetricsServiceRequest(
        resource_metrics=[
            ResourceMetrics(resource=res or resource(), scope_metrics=[ScopeMetrics(metrics=metrics)])
        ]
    )


def delta_request(
    counts: Mapping[tuple[str, str, int], int], *, at: int | None = None, res: Resource | None = None
) -> ExportMetricsServiceRequest:
    """Delta duration points: ``{(method, route, status): count}``, all at ``at`` (default now)."""
    at = at or now_ns()
    points = [
        explicit_point(method, route, status, count, start=at - 10**9, at=at)
        for (method, route, status), count in counts.items()
    ]
    return metrics_request(duration_metric(points, AGGREGATION_TEMPORALITY_DELTA), res=res)


def server_span(
    method: str,
    route: str,
    status: int,
    *,
    end: int | None = None,
    exception: tuple[str, str] | None = None,
) -> Span:
    end = end or now_ns()
    span = Span(
        trace_id=os.urandom(16),
        span_id=os.urandom(8),
        name=f"{method} {route}",
        kind=Span.SPAN_KIND_SERVER,
        start_time_unix_nano=end - 5_000_000,
        end_time_unix_nano=end,
        attributes=key_values(
            {
                "http.request.method": method,
                "http.route": route,
                "http.response.status_code": status,
                "url.scheme": "http",
                "server.address": "shop.test",
                "url.path": route,
            }
        ),
    )
    if exception is not None:
        span.status.CopyFrom(Status(code=Status.STATUS_CODE_ERROR))
        event = span.events.add(name="exception", time_unix_nano=end)
        event.attributes.extend(
            key_values(
                {
                    "exception.type": exception[0],
                    "exception.message": exception[1],
                    "exception.stacktrace": "Traceback (most recent call last):\n"
                    f"{exception[0]}: {exception[1]}",
                }
            )
        )
    return span


def traces_request(*spans: Span, res: Resource | None = None) -> ExportTraceServiceRequest:
    return ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(resource=res or resource(), scope_spans=[ScopeSpans(spans=spans)])]
    )


def otlp_json(message: ExportTraceServiceRequest | ExportMetricsServiceRequest) -> dict[str, Any]:
    """OTLP/JSON: lowerCamelCase keys, trace and span ids as hex, enums as integers."""
    document: dict[str, Any] = MessageToDict(message, use_integers_for_enums=True)

    def hex_ids(value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                if key in ("traceId", "spanId", "parentSpanId"):
                    value[key] = base64.b64decode(item).hex()
                else:
                    hex_ids(item)
        elif isinstance(value, list):
            for item in value:
                hex_ids(item)

    hex_ids(document)
    return document


# -- the hub ------------------------------------------------------------------------------------


@dataclass
class App:
    hub: HubServer
    http: httpx.Client
    client_id: str
    token: str

    def post(
        self,
        signal: str,
        body: bytes,
        *,
        token: str | None = None,
        content_type: str = PROTOBUF,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        sent = {"Content-Type": content_type, **(headers or {})}
        if token is not None or "Authorization" not in sent:
            sent["Authorization"] = f"Bearer {token or self.token}"
        return self.http.post(f"/v1/{signal}", content=body, headers=sent)

    def export(self, signal: str, message: Any, **options: Any) -> httpx.Response:
        """POST the message (binary protobuf); asserts the 200 and the export interval header."""
        response = self.post(signal, message.SerializeToString(), **options)
        assert response.status_code == 200, response.text
        assert response.headers[INTERVAL_HEADER] == "15"
        assert response.headers["content-type"] == PROTOBUF
        return response

    def query(self, resource: str, env: str = "prod", **params: str | int | None) -> dict[str, Any]:
        return self.hub.query(self.client_id, env, resource, **params)

    def endpoints(self, env: str = "prod") -> Endpoints:
        rows = self.query("endpoints", env)["endpoints"]
        return {(row["method"], row["path"]): row["status_codes"] for row in rows}

    def requests(self, env: str = "prod") -> int:
        return sum(row["requests"] for row in self.query("endpoints", env)["endpoints"])

    def stored_nothing(self) -> bool:
        return all(
            not self.query("endpoints", env)["endpoints"]
            and not self.query("instances", env)["instances"]
            and not self.query("requests", env)["items"]
            for env in ("prod", "dev")
        )


def new_app(hub: HubServer, http: httpx.Client, envs: Sequence[str] = ("prod", "dev")) -> App:
    response = http.post("/api/apps", json={"name": "OTLP shop", "framework": "other", "envs": list(envs)})
    assert response.status_code == 201, response.text
    return App(hub, http, response.json()["client_id"], response.json()["write_token"])


@pytest.fixture
def app(hub: HubServer, http: httpx.Client) -> App:
    return new_app(hub, http)


def metrics_response(response: httpx.Response) -> ExportMetricsServiceResponse:
    return ExportMetricsServiceResponse.FromString(response.content)


def traces_response(response: httpx.Response) -> ExportTraceServiceResponse:
    return ExportTraceServiceResponse.FromString(response.content)


def random_token() -> str:
    return "apt_" + "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(24))


# -- who may send --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "authorization",
    [
        pytest.param(None, id="missing"),
        pytest.param("Bearer", id="no-token"),
        pytest.param("Bearer apt_short", id="malformed"),
        pytest.param("Bearer apt_0123456789abcdef0123456!", id="not-alphanumeric"),
        pytest.param("Basic YXB0OnNlY3JldA==", id="not-bearer"),
        pytest.param(f"Bearer {random_token()}", id="unknown"),
    ],
)
def test_without_a_valid_write_token_it_is_401(app: App, authorization: str | None) -> None:
    headers = {"Content-Type": PROTOBUF}
    if authorization is not None:
        headers["Authorization"] = authorization
    body = delta_request({("GET", "/items", 200): 1}).SerializeToString()
    response = app.http.post("/v1/metrics", content=body, headers=headers)
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == "Bearer"
    assert app.stored_nothing()


def test_a_revoked_write_token_is_401(app: App) -> None:
    created = app.http.post(f"/api/apps/{app.client_id}/write-tokens")
    assert created.status_code == 201, created.text
    second = created.json()["token"]
    body = delta_request({("GET", "/items", 200): 1}).SerializeToString()
    assert app.post("metrics", body, token=second).status_code == 200  # the app's second token works
    # revoked through this hub process: refused at once, used before (remembered) or not
    for token in (app.token, second):
        revoked = app.http.post(f"/api/apps/{app.client_id}/write-tokens/revoke", json={"token": token})
        assert revoked.status_code == 200, revoked.text
        assert revoked.json()["revoked_at"] is not None
    assert app.post("metrics", body, token=second).status_code == 401
    assert app.post("metrics", body, token=app.token).status_code == 401
    assert app.requests() == 1  # the one export before the revocation


# -- refused before anything is stored -------------------------------------------------------------


def test_garbage_and_bad_headers_are_refused_and_nothing_is_stored(app: App) -> None:
    valid = delta_request({("GET", "/items", 200): 1}).SerializeToString()
    cases: list[tuple[int, str, bytes, dict[str, str]]] = [
        (400, "metrics", b"\x0a\x05abc", {}),  # a truncated protobuf message
        (400, "traces", b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", {}),
        (400, "metrics", b'{"resourceMetrics": [', {"Content-Type": "application/json"}),
        (400, "logs", b"[1, 2]", {"Content-Type": "application/json"}),
        (400, "metrics", valid, {"Apitally-Env": "no spaces"}),
        (400, "metrics", valid, {"Apitally-Env": "x" * 33}),
        (415, "metrics", valid, {"Content-Type": "text/plain"}),
        (415, "metrics", gzip.compress(valid), {"Content-Encoding": "br"}),
        (415, "metrics", valid, {"Content-Type": "application/x-www-form-urlencoded"}),
    ]
    for status, signal, body, headers in cases:
        response = app.post(signal, body, headers=headers)
        assert response.status_code == status, (status, signal, body[:20], headers, response.text)
    assert app.stored_nothing()
    # the same body with proper headers is stored
    assert app.post("metrics", valid).status_code == 200
    assert app.endpoints() == {("GET", "/items"): {"200": 1}}


def test_an_oversized_body_is_413() -> None:
    with HubServer(max_body_bytes=100_000) as small, httpx.Client(base_url=small.url, timeout=10) as http:
        app = new_app(small, http)
        padding = ExportMetricsServiceRequest(
            resource_metrics=[ResourceMetrics(resource=resource(padding="x" * 100_000))]
        ).SerializeToString()
        assert len(padding) > 100_000
        assert app.post("metrics", padding).status_code == 413
        # a gzip bomb: 1 kB on the wire, beyond the limit once decompressed
        bomb = gzip.compress(b"\0" * 5_000_000, 9)
        assert len(bomb) < 10_000
        response = app.post("metrics", bomb, headers={"Content-Encoding": "gzip"})
        assert response.status_code == 413, response.text
        assert app.stored_nothing()


def test_a_gzip_bomb_beyond_the_default_limit_is_413(app: App) -> None:
    bomb = gzip.compress(b"\0" * 12_000_000, 9)
    response = app.post("traces", bomb, headers={"Content-Encoding": "gzip"})
    assert response.status_code == 413, response.text
    assert app.stored_nothing()


# -- encodings ------------------------------------------------------------------------------------


def test_otlp_json_is_accepted_and_answered_in_json(app: App) -> None:
    span = server_span("GET", "/items/{id}", 200)
    document = otlp_json(traces_request(span))
    encoded = json.dumps(document)
    assert span.trace_id.hex() in encoded and '"kind": 2' in encoded  # hex ids, integer enums
    response = app.post("traces", encoded.encode(), content_type="application/json")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.headers[INTERVAL_HEADER] == "15"
    assert response.json() == {}
    [item] = app.query("requests")["items"]
    assert (item["method"], item["path"], item["status_code"], item["trace_id"]) == (
        "GET",
        "/items/{id}",
        200,
        span.trace_id.hex(),
    )
    assert item["url"] == "http://shop.test/items/{id}"

    metrics = otlp_json(delta_request({("POST", "/orders", 201): 3}))
    gzipped = gzip.compress(json.dumps(metrics).encode())
    response = app.post(
        "metrics", gzipped, content_type="application/json", headers={"Content-Encoding": "gzip"}
    )
    assert response.status_code == 200 and response.json() == {}, response.text
    assert app.endpoints()[("POST", "/orders")] == {"201": 3}

    # a partial success in JSON (int64 as a string, as protobuf's JSON mapping has it)
    stale = server_span("GET", "/old", 200, end=now_ns(-400 * 86400))
    response = app.post(
        "traces", json.dumps(otlp_json(traces_request(stale))).encode(), content_type="application/json"
    )
    assert response.status_code == 200, response.text
    partial = response.json()["partialSuccess"]
    assert int(partial["rejectedSpans"]) == 1


def test_two_concatenated_messages_in_one_body_are_both_counted(app: App) -> None:
    """apitally 1.x sends its spool files: several serialized export requests one after the other."""
    first = delta_request({("GET", "/a", 200): 3}, res=resource("one"))
    second = delta_request({("GET", "/b", 200): 4, ("GET", "/a", 200): 1}, res=resource("two"))
    body = first.SerializeToString() + second.SerializeToString()
    response = app.post("metrics", gzip.compress(body), headers={"Content-Encoding": "gzip"})
    assert response.status_code == 200, response.text
    assert app.endpoints() == {("GET", "/a"): {"200": 4}, ("GET", "/b"): {"200": 4}}
    assert app.query("instances")["total"] == 2
    # JSON documents one after the other, likewise
    third = otlp_json(delta_request({("GET", "/c", 200): 2}, res=resource("three")))
    fourth = otlp_json(delta_request({("GET", "/c", 200): 5}, res=resource("four")))
    text = json.dumps(third) + "\n" + json.dumps(fourth)
    assert app.post("metrics", text.encode(), content_type="application/json").status_code == 200
    assert app.endpoints()[("GET", "/c")] == {"200": 7}


def test_the_same_body_sent_twice_is_counted_once(app: App) -> None:
    metrics = delta_request({("GET", "/items", 200): 5, ("GET", "/boom", 500): 1})
    traces = traces_request(
        server_span("GET", "/items", 200), server_span("GET", "/boom", 500, exception=("ValueError", "bad"))
    )
    for _ in range(2):
        app.export("metrics", metrics)
        app.export("traces", traces)
    assert app.endpoints() == {("GET", "/items"): {"200": 5}, ("GET", "/boom"): {"500": 1}}
    assert app.query("requests")["total"] == 2
    [error] = app.query("server-errors")["server_errors"]
    assert (error["type"], error["msg"], error["count"]) == ("ValueError", "bad", 1)
    # gzipped, it is another body on the wire but the same export: still counted once
    gzipped = gzip.compress(metrics.SerializeToString())
    assert app.post("metrics", gzipped, headers={"Content-Encoding": "gzip"}).status_code == 200
    assert app.requests() == 6


# -- metrics into counts -----------------------------------------------------------------------------


def cumulative_export(app: App, total: int, *, start: int, at: int, res: Resource | None = None) -> None:
    point = explicit_point("GET", "/items", 200, total, start=start, at=at)
    app.export(
        "metrics", metrics_request(duration_metric([point], AGGREGATION_TEMPORALITY_CUMULATIVE), res=res)
    )


def test_cumulative_totals_count_their_growth_and_a_restart_its_own(app: App) -> None:
    start = now_ns(-60)
    at = now_ns(-30)
    for step, total in enumerate((7, 7, 15, 15, 15)):
        cumulative_export(app, total, start=start, at=at + step * 10**9)
    assert app.endpoints() == {("GET", "/items"): {"200": 15}}  # not 7 + 7 + 15 + 15 + 15 = 59
    # a late retry of an older point adds nothing either
    cumulative_export(app, 7, start=start, at=at + 10**9 // 2)
    assert app.requests() == 15
    # the process restarts: a new start time, lower totals (4, then 6)
    restart = now_ns(-20)
    cumulative_export(app, 4, start=restart, at=restart + 5 * 10**9)
    cumulative_export(app, 6, start=restart, at=restart + 10 * 10**9)
    assert app.endpoints() == {("GET", "/items"): {"200": 21}}


def test_a_cumulative_series_gaining_new_attributes_counts_each_series(app: App) -> None:
    start, at = now_ns(-60), now_ns(-30)
    points = [explicit_point("GET", "/items", 200, 2, start=start, at=at)]
    app.export("metrics", metrics_request(duration_metric(points, AGGREGATION_TEMPORALITY_CUMULATIVE)))
    points = [
        explicit_point("GET", "/items", 200, 5, start=start, at=at + 10**9),
        explicit_point("GET", "/items", 404, 1, start=start, at=at + 10**9),
    ]
    app.export("metrics", metrics_request(duration_metric(points, AGGREGATION_TEMPORALITY_CUMULATIVE)))
    assert app.endpoints() == {("GET", "/items"): {"200": 5, "404": 1}}


def exponential_point(
    values_ms: Mapping[float, int], *, scale: int, at: int
) -> ExponentialHistogramDataPoint:
    """A delta point of ``{milliseconds: count}`` as an SDK would bucket them (seconds, ``scale``)."""
    buckets: dict[int, int] = {}
    for ms, count in values_ms.items():
        buckets[bucket_index(ms / 1000, scale)] = buckets.get(bucket_index(ms / 1000, scale), 0) + count
    offset = min(buckets)
    counts = [buckets.get(offset + i, 0) for i in range(max(buckets) - offset + 1)]
    total = sum(values_ms.values())
    point = ExponentialHistogramDataPoint(
        attributes=route_attrs("GET", "/report", 200),
        start_time_unix_nano=at - 15 * 10**9,
        time_unix_nano=at,
        count=total,
        sum=sum(ms / 1000 * count for ms, count in values_ms.items()),
        scale=scale,
        zero_count=0,
        min=min(values_ms) / 1000,
        max=max(values_ms) / 1000,
    )
    point.positive.offset = offset
    point.positive.bucket_counts.extend(counts)
    return point


def bucket_index(value: float, scale: int) -> int:
    """The exponential bucket holding ``value``: ``(base ** i, base ** (i + 1)]``, base 2 ** 2 ** -scale."""
    return math.ceil(math.log2(value) * 2.0**scale) - 1


def bucket_bounds_ms(value_ms: float, scale: int) -> tuple[float, float]:
    index = bucket_index(value_ms / 1000, scale)
    base = 2 ** (2**-scale)
    return base**index * 1000, base ** (index + 1) * 1000


def test_delta_exponential_histograms_are_rebinned_with_exact_counts(app: App) -> None:
    values_ms = {12.0: 20, 240.0: 55, 900.0: 25}
    at = now_ns(-5)
    for offset in range(2):  # two exports (two intervals)
        point = exponential_point(values_ms, scale=3, at=at + offset * 10**9)
        metric = Metric(
            name="http.server.request.duration",
            unit="s",
            exponential_histogram=ExponentialHistogram(
                data_points=[point], aggregation_temporality=AGGREGATION_TEMPORALITY_DELTA
            ),
        )
        app.export("metrics", metrics_request(metric))
    [row] = app.query("endpoints")["endpoints"]
    assert (row["method"], row["path"], row["requests"], row["status_codes"]) == (
        "GET",
        "/report",
        200,
        {"200": 200},
    )
    # the median request took 240 ms: the hub's p50 (a 10 ms bin's lower edge) lies within the
    # scale-3 bucket that holds it (about 9 % wide)
    lower, upper = bucket_bounds_ms(240.0, 3)
    assert upper - lower < 0.1 * 240
    assert lower - 10 <= row["p50_ms"] <= upper, (row["p50_ms"], lower, upper)
    # the p95 lies in the 900 ms values' bucket
    lower, upper = bucket_bounds_ms(900.0, 3)
    assert lower - 10 <= row["p95_ms"] <= upper, (row["p95_ms"], lower, upper)


# -- partial success ------------------------------------------------------------------------------------


def test_invalid_spans_are_refused_alone(app: App) -> None:
    good = server_span("GET", "/items", 200)
    bad_status = server_span("GET", "/items", 999)
    ancient = server_span("GET", "/items", 200, end=now_ns(-400 * 86400))
    response = app.export("traces", traces_request(good, bad_status, ancient))
    partial = traces_response(response).partial_success
    assert partial.rejected_spans == 2, partial
    [item] = app.query("requests")["items"]
    assert item["trace_id"] == good.trace_id.hex()


def test_a_metric_point_far_in_the_past_is_refused_alone(app: App) -> None:
    points = [
        explicit_point("GET", "/items", 200, 4, start=now_ns(-10), at=now_ns(-5)),
        explicit_point("GET", "/old", 200, 3, start=now_ns(-400 * 86400 - 10), at=now_ns(-400 * 86400)),
    ]
    response = app.export("metrics", metrics_request(duration_metric(points, AGGREGATION_TEMPORALITY_DELTA)))
    partial = metrics_response(response).partial_success
    assert partial.rejected_data_points > 0 and partial.error_message, partial
    assert app.endpoints() == {("GET", "/items"): {"200": 4}}


def test_a_metric_point_with_an_invalid_status_code_is_reported_refused(app: App) -> None:
    at = now_ns(-5)
    points = [
        explicit_point("GET", "/items", 200, 4, start=at - 10**9, at=at),
        explicit_point("GET", "/items", 999, 3, start=at - 10**9, at=at),
    ]
    response = app.export("metrics", metrics_request(duration_metric(points, AGGREGATION_TEMPORALITY_DELTA)))
    assert app.endpoints() == {("GET", "/items"): {"200": 4}}
    assert metrics_response(response).partial_success.rejected_data_points == 1


def test_a_fully_accepted_export_has_no_partial_success(app: App) -> None:
    response = app.export("metrics", delta_request({("GET", "/items", 200): 1}))
    assert not metrics_response(response).HasField("partial_success")
    assert response.content == b""
    logs = app.post("logs", b"")
    assert logs.status_code == 200, logs.text  # an empty export request is a valid (empty) message
    assert ExportLogsServiceResponse.FromString(logs.content) == ExportLogsServiceResponse()


# -- which env -----------------------------------------------------------------------------------------


def test_the_env_comes_from_the_header_else_the_resource_else_the_apps_first(app: App) -> None:
    app.export("metrics", delta_request({("GET", "/header", 200): 1}), headers={"Apitally-Env": "dev"})
    named = resource("named", **{"deployment.environment.name": "dev"})
    app.export("metrics", delta_request({("GET", "/resource", 200): 1}, res=named))
    app.export("metrics", delta_request({("GET", "/default", 200): 1}, res=resource("plain")))
    # the header wins over the resource
    app.export(
        "metrics", delta_request({("GET", "/both", 200): 1}, res=named), headers={"Apitally-Env": "prod"}
    )
    assert set(app.endpoints("dev")) == {("GET", "/header"), ("GET", "/resource")}
    assert set(app.endpoints("prod")) == {("GET", "/default"), ("GET", "/both")}
