"""ApitallySpanProcessor: derives per-request metrics and error details from SERVER spans.

``on_end`` runs on the thread that ends the span — for the request's SERVER span, the event loop —
so it does a few dict operations and returns. It never raises: the SDK's multi-span processor
calls processors without a try/except, so an exception here would reach the application and skip
the processors registered after this one.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.trace import SpanContext, SpanKind

from apitally_otel import _sentry
from apitally_otel._aggregator import Aggregator
from apitally_otel._asgi.context import RequestRecord, current_request
from apitally_otel._config import DEFAULT_MAX_CONSUMERS
from apitally_otel._consumers import ATTR_IDENTIFIER, Consumer, consumer_from_attributes, make_consumer
from apitally_otel._error_details import server_error_details

_logger = logging.getLogger(__name__)

_MAX_PENDING = 10_000
_ENDUSER_ATTRIBUTES = ("enduser.id", "user.id")
_METHOD_ATTRIBUTES = ("http.request.method", "http.method")
_STATUS_ATTRIBUTES = ("http.response.status_code", "http.status_code")
_REQUEST_SIZE_ATTRIBUTES = ("http.request.body.size", "http.request_content_length")
_RESPONSE_SIZE_ATTRIBUTES = ("http.response.body.size", "http.response_content_length")


class ApitallySpanProcessor(SpanProcessor):
    """Counts every HTTP request of a Starlette/FastAPI app from its SERVER span.

    Register it on the ``TracerProvider`` that instruments the app. The aggregate it builds is
    turned into hub syncs by :class:`~apitally_otel.ApitallyMetricReader` (give the reader this
    processor, or let :func:`~apitally_otel.instrument_app` wire both).
    """

    def __init__(
        self, *, max_consumers: int = DEFAULT_MAX_CONSUMERS, aggregator: Aggregator | None = None
    ) -> None:
        self.aggregator = aggregator if aggregator is not None else Aggregator(max_consumers=max_consumers)
        self._claimed: dict[int, RequestRecord] = {}  # span id -> request the middleware counts
        self._trace_consumers: dict[int, Consumer] = {}  # trace id -> consumer from a child span
        self._lock = threading.Lock()
        self._warned_pending = False
        self._shutdown = False

    # -- called by the capture middleware -------------------------------------------------
    def claim_span(self, record: RequestRecord) -> None:
        if len(self._claimed) >= _MAX_PENDING:
            # Never released: a bug, or a middleware whose requests never finish. Stay bounded.
            if not self._warned_pending:
                self._warned_pending = True
                _logger.warning("apitally-otel: too many requests in flight; forgetting the oldest")
            self._claimed.pop(next(iter(self._claimed)), None)
        self._claimed[record.span_id] = record

    def record_request(self, record: RequestRecord, attributes: Any = None) -> Consumer | None:
        """Count a request measured by the capture middleware (sampled or not); its consumer."""
        try:
            return self._record(record, attributes or {})
        except Exception:  # never raise into the request
            _logger.exception("apitally-otel: failed to record a request")
            return None

    # -- SpanProcessor --------------------------------------------------------------------
    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        try:
            context = span.context
            if context is None or self._shutdown:
                return
            # The common case first: the SERVER span of a request the capture middleware counts.
            claimed = self._claimed.pop(context.span_id, None) if self._claimed else None
            if claimed is not None:
                if claimed.log is not None:
                    claimed.log.add_span(serialize_span(span))
                return
            request = current_request.get()
            if request is not None and request.log is not None and request.trace_id == context.trace_id:
                request.log.add_span(serialize_span(span))
            self._on_unclaimed_end(span, context, inside_request=request is not None)
        except Exception:  # see the module docstring: never raise from on_end
            _logger.exception("apitally-otel: failed to process span %s", getattr(span, "name", "?"))

    def _on_unclaimed_end(self, span: ReadableSpan, context: SpanContext, *, inside_request: bool) -> None:
        attributes = span.attributes or {}
        parent = span.parent
        if span.kind is not SpanKind.SERVER or (parent is not None and not parent.is_remote):
            if ATTR_IDENTIFIER in attributes:
                self._remember_trace_consumer(context.trace_id, attributes)
            return
        if inside_request:
            # A root SERVER span inside a request the capture middleware already counts: a mounted
            # app's own contrib middleware, when the outer app does not trace the request (excluded
            # URLs). The same request: counted once, by the capture.
            return
        # Traced without our capture middleware (instrumented by hand): derive from the span.
        record = _record_from_span(span, attributes)
        if record is not None:
            self._record(record, attributes)

    def _remember_trace_consumer(self, trace_id: int, attributes: Any) -> None:
        consumer = consumer_from_attributes(attributes)
        if consumer is None:
            return
        with self._lock:
            if len(self._trace_consumers) >= _MAX_PENDING:
                self._trace_consumers.pop(next(iter(self._trace_consumers)))
            self._trace_consumers.setdefault(trace_id, consumer)

    def _record(self, record: RequestRecord, attributes: Any) -> Consumer | None:
        if record.route is None or record.status is None:
            return None
        # Consumer sources, first match wins: set_consumer(), the SERVER span's attributes, a child
        # span's attributes, consumer_callback / request.state, enduser.id / user.id.
        trace_consumer = self._trace_consumers.pop(record.trace_id, None) if self._trace_consumers else None
        consumer = (
            record.consumer
            or consumer_from_attributes(attributes)
            or trace_consumer
            or record.fallback_consumer
            or _enduser(attributes)
        )
        status = record.status
        duration = record.ttfb if record.ttfb is not None else 0.0
        self.aggregator.add_request(
            consumer, record.method, record.route, status, duration, record.request_size, record.response_size
        )
        if record.validation_body is not None and status in (400, 422):
            # Parsed when the interval is folded, on the reader's thread: not on the event loop.
            self.aggregator.add_validation_body(
                consumer, record.method, record.route, record.validation_body, record.validation_encoding
            )
        escaped = record.exception if status == 500 else None
        if escaped is not None:
            type_, msg, tb = server_error_details(escaped)
            link = _sentry.link(escaped)  # Sentry's middleware, outside ours, captures it next
            self.aggregator.add_server_error(consumer, record.method, record.route, type_, msg, tb, link)
        for handled in record.handled or ():
            if handled.exception is not escaped:  # reported, then re-raised: counted once
                type_, msg, tb = server_error_details(handled.exception)
                self.aggregator.add_server_error(
                    consumer, record.method, record.route, type_, msg, tb, handled.sentry
                )
        return consumer

    def shutdown(self) -> None:
        self._shutdown = True
        self._claimed.clear()
        self._trace_consumers.clear()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


def _enduser(attributes: Any) -> Consumer | None:
    if not attributes:
        return None
    for name in _ENDUSER_ATTRIBUTES:
        value = attributes.get(name)
        if value is not None:
            return make_consumer(value)
    return None


def _first(attributes: Any, names: tuple[str, ...]) -> Any:
    for name in names:
        value = attributes.get(name)
        if value is not None:
            return value
    return None


def _record_from_span(span: ReadableSpan, attributes: Any) -> RequestRecord | None:
    """A request seen only through its span (no capture middleware): semconv attributes, old or new."""
    route = attributes.get("http.route")
    method = _first(attributes, _METHOD_ATTRIBUTES)
    if not isinstance(route, str) or not isinstance(method, str) or method.upper() == "OPTIONS":
        return None
    context = span.context
    assert context is not None
    record = RequestRecord(method.upper(), context.trace_id, context.span_id)
    record.route = route
    status = _first(attributes, _STATUS_ATTRIBUTES)
    if isinstance(status, int):
        record.status = status
    elif any(event.name == "exception" for event in span.events):
        record.status = 500  # the error response was sent outside the instrumented app
    if span.start_time is not None and span.end_time is not None:
        record.ttfb = (span.end_time - span.start_time) / 1e9
    for names, slot in (
        (_REQUEST_SIZE_ATTRIBUTES, "request_size"),
        (_RESPONSE_SIZE_ATTRIBUTES, "response_size"),
    ):
        size = _first(attributes, names)
        if isinstance(size, int) and size >= 0:
            setattr(record, slot, size)
    return record


def serialize_span(span: ReadableSpan) -> dict[str, Any]:
    """A span as request logs carry it (hub-protocol §5)."""
    context = span.context
    parent = span.parent
    attributes = {k: list(v) if isinstance(v, tuple) else v for k, v in (span.attributes or {}).items()}
    return {
        "span_id": f"{context.span_id:016x}" if context else None,
        "parent_span_id": f"{parent.span_id:016x}" if parent else None,
        "name": span.name,
        "kind": span.kind.name,
        "start_time": span.start_time,
        "end_time": span.end_time,
        "status": span.status.status_code.name,
        "attributes": attributes,
    }
