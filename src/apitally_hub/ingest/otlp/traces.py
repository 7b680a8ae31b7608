"""``/v1/traces``: SERVER spans -> request-log items (every sender), and, for senders other than
apitally 1.x, server errors from their exception events, validation errors from a captured
response body, consumers from their attributes, and — for an instance that sends no HTTP server
metrics (a Collector forwarding traces only) — the request counts themselves.

A SERVER span nested in another of the same trace and process (stacked HTTP instrumentation) is
not a request of its own. The spans of the same trace under a SERVER span, when they come in the
same export, go into its request-log item.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span, SpanFlags

from apitally_hub.ingest.otlp import values
from apitally_hub.ingest.otlp.batch import (
    InstanceBatch,
    consumer_id,
    cut_message,
    cut_traceback,
    response_time_bins,
    short_name,
    size_bins,
)
from apitally_hub.ingest.otlp.decoding import hex_id
from apitally_hub.protocol.log_lines import ATTRIBUTE_KEY_RE, MAX_ATTRIBUTE_VALUE, MAX_ATTRIBUTES

LOG_NAMESPACE = uuid.UUID("2d8e4a61-93c5-4f0a-b6e2-71a4c0d9f3b5")
MAX_SPANS_PER_ITEM = 1000
MAX_HEADERS = 100
MAX_BODY = 50_000
BODY_TOO_LARGE = "<body too large>"
MAX_SPAN_ATTRIBUTES = 64
VALIDATION_STATUSES = frozenset({400, 422})

_KIND_NAMES = {
    Span.SPAN_KIND_INTERNAL: "INTERNAL",
    Span.SPAN_KIND_SERVER: "SERVER",
    Span.SPAN_KIND_CLIENT: "CLIENT",
    Span.SPAN_KIND_PRODUCER: "PRODUCER",
    Span.SPAN_KIND_CONSUMER: "CONSUMER",
}
_STATUS_NAMES = {0: "UNSET", 1: "OK", 2: "ERROR"}
_HAS_IS_REMOTE = SpanFlags.SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK
_IS_REMOTE = SpanFlags.SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK


@dataclass
class ServerSpan:
    instance: str
    span: Span
    attrs: dict[str, Any]
    apitally: bool


@dataclass
class TracesBatch:
    batches: dict[str, InstanceBatch] = field(default_factory=dict)
    server_spans: list[ServerSpan] = field(default_factory=list)
    children: dict[tuple[bytes, bytes], list[Span]] = field(default_factory=dict)
    """(trace id, parent span id) -> the spans under it, in this export."""
    rejected: int = 0


def extract(request: ExportTraceServiceRequest) -> TracesBatch:
    result = TracesBatch()
    for resource_spans in request.resource_spans:
        resource = values.attributes(resource_spans.resource.attributes)
        instance = values.instance_uuid(resource)
        if instance not in result.batches:
            result.batches[instance] = InstanceBatch.of(instance, resource)
        apitally = values.is_apitally(resource)
        kinds: dict[tuple[bytes, bytes], int] = {}
        spans = [span for scope_spans in resource_spans.scope_spans for span in scope_spans.spans]
        for span in spans:
            kinds[(span.trace_id, span.span_id)] = span.kind
            if span.parent_span_id:
                result.children.setdefault((span.trace_id, span.parent_span_id), []).append(span)
        for span in spans:
            if span.kind != Span.SPAN_KIND_SERVER or _is_nested(span, kinds):
                continue
            result.server_spans.append(
                ServerSpan(instance, span, values.attributes(span.attributes), apitally)
            )
    return result


def _is_nested(span: Span, kinds: Mapping[tuple[bytes, bytes], int]) -> bool:
    if not span.parent_span_id:
        return False
    if span.flags & _HAS_IS_REMOTE:
        return not span.flags & _IS_REMOTE
    return kinds.get((span.trace_id, span.parent_span_id)) == Span.SPAN_KIND_SERVER


def apply(
    result: TracesBatch, counted_instances: set[str], window_start: float, now: float | None = None
) -> None:
    """Turn the SERVER spans into their instances' data; requests are counted only for
    ``counted_instances``. Spans ending before ``window_start`` (outside the hub's retention) or
    in the future are refused (counted in ``result.rejected``)."""
    now = time.time() if now is None else now
    for server in result.server_spans:
        span, attrs = server.span, server.attrs
        end = span.end_time_unix_nano / 1e9
        start = span.start_time_unix_nano / 1e9
        if not window_start <= end <= now + 300 or start > end:
            result.rejected += 1
            continue
        batch = result.batches[server.instance]
        batch.heartbeat_time = max(batch.heartbeat_time, min(end, now))
        method = (values.text(values.first(attrs, "http.request.method", "http.method")) or "").upper()
        status = values.integer(values.first(attrs, "http.response.status_code", "http.status_code"))
        route = values.text(attrs.get("http.route"))
        consumer = consumer_id(values.text(attrs.get("apitally.consumer.identifier")))
        if consumer is not None:
            name = short_name(values.text(attrs.get("apitally.consumer.name")))
            group = short_name(values.text(attrs.get("apitally.consumer.group")))
            if name or group or consumer not in batch.consumers:
                batch.add_consumer(consumer, name, group)
        if (
            not method
            or status is None
            or not 100 <= status <= 599
            or method == "OPTIONS"
            or len(method) > 16
        ):
            result.rejected += 1
            continue
        line = log_line(server, method, status, route, consumer, result.children)
        batch.log_lines.append(line)
        if route is None or server.apitally:
            continue
        path = route[:2000]
        if server.instance in counted_instances:
            duration_ms = max(end - start, 0.0) * 1000
            request_size = values.integer(
                values.first(attrs, "http.request.body.size", "http.request_content_length")
            )
            response_size = values.integer(
                values.first(attrs, "http.response.body.size", "http.response_content_length")
            )
            batch.add_request(
                end,
                (consumer, method, path, status),
                1,
                response_time_bins([(duration_ms, duration_ms, 1)]),
                (request_size, size_bins([(request_size, request_size, 1)]))
                if request_size is not None
                else None,
                (response_size, size_bins([(response_size, response_size, 1)]))
                if response_size is not None
                else None,
            )
        exception = line.get("exception")
        if status >= 500 and exception is not None:
            batch.add_server_error(
                end,
                consumer,
                method,
                path,
                exception["type"],
                exception["message"],
                exception["traceback"],
                1,
            )
        if status in VALIDATION_STATUSES:
            for loc, msg, error_type in validation_details(attrs.get("apitally.response.body")):
                batch.add_validation_error(end, consumer, method, path, loc, msg, error_type, 1)


def validation_details(body: Any) -> list[tuple[tuple[str, ...], str, str]]:
    """FastAPI/pydantic-style ``{"detail": [{"loc", "msg", "type"}, …]}`` from a captured body."""
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    if not isinstance(body, str) or len(body) > MAX_BODY:
        return []
    try:
        data = json.loads(body)
    except ValueError:
        return []
    details = data.get("detail") if isinstance(data, dict) else None
    if not isinstance(details, list):
        return []
    found = []
    for detail in details[:100]:
        if not isinstance(detail, dict) or not all(key in detail for key in ("loc", "msg", "type")):
            continue
        loc = detail["loc"] if isinstance(detail["loc"], list) else [detail["loc"]]
        found.append((tuple(str(part) for part in loc), str(detail["msg"]), str(detail["type"])))
    return found


def log_line(
    server: ServerSpan,
    method: str,
    status: int,
    route: str | None,
    consumer: str | None,
    children: Mapping[tuple[bytes, bytes], list[Span]],
) -> dict[str, Any]:
    """The request-log item of a SERVER span (hub-protocol.md §5)."""
    span, attrs = server.span, server.attrs
    request: dict[str, Any] = {
        "timestamp": span.start_time_unix_nano / 1e9,
        "method": method,
        "url": request_url(attrs),
    }
    if route:
        request["path"] = route[:2000]
    response: dict[str, Any] = {
        "status_code": status,
        "response_time": max(span.end_time_unix_nano - span.start_time_unix_nano, 0) / 1e9,
    }
    for target, prefix in ((request, "http.request.header."), (response, "http.response.header.")):
        headers = _headers(attrs, prefix)
        if headers:
            target["headers"] = headers
    for target, keys in (
        (request, ("http.request.body.size", "http.request_content_length")),
        (response, ("http.response.body.size", "http.response_content_length")),
    ):
        size = values.integer(values.first(attrs, *keys))
        if size is not None and 0 <= size < 2**53:
            target["size"] = size
    if consumer:
        request["consumer"] = consumer
    for target, key in ((request, "apitally.request.body"), (response, "apitally.response.body")):
        body = _body(attrs.get(key))
        if body is not None:
            target["body"] = body
    custom = custom_attributes(attrs)
    if custom:
        request["attributes"] = custom
    client_ip = values.text(values.first(attrs, "client.address", "net.sock.peer.addr", "net.peer.ip"))
    if client_ip and _is_ip(client_ip):
        request["client_ip"] = client_ip
    trace_id = hex_id(span.trace_id)
    span_id = hex_id(span.span_id) or ""
    line: dict[str, Any] = {
        "uuid": request_uuid(trace_id or "", span_id),
        "request": request,
        "response": response,
    }
    exception = _exception(span)
    if exception is not None:
        line["exception"] = exception
    spans = _trace_spans(span, children)
    if spans:
        line["spans"] = spans
    if trace_id:
        line["trace_id"] = trace_id
    return line


def request_uuid(trace_id: str, server_span_id: str) -> str:
    """The request-log uuid of a SERVER span: what the log records of its request name too."""
    return str(uuid.uuid5(LOG_NAMESPACE, f"{trace_id}:{server_span_id}"))


CUSTOM_KEYS = "apitally.request.custom_attribute_keys"
"""apitally 1.x's ``set_request_attribute``: the keys it set, each also an attribute of the span."""
CUSTOM_PREFIX = "apitally.request.attribute."
"""apitally-otel's ``set_request_attribute``: ``apitally.request.attribute.<key>``."""


def custom_attributes(attrs: Mapping[str, Any]) -> dict[str, str]:
    """The request's custom attributes (set by the app with ``set_request_attribute``), within the
    request log's bounds (hub-protocol.md §5): the first ones whose key fits, values cut."""
    found: dict[str, str] = {}
    keys = attrs.get(CUSTOM_KEYS)
    pairs = [(key, attrs.get(key)) for key in keys if isinstance(key, str)] if isinstance(keys, list) else []
    pairs += [
        (key[len(CUSTOM_PREFIX) :], value) for key, value in attrs.items() if key.startswith(CUSTOM_PREFIX)
    ]
    for key, value in pairs:
        text = values.text(value)
        if text is None or ATTRIBUTE_KEY_RE.fullmatch(key) is None or key in found:
            continue
        found[key] = text[:MAX_ATTRIBUTE_VALUE]
        if len(found) >= MAX_ATTRIBUTES:
            break
    return found


def request_url(attrs: Mapping[str, Any]) -> str:
    full = values.text(values.first(attrs, "url.full", "http.url"))
    if full and full.lower().startswith(("http://", "https://")) and " " not in full:
        return full[:8000]
    scheme = (values.text(values.first(attrs, "url.scheme", "http.scheme")) or "http").lower()
    if scheme not in ("http", "https"):
        scheme = "http"
    host = values.text(values.first(attrs, "server.address", "http.host", "net.host.name")) or "unknown"
    port = values.integer(values.first(attrs, "server.port", "net.host.port"))
    if port and ":" not in host and port not in (80, 443):
        host = f"{host}:{port}"
    target = values.text(attrs.get("http.target"))
    if target is None:
        target = values.text(attrs.get("url.path")) or "/"
        query = values.text(attrs.get("url.query"))
        if query:
            target = f"{target}?{query}"
    url = f"{scheme}://{host}{target if target.startswith('/') else '/' + target}"
    return url.replace(" ", "%20")[:8000]


def _headers(attrs: Mapping[str, Any], prefix: str) -> list[list[str]]:
    headers: list[list[str]] = []
    for key, value in attrs.items():
        if not key.startswith(prefix) or len(key) == len(prefix):
            continue
        name = key[len(prefix) :]
        items = value if isinstance(value, list) else [value]
        for item in items:
            text = values.text(item)
            if text is not None and len(headers) < MAX_HEADERS:
                headers.append([name, text[:8000]])
    return headers


def _body(value: Any) -> str | None:
    if isinstance(value, str):
        value = value.encode()
    if not isinstance(value, bytes) or not value:
        return None
    if value == b"[BODY_TOO_LARGE]" or len(value) > MAX_BODY:
        value = BODY_TOO_LARGE.encode()
    return base64.b64encode(value).decode()


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return len(text) <= 64


def _exception(span: Span) -> dict[str, str] | None:
    for event in span.events:
        if event.name != "exception":
            continue
        attrs = values.attributes(event.attributes)
        error_type = values.text(attrs.get("exception.type"))
        if not error_type:
            continue
        return {
            "type": error_type[:1024],
            "message": cut_message(values.text(attrs.get("exception.message")) or ""),
            "traceback": cut_traceback(values.text(attrs.get("exception.stacktrace")) or ""),
        }
    return None


def _trace_spans(root: Span, children: Mapping[tuple[bytes, bytes], list[Span]]) -> list[dict[str, Any]]:
    """The spans under ``root`` in this export (breadth first, at most MAX_SPANS_PER_ITEM)."""
    found: list[dict[str, Any]] = []
    queue = [root.span_id]
    seen = {root.span_id}
    while queue and len(found) < MAX_SPANS_PER_ITEM:
        parent = queue.pop(0)
        for span in children.get((root.trace_id, parent), ()):
            if span.span_id in seen or len(found) >= MAX_SPANS_PER_ITEM:
                continue
            seen.add(span.span_id)
            queue.append(span.span_id)
            span_id = hex_id(span.span_id)
            if span_id is None:
                continue
            attrs = {
                key: value
                for key, value in list(values.attributes(span.attributes).items())[:MAX_SPAN_ATTRIBUTES]
                if isinstance(value, (str, int, float, bool))
            }
            found.append(
                {
                    "span_id": span_id,
                    "parent_span_id": hex_id(span.parent_span_id),
                    "name": span.name[:1000] or "(unnamed)",
                    "kind": _KIND_NAMES.get(span.kind, "INTERNAL"),
                    "start_time": int(span.start_time_unix_nano),
                    "end_time": max(int(span.end_time_unix_nano), int(span.start_time_unix_nano)),
                    "status": _STATUS_NAMES.get(span.status.code, "UNSET"),
                    "attributes": attrs,
                }
            )
    return found
