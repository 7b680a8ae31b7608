"""OTLP/HTTP ingest of the hub (issue 29), on SQLite and PostgreSQL, beside the classic ``/v2``
ingest of the same requests, in one run:

- throughput: batches/s and spans/s one hub process (``apitally-otel hub``, a subprocess) takes,
  timed from the first POST until the last batch is *visible* in the query API (folded, not just
  answered 200), for gzip'd ``/v1/traces`` batches of ``--spans`` apitally-1.x-like SERVER spans
  (headers and bodies as attributes: they become request-log items) and ``/v1/metrics`` batches
  of ``--series`` delta exponential-histogram series (they become request counts); the baselines
  are ``/v2/…/log`` files of the same request-log items and ``/v2/…/sync`` messages of the same
  series. The senders run in their own process (raw HTTP/1.1 over ``--connections`` keep-alive
  connections; bodies prepared before the clock starts; 429/503 retried after ``Retry-After``);
- CPU: the hub's process tree's CPU seconds (psutil, folding child included) per 1 000 spans
  over each throughput run, and the PostgreSQL server's beside it;
- memory: the hub's RSS (sampled every 5 ms) while it takes a 4 MB (uncompressed, gzip'd on the
  wire) body of several concatenated ``ExportTraceServiceRequest`` messages, as apitally 1.x's
  spool files are, against its idle RSS;
- lag: from the 200 of a small batch to its data in the query API (``/requests``, ``/endpoints``),
  median and p95, beside the classic ``/v2`` lag of the same data.

Rounds are interleaved (each round runs every kind on each backend, in a rotated order), so the
machine's noise hits each alike. The hubs run with ``--ingest-rate 0`` (the per-client rate
limit would otherwise cap the throughput figures at 4 MiB/s); PostgreSQL is a throwaway cluster
with durable commits, as in ``benchmarks.hub.storage``::

    python -m benchmarks.hub.otlp [--quick] [--rounds 3] [--batches 200] [--spans 100] [--series 20]

``--quick`` (seconds, SQLite only unless ``--backends`` says otherwise) keeps the script working
and asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import functools
import gzip
import json
import math
import os
import random
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, InstrumentationScope, KeyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import (
    AGGREGATION_TEMPORALITY_DELTA,
    ExponentialHistogram,
    ExponentialHistogramDataPoint,
    Gauge,
    Metric,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
)
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

from benchmarks import common

ENV = "prod"
KINDS = ("otlp_traces", "classic_log", "otlp_metrics", "classic_sync")
KIND_LABELS = {
    "otlp_traces": "OTLP /v1/traces",
    "classic_log": "classic /v2 log",
    "otlp_metrics": "OTLP /v1/metrics",
    "classic_sync": "classic /v2 sync",
}
BASELINE = {"otlp_traces": "classic_log", "otlp_metrics": "classic_sync"}
BIG_BODY_BYTES = 4_000_000
SPANS_PER_BIG_MESSAGE = 500

# Placeholders in a prepared body, replaced (same length) to make each body distinct: the hub
# stores a body sent twice once (its messages' uuids come from the body's digest).
TRACE_MARKER = bytes.fromhex("9f3c5ae1d27b40c8")
"""The first 8 bytes of every trace id of a traces template."""
INSTANCE_MARKER = "00000000-0000-4000-8000-0000000b0b0b"
"""``service.instance.id`` (OTLP) or ``instance_uuid`` (classic) of a template."""
MESSAGE_MARKER = "00000000-0000-4000-8000-00000000feed"
"""A classic sync's ``message_uuid``."""
LINE_MARKER = "c1a551c0"
"""The first 8 hex digits of every line uuid of a classic log template."""


# -- what is sent ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    """One request of the synthetic API, as apitally 1.x captures it."""

    method: str
    route: str
    path: str
    status: int
    consumer: str | None
    request_body: str | None
    response_body: str


def _requests() -> list[Request]:
    items = json.dumps(
        [{"id": i, "name": f"item-{i}", "price": 1.5 + i, "tags": ["a", "b"]} for i in range(12)],
        separators=(",", ":"),
    )
    item = '{"id":7,"name":"item-7","price":8.5,"tags":["a","b"]}'
    created = '{"name":"kiwi","price":1.5,"card_number":"[REDACTED]"}'
    invalid = (
        '{"detail":[{"type":"float_parsing","loc":["body","price"],"msg":"Input should be a valid number",'
        '"input":"x"}]}'
    )
    return [
        Request("GET", "/items", "/items", 200, "alice", None, items),
        Request("GET", "/items/{item_id}", "/items/7", 200, "bob", None, item),
        Request("GET", "/items", "/items?page=2", 200, None, None, items),
        Request("POST", "/items", "/items", 201, "bob", created, '{"id":3,' + created[1:]),
        Request("GET", "/items/{item_id}", "/items/9", 404, "alice", None, '{"detail":"Not Found"}'),
        Request("POST", "/items", "/items", 422, "alice", '{"name":"x","price":"x"}', invalid),
        Request("GET", "/items/{item_id}", "/items/8", 200, "carol", None, item),
        Request("GET", "/boom", "/boom", 500, None, None, "Internal Server Error"),
    ]


REQUESTS = _requests()


def _value(value: Any) -> AnyValue:
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, list):
        return AnyValue(array_value=ArrayValue(values=[_value(v) for v in value]))
    return AnyValue(string_value=str(value))


def _attributes(values: dict[str, Any]) -> list[KeyValue]:
    return [KeyValue(key=key, value=_value(value)) for key, value in values.items()]


def _resource() -> Resource:
    """apitally 1.x's resource (telemetry.distro.name apitally-py: its spans are request-log items)."""
    return Resource(
        attributes=_attributes(
            {
                "telemetry.sdk.language": "python",
                "telemetry.sdk.name": "opentelemetry",
                "telemetry.sdk.version": "1.45.1",
                "service.instance.id": INSTANCE_MARKER,
                "service.name": "bench-api",
                "deployment.environment.name": ENV,
                "telemetry.distro.name": "apitally-py",
                "telemetry.distro.version": "1.0.0",
            }
        )
    )


def _server_span(index: int, request: Request, end_ns: int, rng: random.Random) -> Span:
    duration_ns = rng.randint(800_000, 40_000_000)
    attrs: dict[str, Any] = {
        "url.scheme": "http",
        "server.address": "api.example.com",
        "server.port": 443,
        "network.protocol.version": "1.1",
        "url.path": request.path.split("?")[0],
        "http.request.method": request.method,
        "user_agent.original": "python-httpx/0.28.1",
        "client.port": 40000 + index % 20000,
        "http.response.status_code": request.status,
        "http.route": request.route,
        "client.address": f"10.0.{index % 250}.{index % 200 + 1}",
        "http.response.body.size": len(request.response_body),
        "http.request.header.host": ["api.example.com"],
        "http.request.header.accept": ["*/*"],
        "http.request.header.accept-encoding": ["gzip, deflate"],
        "http.request.header.connection": ["keep-alive"],
        "http.request.header.user-agent": ["python-httpx/0.28.1"],
        "http.request.header.authorization": ["[REDACTED]"],
        "http.response.header.content-length": [str(len(request.response_body))],
        "http.response.header.content-type": ["application/json"],
        "apitally.response.body": request.response_body,
    }
    if "?" in request.path:
        attrs["url.query"] = request.path.split("?", 1)[1]
    if request.consumer is not None:
        attrs["apitally.consumer.identifier"] = request.consumer
        attrs["http.request.header.x-consumer"] = [request.consumer]
    if request.request_body is not None:
        attrs["http.request.body.size"] = len(request.request_body)
        attrs["http.request.header.content-type"] = ["application/json"]
        attrs["http.request.header.content-length"] = [str(len(request.request_body))]
        attrs["apitally.request.body"] = request.request_body
    span = Span(
        trace_id=TRACE_MARKER + index.to_bytes(8, "big"),
        span_id=(index + 1).to_bytes(8, "big"),
        name=f"{request.method} {request.route}",
        kind=Span.SPAN_KIND_SERVER,
        start_time_unix_nano=end_ns - duration_ns,
        end_time_unix_nano=end_ns,
        attributes=_attributes(attrs),
        flags=256,
    )
    if request.status >= 500:
        attrs["error.type"] = str(request.status)
        span.attributes.append(KeyValue(key="error.type", value=_value(str(request.status))))
        span.status.CopyFrom(Status(code=Status.STATUS_CODE_ERROR))
        event = span.events.add()
        event.name = "exception"
        event.time_unix_nano = end_ns - 1000
        event.attributes.extend(
            _attributes(
                {
                    "exception.type": "RuntimeError",
                    "exception.message": "boom",
                    "exception.stacktrace": 'Traceback (most recent call last):\n  File "app.py", line 42,'
                    " in boom\n    raise RuntimeError('boom')\nRuntimeError: boom\n",
                    "exception.escaped": "False",
                }
            )
        )
    return span


def traces_message(spans: int, first_index: int = 0, *, now: float | None = None) -> bytes:
    """A serialized ``ExportTraceServiceRequest`` of ``spans`` apitally-1.x SERVER spans, ended in
    the last 10 s; every trace id starts with :data:`TRACE_MARKER`."""
    end_ns = int((time.time() if now is None else now) * 1e9)
    rng = random.Random(first_index)
    scope = ScopeSpans(
        scope=InstrumentationScope(name="opentelemetry.instrumentation.asgi", version="0.66b1")
    )
    for i in range(first_index, first_index + spans):
        request = REQUESTS[i % len(REQUESTS)]
        scope.spans.append(_server_span(i, request, end_ns - rng.randint(0, 10_000_000_000), rng))
    message = ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(resource=_resource(), scope_spans=[scope])]
    )
    return message.SerializeToString()


def big_traces_body(target_bytes: int) -> tuple[bytes, int, int]:
    """Several serialized ``ExportTraceServiceRequest`` back to back (an apitally 1.x spool file),
    at least ``target_bytes`` in all; (body, messages, spans)."""
    parts: list[bytes] = []
    size = 0
    while size < target_bytes:
        part = traces_message(SPANS_PER_BIG_MESSAGE, len(parts) * SPANS_PER_BIG_MESSAGE)
        parts.append(part)
        size += len(part)
    return b"".join(parts), len(parts), len(parts) * SPANS_PER_BIG_MESSAGE


@dataclass(frozen=True)
class Series:
    """One request-count series of an export interval: what a metrics point and a sync item say."""

    method: str
    route: str
    status: int
    consumer: str | None
    count: int
    durations_ms: tuple[float, ...]
    request_size: int
    response_size: int


def series_list(count: int, seed: int = 1) -> list[Series]:
    rng = random.Random(seed)
    found = []
    for i in range(count):
        request = REQUESTS[i % len(REQUESTS)]
        n = rng.randint(1, 50)
        found.append(
            Series(
                request.method,
                request.route if i < len(REQUESTS) else f"/v{i // len(REQUESTS)}{request.route}",
                request.status,
                request.consumer,
                n,
                tuple(round(rng.lognormvariate(2.5, 0.8), 3) for _ in range(n)),
                len(request.request_body or ""),
                len(request.response_body),
            )
        )
    return found


def _exponential_point(
    values: Sequence[float], attrs: list[KeyValue], start_ns: int, time_ns: int
) -> ExponentialHistogramDataPoint:
    scale = 3
    point = ExponentialHistogramDataPoint(
        attributes=attrs,
        start_time_unix_nano=start_ns,
        time_unix_nano=time_ns,
        count=len(values),
        sum=float(sum(values)),
        scale=scale,
        min=float(min(values)),
        max=float(max(values)),
    )
    positive = [v for v in values if v > 0]
    point.zero_count = len(values) - len(positive)
    if positive:
        indexes = [math.ceil(math.log2(v) * 2**scale) - 1 for v in positive]
        offset = min(indexes)
        buckets = [0] * (max(indexes) - offset + 1)
        for index in indexes:
            buckets[index - offset] += 1
        point.positive.offset = offset
        point.positive.bucket_counts.extend(buckets)
    return point


def metrics_message(series: Sequence[Series], time_ns: int) -> bytes:
    """A serialized ``ExportMetricsServiceRequest`` as apitally 1.x sends every 15 s: process gauges,
    then delta exponential histograms of duration and body sizes, one point per series."""
    start_ns = time_ns - 15_000_000_000
    gauges = ScopeMetrics(scope=InstrumentationScope(name="apitally"))
    for name, unit, value in (
        ("process.uptime", "s", 1234.5),
        ("process.cpu.utilization", "1", 0.12),
        ("process.memory.usage", "By", 85_000_000.0),
    ):
        gauges.metrics.append(
            Metric(
                name=name,
                unit=unit,
                gauge=Gauge(data_points=[NumberDataPoint(time_unix_nano=time_ns, as_double=value)]),
            )
        )
    http = ScopeMetrics(scope=InstrumentationScope(name="apitally"))
    for name, unit in (
        ("http.server.request.duration", "s"),
        ("http.server.request.body.size", "By"),
        ("http.server.response.body.size", "By"),
    ):
        points = []
        for s in series:
            attrs = {
                "http.request.method": s.method,
                "http.route": s.route,
                "http.response.status_code": s.status,
            }
            if s.consumer is not None:
                attrs["apitally.consumer.identifier"] = s.consumer
            if name == "http.server.request.duration":
                values = [ms / 1000 for ms in s.durations_ms]
            elif name == "http.server.request.body.size":
                values = [float(s.request_size)] * s.count
            else:
                values = [float(s.response_size)] * s.count
            points.append(_exponential_point(values, _attributes(attrs), start_ns, time_ns))
        http.metrics.append(
            Metric(
                name=name,
                unit=unit,
                exponential_histogram=ExponentialHistogram(
                    data_points=points, aggregation_temporality=AGGREGATION_TEMPORALITY_DELTA
                ),
            )
        )
    message = ExportMetricsServiceRequest(
        resource_metrics=[ResourceMetrics(resource=_resource(), scope_metrics=[gauges, http])]
    )
    return message.SerializeToString()


def _time_bins(durations_ms: Sequence[float]) -> dict[str, int]:
    bins: dict[str, int] = {}
    for ms in durations_ms:
        key = str(int(ms) // 10 * 10)
        bins[key] = bins.get(key, 0) + 1
    return bins


def sync_body(series: Sequence[Series], timestamp: float) -> bytes:
    """The classic sync message of the same series (apitally 0.x's)."""
    requests = [
        {
            "consumer": s.consumer,
            "method": s.method,
            "path": s.route,
            "status_code": s.status,
            "request_count": s.count,
            "request_size_sum": s.count * s.request_size,
            "response_size_sum": s.count * s.response_size,
            "response_times": _time_bins(s.durations_ms),
            "request_sizes": {str(s.request_size // 1000): s.count},
            "response_sizes": {str(s.response_size // 1000): s.count},
        }
        for s in series
    ]
    message = {
        "instance_uuid": INSTANCE_MARKER,
        "message_uuid": MESSAGE_MARKER,
        "timestamp": timestamp,
        "requests": requests,
        "validation_errors": [],
        "server_errors": [],
        "consumers": [],
        "resources": {"cpu_percent": 12.0, "memory_rss": 85_000_000},
    }
    return json.dumps(message, separators=(",", ":")).encode()


def log_body(lines: int, *, now: float | None = None) -> bytes:
    """The classic request-log file (NDJSON, uncompressed here) of the same items as
    :func:`traces_message`'s spans; every line uuid starts with :data:`LINE_MARKER`."""
    now = time.time() if now is None else now
    rng = random.Random(lines)
    out = []
    for i in range(lines):
        r = REQUESTS[i % len(REQUESTS)]
        headers = [["host", "api.example.com"], ["accept", "*/*"], ["accept-encoding", "gzip, deflate"]]
        headers += [["connection", "keep-alive"], ["user-agent", "python-httpx/0.28.1"]]
        headers += [["authorization", "[REDACTED]"]]
        request: dict[str, Any] = {
            "timestamp": now - rng.random() * 10,
            "method": r.method,
            "path": r.route,
            "url": f"https://api.example.com{r.path}",
            "headers": headers + ([["x-consumer", r.consumer]] if r.consumer else []),
            "client_ip": f"10.0.{i % 250}.{i % 200 + 1}",
        }
        if r.consumer:
            request["consumer"] = r.consumer
        if r.request_body is not None:
            request["headers"] += [
                ["content-type", "application/json"],
                ["content-length", str(len(r.request_body))],
            ]
            request["size"] = len(r.request_body)
            request["body"] = base64.b64encode(r.request_body.encode()).decode()
        line: dict[str, Any] = {
            "uuid": f"{LINE_MARKER}-0000-4000-8000-{i:012d}",
            "request": request,
            "response": {
                "status_code": r.status,
                "response_time": rng.randint(1, 40) / 1000,
                "headers": [
                    ["content-length", str(len(r.response_body))],
                    ["content-type", "application/json"],
                ],
                "size": len(r.response_body),
                "body": base64.b64encode(r.response_body.encode()).decode(),
            },
        }
        if r.status >= 500:
            line["exception"] = {"type": "RuntimeError", "message": "boom", "traceback": "Traceback ...\n"}
        out.append(json.dumps(line, separators=(",", ":")))
    return ("\n".join(out) + "\n").encode()


@dataclass(frozen=True)
class App:
    client_id: str
    token: str | None = None
    """An OTLP app's write token (``POST /api/apps``); None for the classic protocol's apps."""


# -- distinct bodies from a template ------------------------------------------------------------


@dataclass(frozen=True)
class Template:
    """A body with placeholders, and how to make its ``index``-th distinct copy (for run ``salt``)."""

    kind: str
    body: bytes
    path: str
    """``{uuid}`` in it becomes a fresh uuid per body (a classic log file's uuid)."""
    headers: dict[str, str]
    gzip: bool
    requests: int
    """Requests (spans, log lines, counted requests) one body carries."""
    time_ns: int = 0
    """Of a metrics template: its points' time, moved by a few µs per copy."""
    instances: int = 8
    """The copies come from this many instances, in turn."""

    def variant(self, index: int, salt: int) -> tuple[str, bytes]:
        rng = random.Random(salt * 1_000_003 + index)
        instance = str(uuid.UUID(int=(salt << 32) + index % self.instances, version=4))
        body = self.body.replace(INSTANCE_MARKER.encode(), instance.encode())
        if self.kind == "otlp_traces":
            body = body.replace(TRACE_MARKER, rng.getrandbits(64).to_bytes(8, "big"))
        elif self.kind == "otlp_metrics":
            moved = self.time_ns + (salt % 1000 * 100_000 + index) * 1000
            body = body.replace(struct.pack("<Q", self.time_ns), struct.pack("<Q", moved))
        elif self.kind == "classic_sync":
            body = body.replace(
                MESSAGE_MARKER.encode(), str(uuid.UUID(int=rng.getrandbits(128), version=4)).encode()
            )
        else:
            body = body.replace(LINE_MARKER.encode(), f"{rng.getrandbits(32):08x}".encode())
        path = self.path.replace("{uuid}", str(uuid.UUID(int=rng.getrandbits(128), version=4)))
        return path, gzip.compress(body, 6) if self.gzip else body

    def as_json(self) -> dict[str, Any]:
        return {**self.__dict__, "body": base64.b64encode(self.body).decode()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Template:
        return cls(**{**data, "body": base64.b64decode(data["body"])})


def templates(apps: dict[str, App], spans: int, series: int) -> dict[str, Template]:
    """One template per kind, for the app ``apps[kind]``."""
    now = time.time()
    found = series_list(series)
    time_ns = int(now * 1e9) // 1000 * 1000 + 123
    otlp = {"content-type": "application/x-protobuf", "content-encoding": "gzip", "apitally-env": ENV}
    client_ids = {kind: app.client_id for kind, app in apps.items()}
    requests = sum(s.count for s in found)
    return {
        "otlp_traces": Template(
            "otlp_traces",
            traces_message(spans, now=now),
            "/v1/traces",
            {**otlp, "authorization": f"Bearer {apps['otlp_traces'].token}"},
            True,
            spans,
        ),
        "classic_log": Template(
            "classic_log",
            log_body(spans, now=now),
            f"/v2/{client_ids['classic_log']}/{ENV}/log?uuid={{uuid}}",
            {},
            True,
            spans,
        ),
        "otlp_metrics": Template(
            "otlp_metrics",
            metrics_message(found, time_ns),
            "/v1/metrics",
            {**otlp, "authorization": f"Bearer {apps['otlp_metrics'].token}"},
            True,
            requests,
            time_ns,
        ),
        "classic_sync": Template(
            "classic_sync",
            sync_body(found, now),
            f"/v2/{client_ids['classic_sync']}/{ENV}/sync",
            {"content-type": "application/json"},
            False,
            requests,
        ),
    }


# -- the sender (its own process) -------------------------------------------------------------


def _post(
    sock: socket.socket, reader: Any, host: str, path: str, headers: dict[str, str], body: bytes
) -> tuple[int, float]:
    """One POST over a keep-alive connection: (status, Retry-After seconds or 0)."""
    head = f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {len(body)}\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    sock.sendall(head.encode() + b"\r\n" + body)
    status = int(reader.readline().split()[1])
    length, retry_after = 0, 0.0
    while (line := reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.partition(b":")
        if name.lower() == b"content-length":
            length = int(value)
        elif name.lower() == b"retry-after":
            retry_after = float(value)
    reader.read(length)
    return status, retry_after


def send_all(
    address: tuple[str, int], template: Template, bodies: list[tuple[str, bytes]], connections: int
) -> dict[str, Any]:
    """POST every body over ``connections`` keep-alive connections; a 429 or 503 is sent again after
    its Retry-After (at most 1 s), as a client would."""
    host, port = address
    lock = threading.Lock()
    results: dict[str, Any] = {"ok": 0, "retried": 0, "other": 0, "latencies": []}

    def connection(chunk: list[tuple[str, bytes]]) -> None:
        with socket.create_connection((host, port)) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            reader = sock.makefile("rb")
            for path, body in chunk:
                started = time.perf_counter()
                status, retry_after = _post(sock, reader, host, path, template.headers, body)
                while status in (429, 503):
                    with lock:
                        results["retried"] += 1
                    time.sleep(min(max(retry_after, 0.05), 1.0))
                    status, retry_after = _post(sock, reader, host, path, template.headers, body)
                with lock:
                    results["ok" if status in (200, 202) else "other"] += 1
                    results["latencies"].append(time.perf_counter() - started)

    started = time.perf_counter()
    with ThreadPoolExecutor(connections) as pool:
        for future in [pool.submit(connection, bodies[i::connections]) for i in range(connections)]:
            future.result()
    elapsed = time.perf_counter() - started
    latencies = sorted(results.pop("latencies"))
    return {
        **results,
        "answered_s": elapsed,
        "p50_ms": round(common.quantile(latencies, 0.5) * 1000, 1) if latencies else None,
        "p99_ms": round(common.quantile(latencies, 0.99) * 1000, 1) if latencies else None,
    }


def sender_main() -> None:
    """JSON lines on stdin/stdout (:class:`benchmarks.common.JsonProcess`): ``prepare`` builds the
    bodies (untimed), ``send`` posts them."""
    prepared: dict[str, tuple[Template, list[tuple[str, bytes]]]] = {}
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        command = json.loads(line)
        if command["cmd"] == "quit":
            print(json.dumps({"bye": True}), flush=True)
            return
        if command["cmd"] == "prepare":
            template = Template.from_json(command["template"])
            bodies = [template.variant(i, command["salt"]) for i in range(command["count"])]
            prepared[command["name"]] = (template, bodies)
            wire = sum(len(body) for _, body in bodies) / max(len(bodies), 1)
            print(json.dumps({"bodies": len(bodies), "wire_bytes": round(wire)}), flush=True)
        elif command["cmd"] == "send":
            template, bodies = prepared.pop(command["name"])
            address = (command["host"], command["port"])
            print(json.dumps(send_all(address, template, bodies, command["connections"])), flush=True)


# -- the hub (a subprocess) -------------------------------------------------------------------


class HubProcess:
    """``apitally-otel hub`` on an ephemeral loopback port, with the per-client rate limit off."""

    def __init__(self, db: str, postgres_pid: int | None = None) -> None:
        argv = [sys.executable, "-m", "apitally_hub.cli", "hub", "--port", "0", "--db", db]
        argv += ["--log-level", "warning", "--ingest-rate", "0"]
        self.process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert self.process.stdout is not None
        first = self.process.stdout.readline()
        if "listening on " not in first:
            self.stop()
            raise RuntimeError(f"the hub did not start: {first!r}")
        self.url = first.split("listening on ", 1)[1].split()[0]
        parsed = httpx.URL(self.url)
        self.address = (parsed.host, parsed.port or 80)
        self.http = httpx.Client(base_url=self.url, timeout=60)
        self.ps = psutil.Process(self.process.pid)
        self.postgres = psutil.Process(postgres_pid) if postgres_pid else None
        if not common.wait_until(self._healthy, timeout=60, interval=0.05):
            self.stop()
            raise RuntimeError("the hub did not answer /health")

    def _healthy(self) -> bool:
        try:
            return self.http.get("/health").status_code == 200
        except httpx.HTTPError:
            return False

    def pending(self) -> int:
        pending: int = self.http.get("/health").json()["queue"]["pending"]
        return pending

    def create_app(self, name: str) -> App:
        response = self.http.post("/api/apps", json={"name": name, "framework": "fastapi", "envs": [ENV]})
        response.raise_for_status()
        body = response.json()
        return App(body["client_id"], body["write_token"])

    def visible(self, app: App, kind: str) -> int:
        """What the query API shows of ``app``'s data: request-log items or counted requests."""
        if kind in ("otlp_traces", "classic_log"):
            body = self.http.get(f"/api/{app.client_id}/{ENV}/requests", params={"since": "1h", "limit": 1})
            total: int = body.json()["total"]
            return total
        requests: int = self.http.get(f"/api/{app.client_id}/{ENV}/overview", params={"since": "1h"}).json()[
            "requests"
        ]
        return requests

    def cpu_s(self) -> float:
        """CPU seconds of the hub's processes (the server and its folding child)."""
        return _tree_cpu(self.ps)

    def postgres_cpu_s(self) -> float:
        return _tree_cpu(self.postgres) if self.postgres is not None else 0.0

    def rss_mb(self) -> float:
        """The server process's RSS (where bodies are read, decompressed and parsed)."""
        return float(self.ps.memory_info().rss) / 2**20

    def children_rss_mb(self) -> float:
        """Its children's (the folding process's) RSS."""
        total = 0
        for child in self.ps.children(recursive=True):
            with contextlib.suppress(psutil.NoSuchProcess):
                total += child.memory_info().rss
        return total / 2**20

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(2)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


def _tree_cpu(process: psutil.Process) -> float:
    total = 0.0
    for each in [process, *process.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):
            times = each.cpu_times()
            total += times.user + times.system
    return total


class RssSampler:
    """The hub server process's RSS every ``interval`` seconds, in a thread, while in the block (its
    children's every tenth time)."""

    def __init__(self, hub: HubProcess, interval: float = 0.005) -> None:
        self.hub, self.interval = hub, interval
        self.samples: list[float] = []
        self.children: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        count = 0
        while not self._stop.is_set():
            with contextlib.suppress(psutil.Error):
                self.samples.append(self.hub.rss_mb())
                if count % 10 == 0:
                    self.children.append(self.hub.children_rss_mb())
            count += 1
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def peak(self) -> float:
        return max(self.samples, default=0.0)

    @property
    def children_peak(self) -> float:
        return max(self.children, default=0.0)


def wait_visible(hub: HubProcess, app: App, kind: str, expected: int, timeout: float = 300.0) -> bool:
    """Until the query API shows ``expected`` of ``app``'s requests (or ``timeout``)."""
    common.wait_until(lambda: hub.pending() == 0, timeout=timeout, interval=0.05)
    return common.wait_until(lambda: hub.visible(app, kind) >= expected, timeout=30, interval=0.05)


# -- the measurements -------------------------------------------------------------------------


def _app(hub: HubProcess, kind: str) -> App:
    return hub.create_app(f"bench {kind}") if kind.startswith("otlp") else App(str(uuid.uuid4()))


_SALTS = iter(range(1, 1_000_000))


def throughput(
    hub: HubProcess, sender: common.JsonProcess, kind: str, args: argparse.Namespace
) -> dict[str, Any]:
    """``args.batches`` bodies of ``kind`` for a fresh app: from the first POST until all is visible."""
    app = _app(hub, kind)
    template = templates({k: app for k in KINDS}, args.spans, args.series)[kind]
    count = args.batches if kind in ("otlp_traces", "classic_log") else args.metrics_batches
    prepared = sender.ask(
        cmd="prepare", name=kind, template=template.as_json(), count=count, salt=next(_SALTS)
    )
    cpu, pg_cpu = hub.cpu_s(), hub.postgres_cpu_s()
    started = time.perf_counter()
    sent = sender.ask(
        cmd="send", name=kind, host=hub.address[0], port=hub.address[1], connections=args.connections
    )
    expected = count * template.requests
    ok = wait_visible(hub, app, kind, expected)
    elapsed = time.perf_counter() - started
    cpu, pg_cpu = hub.cpu_s() - cpu, hub.postgres_cpu_s() - pg_cpu
    return {
        "batches": count,
        "requests": expected,
        "visible": ok,
        "wire_bytes": prepared["wire_bytes"],
        "raw_bytes": len(template.body),
        "answered_s": round(sent["answered_s"], 3),
        "visible_s": round(elapsed, 3),
        "batches_per_s": round(count / elapsed, 1),
        "requests_per_s": round(expected / elapsed, 1),
        "cpu_s": round(cpu, 3),
        "cpu_s_per_1k": round(cpu / expected * 1000, 4),
        "cpu_ms_per_batch": round(cpu / count * 1000, 2),
        "postgres_cpu_s_per_1k": round(pg_cpu / expected * 1000, 4),
        "retried": sent["retried"],
        "non_2xx": sent["other"],
        "p50_ms": sent["p50_ms"],
        "p99_ms": sent["p99_ms"],
    }


def memory(hub: HubProcess, repeats: int, target_bytes: int) -> dict[str, Any]:
    """The hub's RSS while it takes a ``target_bytes`` (uncompressed) body of concatenated traces
    messages, ``repeats`` times, against its idle RSS (after a small warm-up export)."""
    app = hub.create_app("bench memory")
    headers = {
        "content-type": "application/x-protobuf",
        "content-encoding": "gzip",
        "apitally-env": ENV,
        "authorization": f"Bearer {app.token}",
    }
    warm = Template("otlp_traces", traces_message(10), "/v1/traces", headers, True, 10)
    hub.http.post("/v1/traces", content=warm.variant(0, next(_SALTS))[1], headers=headers).raise_for_status()
    wait_visible(hub, app, "otlp_traces", 10)
    time.sleep(0.5)
    idle, idle_children = [], []
    for _ in range(10):
        idle.append(hub.rss_mb())
        idle_children.append(hub.children_rss_mb())
        time.sleep(0.02)
    body, messages, spans = big_traces_body(target_bytes)
    big = Template("otlp_traces", body, "/v1/traces", headers, True, spans)
    runs = []
    for i in range(repeats):
        _, wire = big.variant(i, next(_SALTS))
        with RssSampler(hub) as rss:
            started = time.perf_counter()
            response = hub.http.post("/v1/traces", content=wire, headers=headers)
            answered = time.perf_counter() - started
            response.raise_for_status()
            ok = wait_visible(hub, app, "otlp_traces", 10 + spans * (i + 1))
            visible = time.perf_counter() - started
        runs.append(
            {
                "peak_mb": round(rss.peak, 1),
                "children_peak_mb": round(rss.children_peak, 1),
                "answered_s": round(answered, 2),
                "visible_s": round(visible, 2),
                "visible": ok,
            }
        )
    time.sleep(0.5)
    return {
        "body_bytes": len(body),
        "wire_bytes": len(wire),
        "messages": messages,
        "spans": spans,
        "idle_mb": round(common.median(idle), 1),
        "peak_mb": max(r["peak_mb"] for r in runs),
        "after_mb": round(hub.rss_mb(), 1),
        "children_idle_mb": round(common.median(idle_children), 1),
        "children_peak_mb": max(r["children_peak_mb"] for r in runs),
        "runs": runs,
    }


def _shows(hub: HubProcess, app: App, kind: str, expected: int) -> bool:
    return hub.visible(app, kind) >= expected


LAG_KINDS = {"otlp_traces": 10, "classic_log": 10, "otlp_metrics": 5, "classic_sync": 5}
"""Kind -> spans, log lines or series of the small batches whose lag is measured."""


def lags(hub: HubProcess, samples: int) -> dict[str, list[float]]:
    """Seconds from the 2xx of a small batch until the query API shows it, ``samples`` per kind,
    the kinds taking turns."""
    apps = {kind: _app(hub, kind) for kind in LAG_KINDS}
    found: dict[str, list[float]] = {kind: [] for kind in LAG_KINDS}
    seen = dict.fromkeys(LAG_KINDS, 0)
    small = {kind: templates(apps, size, size)[kind] for kind, size in LAG_KINDS.items()}
    salt = next(_SALTS)
    rng = random.Random(salt)
    for i in range(samples):
        for kind, template in small.items():
            path, body = template.variant(i, salt)
            response = hub.http.post(path, content=body, headers=template.headers)
            answered = time.perf_counter()
            response.raise_for_status()
            seen[kind] += template.requests
            shown = functools.partial(_shows, hub, apps[kind], kind, seen[kind])
            if not common.wait_until(shown, timeout=60, interval=0.005):
                raise RuntimeError(f"{kind} not visible after 60 s")
            found[kind].append(time.perf_counter() - answered)
            time.sleep(rng.uniform(0.01, 0.05))
    return found


# -- the run ------------------------------------------------------------------------------------


@contextlib.contextmanager
def backends(names: Sequence[str], tmp: Path) -> Iterator[dict[str, HubProcess]]:
    """A fresh hub per backend (PostgreSQL: a throwaway cluster; skipped when its binaries are absent)."""
    with contextlib.ExitStack() as stack:
        hubs: dict[str, HubProcess] = {}
        for name in names:
            if name == "sqlite":
                hub = HubProcess(str(tmp / "hub.sqlite"))
            else:
                from benchmarks.hub.storage import PG_SETTINGS
                from tests.support.pg_cluster import PostgresCluster

                try:
                    cluster = stack.enter_context(PostgresCluster(settings=PG_SETTINGS))
                except RuntimeError as exc:
                    common.log(f"skipping PostgreSQL: {exc}")
                    continue
                assert cluster.process is not None
                hub = HubProcess(cluster.create_database("bench"), postgres_pid=cluster.process.pid)
            stack.callback(hub.stop)
            hubs[name] = hub
        yield hubs


def _summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    def med(key: str) -> float:
        return round(common.median([r[key] for r in runs]), 4)

    return {
        "rounds": runs,
        "batches_per_s": med("batches_per_s"),
        "batches_per_s_all": [r["batches_per_s"] for r in runs],
        "requests_per_s": med("requests_per_s"),
        "cpu_s_per_1k": med("cpu_s_per_1k"),
        "cpu_ms_per_batch": med("cpu_ms_per_batch"),
        "postgres_cpu_s_per_1k": med("postgres_cpu_s_per_1k"),
        "retried": sum(r["retried"] for r in runs),
        "non_2xx": sum(r["non_2xx"] for r in runs),
        "all_visible": all(r["visible"] for r in runs),
        "wire_bytes": runs[0]["wire_bytes"],
        "raw_bytes": runs[0]["raw_bytes"],
    }


def run(
    *,
    quick: bool,
    rounds: int | None = None,
    batches: int | None = None,
    spans: int | None = None,
    series: int | None = None,
    connections: int = 4,
    lag_samples: int | None = None,
    memory_repeats: int | None = None,
    backend_names: Sequence[str] | None = None,
) -> dict[str, Any]:
    args = argparse.Namespace(
        rounds=rounds or (1 if quick else 3),
        batches=batches or (6 if quick else 200),
        spans=spans or (20 if quick else 100),
        series=series or (5 if quick else 20),
        connections=2 if quick else connections,
        lag_samples=lag_samples or (2 if quick else 30),
        memory_repeats=memory_repeats or (1 if quick else 3),
    )
    args.metrics_batches = args.batches * (1 if quick else 2)
    names = list(backend_names or (["sqlite"] if quick else ["sqlite", "postgres"]))
    big = 500_000 if quick else BIG_BODY_BYTES
    result: dict[str, Any] = {
        "settings": {**vars(args), "big_body_target_bytes": big, "backends": names},
        "load_average_before": [round(x, 2) for x in os.getloadavg()],
    }
    sender = common.JsonProcess([sys.executable, "-m", "benchmarks.hub.otlp", "--sender"])
    try:
        with (
            tempfile.TemporaryDirectory(prefix="apitally-bench-otlp-") as tmp,
            backends(names, Path(tmp)) as hubs,
        ):
            sender.hello  # noqa: B018 -- started beside the hubs; wait for it now
            common.log(f"memory: a {big / 1e6:g} MB body of concatenated traces messages")
            result["memory"] = {name: memory(hub, args.memory_repeats, big) for name, hub in hubs.items()}
            runs: dict[str, dict[str, list[dict[str, Any]]]] = {name: {k: [] for k in KINDS} for name in hubs}
            for round_ in range(args.rounds):
                order = KINDS[round_ % len(KINDS) :] + KINDS[: round_ % len(KINDS)]
                for name, hub in hubs.items():
                    common.log(f"throughput, round {round_ + 1}/{args.rounds}, {name}: {', '.join(order)}")
                    for kind in order:
                        runs[name][kind].append(throughput(hub, sender, kind, args))
            result["throughput"] = {
                name: {kind: _summary(values) for kind, values in kinds.items()}
                for name, kinds in runs.items()
            }
            common.log("lag until visible")
            result["lag"] = {}
            for name, hub in hubs.items():
                samples = lags(hub, args.lag_samples)
                result["lag"][name] = {
                    kind: {
                        "p50_ms": round(common.median(values) * 1000, 1),
                        "p95_ms": round(common.quantile(values, 0.95) * 1000, 1),
                        "max_ms": round(max(values) * 1000, 1),
                        "samples": len(values),
                    }
                    for kind, values in samples.items()
                }
    finally:
        sender.close()
    result["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    return result


# -- the report ---------------------------------------------------------------------------------

BACKEND_LABELS = {"sqlite": "SQLite", "postgres": "PostgreSQL"}


def report(result: dict[str, Any]) -> str:
    settings, mem, lag = result["settings"], result["memory"], result["lag"]
    through = result["throughput"]
    names = list(through)
    rows: list[list[str]] = []

    def rounds(name: str, kind: str) -> str:
        figures = through[name][kind]
        return (
            f"{figures['batches_per_s']:.1f} ({', '.join(f'{v:.0f}' for v in figures['batches_per_s_all'])})"
        )

    def ratio(name: str, kind: str, key: str) -> str:
        ours, base = through[name][kind][key], through[name][BASELINE[kind]][key]
        return f"{ours / base:.2f}x" if base else "-"

    def cpu(name: str, kind: str) -> str:
        figures = through[name][kind]
        text = f"{figures['cpu_s_per_1k']:.3f} ({figures['cpu_ms_per_batch']:.1f} ms)"
        if figures["postgres_cpu_s_per_1k"]:
            text += f"; PG server {figures['postgres_cpu_s_per_1k']:.3f}"
        return text

    for kind, unit in (("otlp_traces", "spans"), ("otlp_metrics", "requests")):
        base = BASELINE[kind]
        what = f"{settings['spans']} spans" if kind == "otlp_traces" else f"{settings['series']} series"
        rows.append([f"{KIND_LABELS[kind]}: batches/s ({what}; rounds)", *(rounds(n, kind) for n in names)])
        rows.append(
            [f"{KIND_LABELS[kind]}: {unit}/s", *(f"{through[n][kind]['requests_per_s']:,.0f}" for n in names)]
        )
        per = "files" if base == "classic_log" else "syncs"
        rows.append([f"{KIND_LABELS[base]}, the same requests: {per}/s", *(rounds(n, base) for n in names)])
        rows.append(
            [
                f"throughput {KIND_LABELS[kind]} / {KIND_LABELS[base]}",
                *(ratio(n, kind, "batches_per_s") for n in names),
            ]
        )
    units = {"otlp_traces": "spans", "classic_log": "lines"}
    for kind in KINDS:
        label = f"hub CPU s per 1 000 {units.get(kind, 'requests')} (per batch), {KIND_LABELS[kind]}"
        rows.append([label, *(cpu(n, kind) for n in names)])
    for kind, base in BASELINE.items():
        label = f"hub CPU {KIND_LABELS[kind]} / {KIND_LABELS[base]}"
        rows.append([label, *(ratio(n, kind, "cpu_s_per_1k") for n in names)])
    body = next(iter(mem.values()))
    rows.append(
        [
            f"hub RSS: idle -> peak taking a {body['body_bytes'] / 1e6:.1f} MB body ({body['messages']} "
            f"messages, {body['spans']:,} spans; {body['wire_bytes'] / 1e3:,.0f} kB gzip'd) -> after",
            *(
                f"{mem[n]['idle_mb']:.0f} -> {mem[n]['peak_mb']:.0f} MB "
                f"(+{mem[n]['peak_mb'] - mem[n]['idle_mb']:.0f}) -> {mem[n]['after_mb']:.0f} MB"
                for n in names
            ),
        ]
    )
    rows.append(
        [
            "its folding process meanwhile: idle -> peak",
            *(f"{mem[n]['children_idle_mb']:.0f} -> {mem[n]['children_peak_mb']:.0f} MB" for n in names),
        ]
    )
    rows.append(
        [
            "that body: 200 / visible after (each time)",
            *(
                ", ".join(f"{r['answered_s']:.2f} / {r['visible_s']:.2f} s" for r in mem[n]["runs"])
                for n in names
            ),
        ]
    )
    for kind, size in LAG_KINDS.items():
        what = units.get(kind, "series")
        rows.append(
            [
                f"lag 2xx -> visible, {KIND_LABELS[kind]} ({size} {what}): p50 / p95",
                *(f"{lag[n][kind]['p50_ms']:.0f} / {lag[n][kind]['p95_ms']:.0f} ms" for n in names),
            ]
        )
    table = common.table(["figure", *(BACKEND_LABELS.get(n, n) for n in names)], rows)
    problems = [
        f"{BACKEND_LABELS.get(n, n)} {KIND_LABELS[k]}: {v['retried']} retried (429/503), "
        f"{v['non_2xx']} refused" + ("" if v["all_visible"] else ", NOT ALL VISIBLE")
        for n in names
        for k, v in through[n].items()
        if v["retried"] or v["non_2xx"] or not v["all_visible"]
    ]
    traces, log = through[names[0]]["otlp_traces"], through[names[0]]["classic_log"]
    notes = (
        f"{settings['rounds']} interleaved rounds (medians); per round {settings['batches']} trace batches "
        f"and log files, {settings['metrics_batches']} metrics batches and syncs, over "
        f"{settings['connections']} connections from one sender process, timed until the query API "
        f"shows all. Bodies: traces "
        f"{traces['raw_bytes'] / 1e3:,.0f} kB ({traces['wire_bytes'] / 1e3:,.1f} kB gzip'd), log file "
        f"{log['raw_bytes'] / 1e3:,.0f} kB ({log['wire_bytes'] / 1e3:,.1f} kB gzip'd). Load average "
        f"{result['load_average_before'][0]} before, {result['load_average_after'][0]} after."
    )
    if problems:
        notes += "\n\n" + "; ".join(problems)
    return table + "\n\n" + notes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny counts, SQLite only: seconds")
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--batches", type=int, help="trace batches (and log files) per round; metrics: twice")
    parser.add_argument("--spans", type=int, help="SERVER spans per traces batch")
    parser.add_argument("--series", type=int, help="series per metrics batch")
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--lag-samples", type=int)
    parser.add_argument("--backends", nargs="+", choices=list(BACKEND_LABELS))
    parser.add_argument("--sender", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sender:
        sender_main()
        return
    result = run(
        quick=args.quick,
        rounds=args.rounds,
        batches=args.batches,
        spans=args.spans,
        series=args.series,
        connections=args.connections,
        lag_samples=args.lag_samples,
        backend_names=args.backends,
    )
    common.save_json(common.RESULTS_DIR / ("hub_otlp_quick.json" if args.quick else "hub_otlp.json"), result)
    print(report(result))


if __name__ == "__main__":
    main()
