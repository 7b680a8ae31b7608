"""The capture: what we measure of each HTTP request, inside its OpenTelemetry SERVER span.

:class:`Capture` holds it for one app; :class:`CaptureMiddleware` is the pure ASGI middleware that
runs it inside a SERVER span started outside of it (by contrib's middleware), and the lean
``ServerSpanMiddleware`` runs it in the frame that starts the span. It measures what the span
does not carry — the full route template, time to first byte, request and response bytes, the
body of validation-error responses, the exception that escaped — and puts the semconv attributes
on the span before it ends. The SERVER span ends as soon as the last body chunk is sent, so
attributes are set just before that chunk goes out.

Once the app has returned (background tasks included), the request is handed to the sink (the
span processor) with everything needed to count it, whether or not the span was sampled: the
processor does not count spans this middleware claimed. All per-request state lives in a
per-request :class:`Exchange`, never on the middleware.
"""

from __future__ import annotations

import inspect
import logging
import threading
from collections.abc import Callable
from time import perf_counter
from typing import Any, Protocol

import anyio.to_thread
from opentelemetry import trace
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from apitally_otel import _sentry
from apitally_otel._asgi.attributes import put_attribute, span_attributes
from apitally_otel._asgi.context import RequestRecord, current_request, send_last
from apitally_otel._asgi.custom_attributes import put_on_span
from apitally_otel._asgi.routes import RouteTemplates, route_key
from apitally_otel._consumers import Consumer, consumer_from_value
from apitally_otel._error_details import MAX_BODY_BYTES
from apitally_otel._request_log.log_capture import LogCapture
from apitally_otel._request_log.logger import RequestLogger
from apitally_otel._request_log.sampling import DROP, KEEP

_logger = logging.getLogger(__name__)

_SCOPE_KEY = "apitally_otel.captured"
_VALIDATION_STATUSES = (400, 422)
_MAX_DISTINCT_WARNINGS = 100

ConsumerCallback = Callable[[Request], Any]


class RequestSink(Protocol):
    def claim_span(self, record: RequestRecord) -> None:
        """This request's span is handled here: the processor must not count it from the span."""

    def record_request(self, record: RequestRecord, attributes: Any) -> Consumer | None:
        """Count a finished request; ``attributes`` are its SERVER span's. Returns its consumer."""


class Lifecycle(Protocol):
    def on_app_startup(self, app: Any) -> None: ...

    def on_app_shutdown(self) -> None: ...


class Capture:
    """The capture of one app, whichever middleware carries it.

    :class:`CaptureMiddleware` runs it inside a SERVER span started by someone else (contrib's
    middleware); :class:`~apitally_otel._asgi.server_span.ServerSpanMiddleware` runs it in the frame that
    starts the span. Per request: :meth:`start` (an :class:`Exchange`), the app, :meth:`settle`, the
    consumer callback when there is one (:meth:`callback_consumer`), :meth:`complete`.
    """

    def __init__(
        self,
        *,
        sink: RequestSink | None = None,
        lifecycle: Lifecycle | None = None,
        consumer_callback: ConsumerCallback | None = None,
        request_logger: RequestLogger | None = None,
    ) -> None:
        self.request_logger = request_logger
        self.sink = sink
        self.lifecycle = lifecycle
        self.consumer_callback = consumer_callback
        self._templates: RouteTemplates | None = None
        self._started = False
        self._warned: set[tuple[str, str]] = set()

    def start(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        span: trace.Span,
        exchange: type[Exchange] | None = None,
    ) -> Exchange:
        """Begin capturing an HTTP request whose SERVER span is ``span``."""
        scope[_SCOPE_KEY] = True
        if self._templates is None:
            # Now, before routing: a mounted Starlette app replaces scope["app"] with itself.
            self._templates = RouteTemplates(scope.get("app"))
        if not self._started:
            self._startup_in_background(scope.get("app"))  # served without lifespan events
        span_context = span.get_span_context()
        record = RequestRecord(scope["method"], span_context.trace_id, span_context.span_id)
        if self.sink is not None and span.is_recording():
            self.sink.claim_span(record)
        request_logger = self.request_logger
        if request_logger is not None and request_logger.active:
            # Decided now: a request that is not logged captures nothing (see _request_log.sampling).
            decision = request_logger.sampler.on_request(scope, span)
            if decision is not DROP:
                record.log = LogCapture(request_logger.config, scope, sampled=decision is KEEP)
        return (exchange or Exchange)(record, receive, send, scope, span, self._template_for)

    def settle(self, exchange: Exchange) -> bool:
        """Complete the record once the app has returned; whether the request is to be counted."""
        try:
            if not exchange.finalized:
                exchange.finalize()  # no complete response went out (an exception, a disconnect)
        except Exception:  # our own bookkeeping must never fail the request
            _logger.exception("apitally-otel: failed to capture request details")
            return False
        # Requests that matched no route, or were cancelled before any response, don't count.
        record = exchange.record
        return record.route is not None and record.status is not None and self.sink is not None

    def complete(self, exchange: Exchange) -> None:
        """Count a settled request (consumer, sink, request log). Never raises."""
        record = exchange.record
        try:
            state = exchange.scope.get("state")
            if record.fallback_consumer is None and state and "apitally_consumer" in state:
                record.fallback_consumer = consumer_from_value(state["apitally_consumer"])
            assert self.sink is not None
            consumer = self.sink.record_request(record, span_attributes(exchange.span))
            request_logger = self.request_logger
            log = record.log
            if log is not None and request_logger is not None:
                item = log.finish(record, perf_counter() - exchange.start)
                item.consumer = consumer.identifier if consumer is not None else None
                if request_logger.sampler.on_response(exchange.scope, item, log.sampled):
                    request_logger.submit(item)
        except Exception:  # our own bookkeeping must never fail the request
            _logger.exception("apitally-otel: failed to capture request details")

    def _template_for(self, scope: Scope, root_path: str) -> str | None:
        route = route_key(scope)
        if route is None:
            return None
        if self._templates is None:
            self._templates = RouteTemplates(scope.get("app"))
        return self._templates.template_for(route, root_path, scope.get("root_path", ""))

    async def callback_consumer(self, scope: Scope) -> Consumer | None:
        assert self.consumer_callback is not None
        try:
            value = self.consumer_callback(Request(scope))
            if inspect.isawaitable(value):
                value = await value
        except Exception as exc:  # a user callback: warn once per distinct failure
            self._warn_once(
                "apitally-otel: consumer_callback raised %s: %s", type(exc).__qualname__, str(exc)[:200]
            )
            return None
        consumer = consumer_from_value(value)
        if value is not None and consumer is None:
            self._warn_once(
                "apitally-otel: consumer_callback returned an unusable %s%s; expected a string",
                type(value).__name__,
                "",
            )
        return consumer

    def _warn_once(self, message: str, arg1: str, arg2: str) -> None:
        key = (arg1, arg2)
        if key not in self._warned and len(self._warned) < _MAX_DISTINCT_WARNINGS:
            self._warned.add(key)
            _logger.warning(message, arg1, arg2)

    async def lifespan(self, app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass lifespan events to ``app``, telling the lifecycle about startup and shutdown."""

        async def lifespan_receive() -> Message:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self._notify_startup(scope.get("app"))
            return message

        async def lifespan_send(message: Message) -> None:
            if message["type"] == "lifespan.startup.complete":
                self._app_started()  # the app's own startup (e.g. its logging setup) has run
            elif message["type"] in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
                await self._notify_shutdown()
            await send(message)

        await app(scope, lifespan_receive, lifespan_send)

    async def _notify_startup(self, app: Any) -> None:
        if self._started:
            return
        self._started = True
        if self.lifecycle is not None:
            try:
                # Building the OpenAPI document can take a while for a large app: not on the loop.
                await anyio.to_thread.run_sync(self.lifecycle.on_app_startup, app)
            except Exception:  # never fail the app's startup because of monitoring
                _logger.exception("apitally-otel: startup hook failed")

    def _app_started(self) -> None:
        """What needs the app's modules imported and configured: Loguru's sink, Sentry's processor."""
        try:
            if self.request_logger is not None:
                self.request_logger.on_app_started()
            _sentry.install()
        except Exception:  # never fail the app's startup because of monitoring
            _logger.exception("apitally-otel: startup hook failed")

    def _startup_in_background(self, app: Any) -> None:
        # No lifespan: describe the app from a thread; the first request does not wait for it.
        if self._started:
            return
        self._started = True
        self._app_started()
        if self.lifecycle is not None:
            threading.Thread(
                target=self._startup_guarded, args=(app,), name="apitally-otel-startup", daemon=True
            ).start()

    def _startup_guarded(self, app: Any) -> None:
        try:
            assert self.lifecycle is not None
            self.lifecycle.on_app_startup(app)
        except Exception:  # never fail the app because of monitoring
            _logger.exception("apitally-otel: startup hook failed")

    async def _notify_shutdown(self) -> None:
        if self.lifecycle is not None:
            try:
                await anyio.to_thread.run_sync(self.lifecycle.on_app_shutdown)
            except Exception:  # never fail the app's shutdown because of monitoring
                _logger.exception("apitally-otel: shutdown hook failed")


class CaptureMiddleware:
    """The capture as a pure ASGI middleware, inside a SERVER span started outside of it."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        sink: RequestSink | None = None,
        lifecycle: Lifecycle | None = None,
        consumer_callback: ConsumerCallback | None = None,
        request_logger: RequestLogger | None = None,
        capture: Capture | None = None,
    ) -> None:
        self.app = app
        self.capture = capture or Capture(
            sink=sink, lifecycle=lifecycle, consumer_callback=consumer_callback, request_logger=request_logger
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.capture.lifespan(self.app, scope, receive, send)
            return
        if scope["type"] != "http" or scope["method"] == "OPTIONS" or scope.get(_SCOPE_KEY):
            await self.app(scope, receive, send)  # websockets, CORS preflights, nested apps
            return
        capture = self.capture
        exchange = capture.start(scope, receive, send, trace.get_current_span())
        token = current_request.set(exchange.record)
        try:
            await self.app(scope, exchange.receive if exchange.wrap_receive else receive, exchange.send)
        except Exception as exc:
            exchange.record.exception = exc
            raise
        finally:
            # Inline rather than a helper coroutine: this runs for every request.
            if capture.settle(exchange):
                if capture.consumer_callback is not None:
                    exchange.record.fallback_consumer = await capture.callback_consumer(scope)
                capture.complete(exchange)
            current_request.reset(token)


def span_uses_new_semconv(span: trace.Span) -> bool:
    attributes: Any = getattr(span, "attributes", None) or {}
    return "http.request.method" in attributes and "http.method" not in attributes


class Exchange:
    """The state of one request/response exchange, and the receive/send wrappers that fill it."""

    __slots__ = (
        "_receive",
        "_send",
        "_template_for",
        "body_parts",
        "body_size",
        "chunked",
        "content_encoding",
        "count_request",
        "count_response",
        "finalized",
        "record",
        "root_path",
        "scope",
        "span",
        "start",
        "status_missing",
        "wrap_receive",
    )

    def __init__(
        self,
        record: RequestRecord,
        receive: Receive,
        send: Send,
        scope: Scope,
        span: trace.Span,
        template_for: Callable[[Scope, str], str | None],
    ) -> None:
        self.record = record
        self._receive = receive
        self._send = send
        self.scope = scope
        self.span = span
        self._template_for = template_for
        self.root_path: str = scope.get("root_path", "")  # before routing appends mount prefixes
        self.finalized = False
        self.start = perf_counter()
        self.count_request = True
        self.count_response = True
        self.status_missing = True
        self.body_parts: list[bytes] | None = None
        self.body_size = 0
        self.content_encoding: str | None = None
        self.chunked = False
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                size = _parse_size(value)
                if size is not None:
                    record.request_size = size
                    self.count_request = False
                break
            if name == b"transfer-encoding":
                self.chunked = b"chunked" in value.lower()
        self.wrap_receive = self.count_request or (record.log is not None and record.log.wants_request_body)

    async def receive(self) -> Message:
        message = await self._receive()
        if message["type"] == "http.request":
            body = message.get("body", b"")
            # Bytes received count for a chunked upload (or an HTTP/2 body without Content-Length).
            # A request with neither has no size: the empty message that an app's disconnect
            # listener receives (e.g. a StreamingResponse's) is not a body.
            if self.count_request and (body or self.chunked):
                self.record.request_size = (self.record.request_size or 0) + len(body)
            if self.record.log is not None:
                self.record.log.on_request_body(body)
        return message

    def on_message(self, message: Message) -> bool:
        """Account for one response message before it is sent; True for the last body chunk."""
        msg_type = message["type"]
        if msg_type == "http.response.start":
            self._on_start(message)
            if self.record.log is not None:
                self.record.log.on_response_start(message)
        elif msg_type == "http.response.body":
            body: bytes = message.get("body", b"")
            if self.record.log is not None:
                self.record.log.on_response_body(body)
            if self.count_response:
                self.record.response_size = (self.record.response_size or 0) + len(body)
            if self.body_parts is not None:
                self.body_size += len(body)
                if self.body_size > MAX_BODY_BYTES:
                    self.body_parts = None  # too large to be a validation error we parse
                else:
                    self.body_parts.append(body)
            if not message.get("more_body", False):
                if not self.finalized:
                    self.finalize()  # the span ends when this chunk is sent: set its attributes now
                return True
        return False

    async def send(self, message: Message) -> None:
        if self.on_message(message):
            await send_last(self._send, message)  # the span (outside this middleware) is not ours
        else:
            await self._send(message)

    def finalize(self) -> None:
        """Complete the record and put the span attributes on while the span is still open."""
        self.finalized = True
        record = self.record
        record.route = self._template_for(self.scope, self.root_path)
        if record.status is None and record.exception is not None:
            record.status = 500  # the error response is sent outside of this middleware
            record.ttfb = perf_counter() - self.start
        if self.body_parts is not None:
            # Only the bytes here: decoding and parsing happen on the reader's thread, when folded.
            record.validation_body = b"".join(self.body_parts)
            record.validation_encoding = self.content_encoding
            self.body_parts = None
        span = self.span
        if record.attributes and span.is_recording():
            put_on_span(span, record.attributes)  # from set_request_attribute()
        if record.route is None or not span.is_recording():
            return
        put_attribute(span, "http.route", record.route)
        if record.request_size is not None:
            put_attribute(span, "http.request.body.size", record.request_size)
        if record.response_size is not None:
            put_attribute(span, "http.response.body.size", record.response_size)
        if record.exception is not None and self.status_missing:
            put_attribute(
                span, "http.response.status_code" if span_uses_new_semconv(span) else "http.status_code", 500
            )

    def _on_start(self, message: Message) -> None:
        record = self.record
        record.ttfb = perf_counter() - self.start
        status: int = message["status"]
        record.status = status
        self.status_missing = False
        capture = status in _VALIDATION_STATUSES
        is_json = False
        for name, value in message.get("headers", ()):
            name = name.lower()
            if name == b"content-length":
                size = _parse_size(value)
                if size is not None:
                    record.response_size = size
                    self.count_response = False
                    if size > MAX_BODY_BYTES:
                        capture = False
            elif capture and name == b"content-type":
                is_json = value[:16].lower() == b"application/json"
            elif capture and name == b"content-encoding":
                self.content_encoding = value.decode("latin-1")
        if capture and is_json:
            self.body_parts = []


def _parse_size(value: bytes) -> int | None:
    try:
        size = int(value)
    except ValueError:
        return None
    return size if size >= 0 else None
