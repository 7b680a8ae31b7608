"""Zero-code setup under ``opentelemetry-instrument`` (the ``opentelemetry_pre_instrument`` hook).

``opentelemetry-instrument`` loads the distro, runs the configurator (which creates the SDK
providers and the readers named by ``OTEL_METRICS_EXPORTER``), then calls the pre-instrument
hooks, then the instrumentors. There is no span-processor entry point, so this hook:

1. finds the :class:`~apitally_otel.ApitallyMetricReader` the configurator built for
   ``OTEL_METRICS_EXPORTER=apitally`` — or, when ``APITALLY_CLIENT_ID`` is set but the exporter list
   does not name us, creates one on a private meter provider (so removing the package never leaves
   a dangling exporter name behind, which would abort all auto-instrumentation);
2. adds the reader's :class:`~apitally_otel.ApitallySpanProcessor` to the SDK tracer provider;
3. makes every contrib ``OpenTelemetryMiddleware`` built from now on — by the Starlette and FastAPI
   instrumentors, or by hand — run our capture middleware inside its SERVER span, with the
   receive/send spans excluded unless ``APITALLY_OTEL_EXCLUDE_SPANS`` says otherwise, and without
   recording the contrib middleware's own metrics when apitally is the only metric reader (they would
   be collected only to be ignored).

A failure here would abort all auto-instrumentation, so :func:`pre_instrument` never raises.
"""

from __future__ import annotations

import functools
import logging
import os
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.environment_variables import OTEL_SDK_DISABLED
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import TracerProvider

from apitally_otel import environment_variables as env_vars
from apitally_otel._capture import CaptureMiddleware
from apitally_otel._config import env, is_disabled
from apitally_otel._request_log import RequestLogger
from apitally_otel.metric_exporter import ApitallyMetricExporter
from apitally_otel.metric_reader import ApitallyMetricReader

_logger = logging.getLogger(__name__)

_state: dict[str, Any] = {}  # "reader", "original_init" once installed


class _Lifecycle:
    """Startup message and final sync for apps instrumented without code."""

    def __init__(self, reader: ApitallyMetricReader, request_logger: RequestLogger | None) -> None:
        self.reader = reader
        self.request_logger = request_logger

    def on_app_startup(self, app: Any) -> None:
        if isinstance(self.reader.exporter, ApitallyMetricExporter):
            self.reader.exporter.set_app(app, env(env_vars.APITALLY_APP_VERSION))

    def on_app_shutdown(self) -> None:
        from apitally_otel.instrumentation import final_flush

        if isinstance(self.reader.exporter, ApitallyMetricExporter):
            final_flush(self.reader, self.reader.exporter, self.request_logger)


def pre_instrument(**kwargs: Any) -> None:
    """The ``opentelemetry_pre_instrument`` entry point."""
    try:
        _setup()
    except Exception:  # an exception here would abort every instrumentation of the app
        _logger.exception("apitally-otel: zero-code setup failed; the app is instrumented without it")


def active_reader() -> ApitallyMetricReader | None:
    """The reader set up by :func:`pre_instrument` in this process, if any."""
    reader = _state.get("reader")
    return reader if isinstance(reader, ApitallyMetricReader) else None


def _setup() -> None:
    if "reader" in _state or is_disabled():
        return
    if os.environ.get(OTEL_SDK_DISABLED, "").strip().lower() == "true":
        return
    reader = _find_reader()
    if reader is None:
        if not env(env_vars.APITALLY_CLIENT_ID):
            _logger.debug("apitally-otel: APITALLY_CLIENT_ID is not set; not monitoring")
            return
        reader = ApitallyMetricReader()
        MeterProvider(metric_readers=[reader])  # private: only carries our reader (and its atexit)
    exporter = reader.exporter
    if not isinstance(exporter, ApitallyMetricExporter) or not exporter.enabled:
        return  # the exporter logged why (one line) when it was built
    tracer_provider = trace.get_tracer_provider()
    if not isinstance(tracer_provider, TracerProvider):
        _logger.error("apitally-otel: no SDK TracerProvider was configured; not monitoring")
        return
    tracer_provider.add_span_processor(reader.span_processor)
    request_logger = None
    if exporter.settings is not None:
        from apitally_otel.instrumentation import build_request_logger

        request_logger = build_request_logger(None, exporter.settings, exporter.proxy)
    _patch_middleware(reader, request_logger)
    _state["reader"] = reader
    _logger.info(
        "apitally-otel: monitoring Starlette/FastAPI apps, syncing to %s",
        exporter.settings and exporter.settings.hub_url,
    )


def _find_reader() -> ApitallyMetricReader | None:
    provider = metrics.get_meter_provider()
    # The SDK keeps no public list of a provider's readers; this attribute has been stable since 1.x.
    readers = getattr(provider, "_all_metric_readers", ())
    return next((r for r in readers if isinstance(r, ApitallyMetricReader)), None)


def _only_apitally_readers() -> bool:
    readers = getattr(metrics.get_meter_provider(), "_all_metric_readers", None)
    return bool(readers) and all(isinstance(r, ApitallyMetricReader) for r in readers)  # type: ignore[union-attr]


def _excluded_spans() -> list[str]:
    raw = os.environ.get("APITALLY_OTEL_EXCLUDE_SPANS", "receive,send")
    return [part.strip() for part in raw.split(",") if part.strip() in ("receive", "send")]


def _patch_middleware(reader: ApitallyMetricReader, request_logger: RequestLogger | None) -> None:
    original = OpenTelemetryMiddleware.__init__
    lifecycle = _Lifecycle(reader, request_logger)
    exclude = _excluded_spans()

    @functools.wraps(original)
    def __init__(self: OpenTelemetryMiddleware, app: Any, *args: Any, **kwargs: Any) -> None:
        if exclude and kwargs.get("exclude_spans") is None:
            kwargs["exclude_spans"] = exclude
        if _only_apitally_readers():
            kwargs["meter"] = NoOpMeterProvider().get_meter("opentelemetry.instrumentation.asgi")
        original(self, app, *args, **kwargs)
        self.app = CaptureMiddleware(
            self.app, sink=reader.span_processor, lifecycle=lifecycle, request_logger=request_logger
        )

    _state["original_init"] = original
    OpenTelemetryMiddleware.__init__ = __init__  # type: ignore[method-assign]
