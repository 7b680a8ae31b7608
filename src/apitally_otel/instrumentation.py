"""``instrument_app``: one call to monitor a Starlette or FastAPI app through OpenTelemetry.

Each HTTP request goes through one lean middleware of ours
(:class:`~apitally_otel._asgi.server_span.ServerSpanMiddleware`) that starts the SERVER span — the
same span contrib's ``OpenTelemetryMiddleware`` makes — and captures the request in the same
frame. Contrib's middleware is composed with our capture middleware instead where it is the right
tool: when its HTTP metrics are wanted (``otel_metrics=True``), and for websockets. An app that is
already instrumented (``FastAPIInstrumentor``, ``StarletteInstrumentor``, ``OpenTelemetryMiddleware``
by hand) only gets the capture middleware, inside its existing SERVER span. An
:class:`~apitally_otel.ApitallySpanProcessor` goes on the tracer provider and an
:class:`~apitally_otel.ApitallyMetricReader` on the meter provider.

Providers: the ones passed in; else the global SDK providers when the app set them up. When there
is no SDK tracer provider at all, one is created and installed as the global provider (so that the
app's own spans — e.g. a child span carrying ``apitally.consumer.identifier`` — are recorded); set
up OpenTelemetry before calling ``instrument_app``, or pass ``tracer_provider=``, to keep yours.
A meter provider is never installed globally: without one, a private one carries our reader.
"""

from __future__ import annotations

import logging
import weakref
from dataclasses import dataclass
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import TracerProvider
from starlette.middleware import Middleware

from apitally_otel import auto
from apitally_otel._asgi.capture import Capture, CaptureMiddleware, ConsumerCallback
from apitally_otel._asgi.http_semconv import ServerSpanSettings
from apitally_otel._asgi.server_span import ServerRequestHook, ServerSpanMiddleware, quiet_fastapi_telemetry
from apitally_otel._config import ConfigError, is_disabled, resolve_app_version, resolve_settings
from apitally_otel._lifecycle import Lifecycle, build_request_logger
from apitally_otel._request_log.logger import RequestLogger
from apitally_otel.metric_exporter import ApitallyMetricExporter
from apitally_otel.metric_reader import ApitallyMetricReader
from apitally_otel.request_logging import RequestLoggingConfig
from apitally_otel.span_processor import ApitallySpanProcessor

_logger = logging.getLogger(__name__)


@dataclass
class Instrumentation:
    """What :func:`instrument_app` set up for one app."""

    span_processor: ApitallySpanProcessor
    metric_reader: ApitallyMetricReader
    exporter: ApitallyMetricExporter
    tracer_provider: TracerProvider
    meter_provider: MeterProvider
    owns_meter_provider: bool
    lifecycle: Lifecycle
    request_logger: RequestLogger | None = None

    def shutdown(self) -> None:
        """Final sync and stop (also done at interpreter exit). Safe to call twice."""
        if self.request_logger is not None:
            self.request_logger.shutdown(self.exporter.shutdown_timeout)
        if self.owns_meter_provider:
            if not getattr(self.meter_provider, "_shutdown", False):
                self.meter_provider.shutdown()
        elif not self.metric_reader._shutdown:
            self.meter_provider.remove_metric_reader(self.metric_reader)
        self.span_processor.shutdown()


_instrumented: weakref.WeakKeyDictionary[Any, Instrumentation] = weakref.WeakKeyDictionary()


def instrument_app(
    app: Any,
    *,
    client_id: str | None = None,
    env: str | None = None,
    hub_base_url: str | None = None,
    consumer_callback: ConsumerCallback | None = None,
    app_version: str | None = None,
    openapi_url: str | None = "/openapi.json",
    tracer_provider: trace.TracerProvider | None = None,
    meter_provider: metrics.MeterProvider | None = None,
    sync_interval: float | None = None,
    max_consumers: int | None = None,
    otel_metrics: bool = False,
    server_request_hook: ServerRequestHook | None = None,
    request_logging: RequestLoggingConfig | None = None,
    proxy: str | None = None,
    shutdown_timeout: float | None = None,
    hub_timeout: float | None = None,
    disabled: bool | None = None,
) -> Instrumentation | None:
    """Monitor ``app`` (Starlette or FastAPI) and sync its metrics to the Apitally hub.

    Missing arguments fall back to ``APITALLY_CLIENT_ID``, ``APITALLY_ENV``,
    ``APITALLY_HUB_BASE_URL``, ``APITALLY_SYNC_INTERVAL``; ``APITALLY_DISABLED=true`` makes this a
    no-op. Calling it again for the same app does nothing. An invalid configuration logs one error
    and leaves the app untouched. Returns what was set up, or None.

    ``openapi_url=None`` keeps the OpenAPI document out of the startup message; FastAPI apps are
    asked for theirs with ``app.openapi()`` at startup. ``request_logging`` (default: from the
    ``APITALLY_REQUEST_LOGGING_*`` env vars, off) turns on request logging. ``proxy``
    (``APITALLY_PROXY``) routes hub requests through a proxy; ``shutdown_timeout``
    (``APITALLY_SHUTDOWN_TIMEOUT``, 5 s) bounds the final delivery at shutdown; ``hub_timeout``
    (``APITALLY_HUB_TIMEOUT``, 10 s) is the deadline of each hub request, everything included.

    ``server_request_hook(span, scope)`` is called with each request's SERVER span, as contrib's
    hook of that name (an exception it raises is recorded on the span). ``otel_metrics=True`` keeps
    contrib's HTTP metrics (on ``meter_provider``, else the global one). The SERVER span follows
    ``OTEL_SEMCONV_STABILITY_OPT_IN``, ``OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_*`` and
    ``OTEL_PYTHON_{STARLETTE,FASTAPI}_EXCLUDED_URLS`` / ``OTEL_PYTHON_EXCLUDED_URLS``, read now.
    """
    if is_disabled(disabled):
        _logger.info("apitally-otel is disabled (APITALLY_DISABLED)")
        return None
    if auto.active_reader() is not None:
        _logger.info(
            "apitally-otel: already set up by opentelemetry-instrument; instrument_app() does nothing"
        )
        return None
    existing = _instrumented.get(app)
    if existing is not None:
        _logger.debug("apitally-otel: app already instrumented")
        return existing
    built = build_pipeline(
        client_id=client_id,
        env=env,
        hub_base_url=hub_base_url,
        consumer_callback=consumer_callback,
        app_version=app_version,
        openapi_url=openapi_url,
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
        sync_interval=sync_interval,
        max_consumers=max_consumers,
        request_logging=request_logging,
        proxy=proxy,
        shutdown_timeout=shutdown_timeout,
        hub_timeout=hub_timeout,
    )
    if built is None:
        return None
    setup, capture = built
    _add_middleware(app, capture, setup.tracer_provider, server_request_hook, otel_metrics, meter_provider)
    _instrumented[app] = setup
    return setup


def build_pipeline(
    *,
    client_id: str | None,
    env: str | None,
    hub_base_url: str | None = None,
    consumer_callback: ConsumerCallback | None = None,
    app_version: str | None = None,
    openapi_url: str | None = "/openapi.json",
    tracer_provider: trace.TracerProvider | None = None,
    meter_provider: metrics.MeterProvider | None = None,
    sync_interval: float | None = None,
    max_consumers: int | None = None,
    request_logging: RequestLoggingConfig | None = None,
    proxy: str | None = None,
    shutdown_timeout: float | None = None,
    hub_timeout: float | None = None,
) -> tuple[Instrumentation, Capture] | None:
    """The pipeline behind every middleware way in (``instrument_app``, the classic
    ``ApitallyMiddleware``): exporter, request logger, span processor on the tracer provider, reader
    on the meter provider, lifecycle, and the capture the middleware runs. None, with one log line,
    when the configuration is invalid.
    """
    try:
        settings = resolve_settings(client_id, env, hub_base_url, sync_interval, max_consumers)
    except ConfigError as exc:
        _logger.error("apitally-otel disabled: %s", exc)
        return None

    exporter = ApitallyMetricExporter(
        settings=settings, proxy=proxy, shutdown_timeout=shutdown_timeout, hub_timeout=hub_timeout
    )
    if not exporter.enabled:
        return None  # the exporter logged why (an invalid proxy)
    request_logger = build_request_logger(request_logging, settings, exporter)
    sdk_tracer_provider = _sdk_tracer_provider(tracer_provider)
    processor = ApitallySpanProcessor(max_consumers=settings.max_consumers)
    reader = ApitallyMetricReader(exporter, span_processor=processor, sync_interval=settings.sync_interval)
    sdk_tracer_provider.add_span_processor(processor)
    sdk_meter_provider, owned = _attach_reader(meter_provider, reader)

    setup = Instrumentation(
        span_processor=processor,
        metric_reader=reader,
        exporter=exporter,
        tracer_provider=sdk_tracer_provider,
        meter_provider=sdk_meter_provider,
        owns_meter_provider=owned,
        lifecycle=Lifecycle(
            reader,
            exporter,
            request_logger,
            app_version=resolve_app_version(app_version),
            send_openapi=openapi_url is not None,
        ),
        request_logger=request_logger,
    )
    capture = Capture(
        sink=processor,
        lifecycle=setup.lifecycle,
        consumer_callback=consumer_callback,
        request_logger=request_logger,
    )
    return setup, capture


def _sdk_tracer_provider(given: trace.TracerProvider | None) -> TracerProvider:
    if isinstance(given, TracerProvider):
        return given
    if given is not None:
        _logger.warning("apitally-otel: tracer_provider is not an SDK TracerProvider; using a private one")
    global_provider = trace.get_tracer_provider()
    if given is None and isinstance(global_provider, TracerProvider):
        return global_provider
    provider = TracerProvider()
    if given is None:
        # Asked to set up tracing where there was none: the app's own spans must reach us too.
        trace.set_tracer_provider(provider)
        _logger.info("apitally-otel: no OpenTelemetry TracerProvider was configured; installed an SDK one")
    return provider


def _attach_reader(
    given: metrics.MeterProvider | None, reader: ApitallyMetricReader
) -> tuple[MeterProvider, bool]:
    candidate = given if given is not None else metrics.get_meter_provider()
    if isinstance(candidate, MeterProvider) and hasattr(candidate, "add_metric_reader"):
        candidate.add_metric_reader(reader)
        return candidate, False
    # A private provider: owns the reader's lifecycle (final export at interpreter exit).
    return MeterProvider(metric_readers=[reader]), True


def _add_middleware(
    app: Any,
    capture: Capture,
    tracer_provider: TracerProvider,
    server_request_hook: ServerRequestHook | None,
    otel_metrics: bool,
    meter_provider: metrics.MeterProvider | None,
) -> None:
    stack: list[Middleware] = app.user_middleware
    otel_index = next((i for i, m in enumerate(stack) if m.cls is OpenTelemetryMiddleware), None)  # type: ignore[comparison-overlap]
    if otel_index is not None or getattr(app, "_is_instrumented_by_opentelemetry", False):
        # Already traced by hand or by the contrib instrumentor: only add what is missing, inside
        # the existing server span (no second SERVER span, no double counting).
        if server_request_hook is not None:
            _logger.warning("apitally-otel: the app is already instrumented; server_request_hook is not used")
        index = otel_index + 1 if otel_index is not None else len(stack)
        stack.insert(index, Middleware(CaptureMiddleware, capture=capture))
    else:
        settings = ServerSpanSettings.from_env("FASTAPI" if _is_fastapi(app) else "STARLETTE")
        if otel_metrics:
            # Contrib's middleware records its HTTP metrics; ours would not.
            stack.insert(0, Middleware(CaptureMiddleware, capture=capture))
            stack.insert(
                0,
                Middleware(
                    OpenTelemetryMiddleware,
                    excluded_urls=settings.excluded_urls,
                    server_request_hook=server_request_hook,
                    tracer_provider=tracer_provider,
                    meter_provider=meter_provider,
                    http_capture_headers_server_request=settings.capture_request_headers or None,
                    http_capture_headers_server_response=settings.capture_response_headers or None,
                    http_capture_headers_sanitize_fields=settings.sanitize_fields or None,
                    exclude_spans=["receive", "send"],
                ),
            )
        else:
            stack.insert(
                0,
                Middleware(
                    ServerSpanMiddleware,
                    capture=capture,
                    tracer_provider=tracer_provider,
                    settings=settings,
                    server_request_hook=server_request_hook,
                ),
            )
            quiet_fastapi_telemetry(app)
    app.middleware_stack = None  # rebuilt on first call (Starlette builds it lazily)


def _is_fastapi(app: Any) -> bool:
    return any(c.__name__ == "FastAPI" and c.__module__.startswith("fastapi") for c in type(app).__mro__)
