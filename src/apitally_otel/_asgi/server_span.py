"""The lean SERVER-span middleware: one pure ASGI middleware that traces and captures each request.

It starts the SDK SERVER span itself and produces the span contrib's ``OpenTelemetryMiddleware``
(with ``exclude_spans=["receive", "send"]``) would: the same name, kind, attributes in every
semconv mode, status, exception event, W3C propagation through the global propagators, header
capture, excluded URLs and ``server_request_hook`` (see :mod:`apitally_otel._asgi.http_semconv`). The
capture (:class:`~apitally_otel._asgi.capture.Capture`) runs in the same frame and the same send
wrapper. What contrib does besides and this middleware does not:

- record its HTTP metrics (with a no-op meter the work is done and thrown away): ``instrument_app``
  composes contrib's middleware when they are wanted (``otel_metrics=True``);
- set every start attribute a second time (a no-op, except that under a span attribute count
  limit it evicts and counts dropped attributes differently);
- parse the URL and build metric attributes on every request, decode every header for each
  header it looks up, and attach the context twice;
- keep the SERVER span current while the server sends the response's last message: servers copy
  the context there (uvicorn's keep-alive timer) and would keep the finished request's span alive
  in the copy (see :func:`apitally_otel._asgi.context.send_last`). Background tasks, after that
  message, run in the span's context as with contrib.

Websocket connections go through contrib's middleware, as before.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from opentelemetry import context, propagate, trace
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.context import _SUPPRESS_HTTP_INSTRUMENTATION_KEY, _SUPPRESS_INSTRUMENTATION_KEY
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware, asgi_setter
from opentelemetry.instrumentation.propagators import get_global_response_propagator
from opentelemetry.instrumentation.utils import _SUPPRESS_INSTRUMENTATION_KEY_PLAIN
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.propagators.textmap import Getter
from opentelemetry.trace import INVALID_SPAN, Span, SpanKind, set_span_in_context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.trace.status import Status, StatusCode
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from apitally_otel._asgi.capture import _SCOPE_KEY, Capture, CaptureMiddleware, Exchange
from apitally_otel._asgi.context import current_request, send_last
from apitally_otel._asgi.http_semconv import HttpServerSemconv, ServerSpanSettings, decode_header
from apitally_otel.version import __version__

_logger = logging.getLogger(__name__)

ServerRequestHook = Callable[[Span, Scope], None]


class _ScopeHeadersGetter(Getter[Scope]):
    """Reads request headers from an ASGI scope for the propagators, as contrib's ``asgi_getter``
    does, comparing names as bytes (ASGI names are lower case) and decoding only what matches."""

    def __init__(self) -> None:
        self._names: dict[str, bytes] = {}  # the propagators' few field names, encoded once

    def get(self, carrier: Scope, key: str) -> list[str] | None:
        headers = carrier.get("headers")
        if not headers:
            return None
        wanted = self._names.get(key)
        if wanted is None:
            wanted = key.lower().encode("latin-1", "replace")
            if len(self._names) < 64:
                self._names[key] = wanted
        values = [decode_header(value) for name, value in headers if name == wanted]
        return values or None

    def keys(self, carrier: Scope) -> list[str]:
        return [decode_header(name) for name, _ in carrier.get("headers") or ()]


_GETTER = _ScopeHeadersGetter()
_W3C_HEADERS = (b"traceparent", b"baggage")


class _Extractor:
    """``propagate.extract(scope)``, without running the propagators on a request that has none of
    their headers when they are the default W3C ones (trace context, then baggage): they would
    return an empty context. Most requests carry no trace context; other propagators always run."""

    def __init__(self) -> None:
        self._textmap: object = None
        self._w3c_only = False

    def extract(self, scope: Scope) -> context.Context:
        textmap = propagate.get_global_textmap()
        if textmap is not self._textmap:  # set_global_textmap() may be called at any time
            self._w3c_only = _is_w3c_only(textmap)
            self._textmap = textmap
        if self._w3c_only:
            for name, _ in scope.get("headers") or ():
                if name in _W3C_HEADERS:
                    break
            else:
                return context.Context()
        return propagate.extract(scope, getter=_GETTER)


def _is_w3c_only(textmap: object) -> bool:
    if type(textmap) is TraceContextTextMapPropagator:
        return True
    propagators = getattr(textmap, "_propagators", None) if type(textmap) is CompositePropagator else None
    # The trace context propagator first: with no header it returns a new empty context, which
    # the baggage propagator then returns as it is (given none, it would start from the current one).
    kinds = [type(p) for p in propagators] if isinstance(propagators, (list, tuple)) else None
    return kinds in ([TraceContextTextMapPropagator], [TraceContextTextMapPropagator, W3CBaggagePropagator])


_EXTRACTOR = _Extractor()


def _failsafe(hook: ServerRequestHook | None) -> ServerRequestHook | None:
    """A user hook that cannot fail the request: its exception is recorded on the span, as contrib does."""
    if hook is None:
        return None

    def guarded(span: Span, scope: Scope) -> None:
        try:
            hook(span, scope)
        except Exception as exc:  # a user callback: recorded on the span, never raised
            span.record_exception(exc)

    return guarded


class ServerSpanMiddleware:
    """Starts the request's SERVER span and captures the request, in one frame."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        capture: Capture,
        tracer_provider: trace.TracerProvider | None = None,
        settings: ServerSpanSettings | None = None,
        server_request_hook: ServerRequestHook | None = None,
    ) -> None:
        self.app = app
        self.capture = capture
        settings = settings if settings is not None else ServerSpanSettings()
        self.semconv = HttpServerSemconv(settings)
        self.tracer = trace.get_tracer(
            "apitally_otel", __version__, tracer_provider, schema_url=settings.schema_url
        )
        self.hook = _failsafe(server_request_hook)
        self.untraced = CaptureMiddleware(app, capture=capture)  # excluded URLs, suppressed tracing
        self.websocket = OpenTelemetryMiddleware(
            app,
            excluded_urls=settings.excluded_urls,
            server_request_hook=server_request_hook,
            tracer_provider=tracer_provider,
            meter_provider=NoOpMeterProvider(),
            http_capture_headers_server_request=settings.capture_request_headers or None,
            http_capture_headers_server_response=settings.capture_response_headers or None,
            http_capture_headers_sanitize_fields=settings.sanitize_fields or None,
            exclude_spans=["receive", "send"],
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "websocket":
                await self.websocket(scope, receive, send)
            elif scope["type"] == "lifespan":
                await self.capture.lifespan(self.app, scope, receive, send)
            else:
                await self.app(scope, receive, send)
            return
        current = context.get_current()
        # opentelemetry.instrumentation.utils.is_http_instrumentation_enabled(), reading the context once
        suppressed = (
            current.get(_SUPPRESS_INSTRUMENTATION_KEY)
            or current.get(_SUPPRESS_INSTRUMENTATION_KEY_PLAIN)
            or current.get(_SUPPRESS_HTTP_INSTRUMENTATION_KEY)
        )
        request = None if suppressed else self.semconv.request(scope)
        if request is None:
            await self.untraced(scope, receive, send)  # not traced, still counted
            return
        name, attributes = request
        if trace.get_current_span(current) is INVALID_SPAN:
            parent = _EXTRACTOR.extract(scope)
            kind = SpanKind.SERVER
        else:  # inside another server span (a nested app): contrib makes an INTERNAL span
            parent = current
            kind = SpanKind.INTERNAL
        span = self.tracer.start_span(name, context=parent, kind=kind, attributes=attributes)
        token = context.attach(set_span_in_context(span, parent))
        failed: Exception | None = None
        try:
            semconv = self.semconv
            if semconv.request_headers is not None and kind is SpanKind.SERVER and span.is_recording():
                headers = semconv.request_header_attributes(scope)
                if headers:
                    span.set_attributes(headers)
            if self.hook is not None:
                self.hook(span, scope)
            if scope["method"] == "OPTIONS" or scope.get(_SCOPE_KEY):
                # CORS preflights and nested apps are traced, not counted.
                await self.app(scope, receive, self._span_send(span, send, current))
                return
            exchange: _ServerExchange = self.capture.start(scope, receive, send, span, _ServerExchange)  # type: ignore[assignment]
            exchange.server = self
            exchange.outer = current
            record = exchange.record
            request_token = current_request.set(record)
            try:
                await self.app(scope, exchange.receive if exchange.wrap_receive else receive, exchange.send)
            except Exception as exc:
                record.exception = exc
                raise
            finally:
                capture = self.capture
                if capture.settle(exchange):
                    if capture.consumer_callback is not None:
                        record.fallback_consumer = await capture.callback_consumer(scope)
                    capture.complete(exchange)
                current_request.reset(request_token)
        except Exception as exc:
            failed = exc
            raise
        finally:
            context.detach(token)
            if span.is_recording():
                if failed is not None:  # as trace.use_span() records it, in contrib's middleware
                    span.record_exception(failed)
                    span.set_status(Status(StatusCode.ERROR, f"{type(failed).__name__}: {failed}"))
                span.end()

    def on_response(self, span: Span, message: Message) -> None:
        """What a response message puts on the SERVER span, and the response propagator into the
        message (contrib injects into every message, body chunks included)."""
        semconv = self.semconv
        if (
            semconv.response_headers is not None
            and "headers" in message
            and span.is_recording()
            and getattr(span, "kind", None) is SpanKind.SERVER
        ):
            headers = semconv.response_header_attributes(message)
            if headers:
                span.set_attributes(headers)
        if message["type"] == "http.response.start":
            status = message["status"]
            if status:
                semconv.set_status(span, status)
        propagator = get_global_response_propagator()  # type: ignore[no-untyped-call]
        if propagator is not None:
            span_context = set_span_in_context(span, context.Context())
            propagator.inject(message, context=span_context, setter=asgi_setter)

    def _span_send(self, span: Span, send: Send, outer: context.Context) -> Send:
        async def span_send(message: Message) -> None:
            self.on_response(span, message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                await send_last(send, message, outer)
                span.end()
            else:
                await send(message)

        return span_send


class _ServerExchange(Exchange):
    """The capture's exchange whose send wrapper also completes the SERVER span."""

    __slots__ = ("outer", "server")

    server: ServerSpanMiddleware
    outer: context.Context

    async def send(self, message: Message) -> None:
        last = self.on_message(message)
        self.server.on_response(self.span, message)
        if not last:
            await self._send(message)
            return
        await send_last(self._send, message, self.outer)
        self.span.end()  # as contrib does: the span's duration ends with the response


def quiet_fastapi_telemetry(app: object) -> None:
    """Make FastAPI's own telemetry stand down per request, as it does for contrib's middleware.

    FastAPI (0.142 and later) traces, meters and logs each request itself unless it finds contrib's
    ``OpenTelemetryMiddleware`` in its middleware stack (by class name); this middleware takes
    contrib's place, so FastAPI would add a second SERVER span. Its per-request configuration gets
    tracing, metrics and logs off; its lifespan (exporter auto-configuration) is left as it is.
    """
    native = getattr(app, "_native_telemetry", None)
    config = getattr(native, "config", None)
    if isinstance(config, dict):
        native.config = {**config, "tracing": False, "metrics": False, "logs": False}  # type: ignore[union-attr]
        _logger.debug("apitally-otel: FastAPI's own request telemetry is off (the SERVER span is ours)")
