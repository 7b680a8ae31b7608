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
from collections.abc import Iterable
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader
from opentelemetry.sdk.trace import TracerProvider

from apitally_otel import environment_variables as env_vars
from apitally_otel._asgi.capture import CaptureMiddleware
from apitally_otel._config import env, excluded_spans, is_disabled, resolve_app_version, sdk_disabled
from apitally_otel._lifecycle import Lifecycle, build_request_logger
from apitally_otel.metric_exporter import ApitallyMetricExporter
from apitally_otel.metric_reader import ApitallyMetricReader

_logger = logging.getLogger(__name__)

_state: dict[str, Any] = {}  # "reader", "original_init" once installed


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
    if "reader" in _state or is_disabled() or sdk_disabled():
        return
    reader = _find_reader(metrics.get_meter_provider())
    if reader is None:
        if not env(env_vars.APITALLY_CLIENT_ID):
            _logger.debug("apitally-otel: APITALLY_CLIENT_ID is not set; not monitoring")
            return
        reader = ApitallyMetricReader()
        MeterProvider(metric_readers=[reader])  # private: only carries our reader (and its atexit)
    exporter = reader.exporter
    if not isinstance(exporter, ApitallyMetricExporter) or not exporter.enabled or exporter.settings is None:
        return  # the exporter logged why (one line) when it was built
    tracer_provider = trace.get_tracer_provider()
    if not isinstance(tracer_provider, TracerProvider):
        _logger.error("apitally-otel: no SDK TracerProvider was configured; not monitoring")
        return
    tracer_provider.add_span_processor(reader.span_processor)
    request_logger = build_request_logger(None, exporter.settings, exporter)
    lifecycle = Lifecycle(reader, exporter, request_logger, app_version=resolve_app_version())
    _patch_middleware(reader, lifecycle)
    _state["reader"] = reader
    _logger.info("apitally-otel: monitoring Starlette/FastAPI apps, syncing to %s", exporter.settings.hub_url)


def _readers_of(provider: Any) -> Iterable[MetricReader]:
    """The metric readers registered with ``provider`` (not with other providers of the process).

    The SDK keeps no public list: its measurement consumer has every reader (constructor and
    ``add_metric_reader``), the provider itself the constructor's; both stable since 1.x.
    """
    consumer = getattr(provider, "_measurement_consumer", None)
    storages = getattr(consumer, "_reader_storages", None)
    if isinstance(storages, dict):
        return list(storages)
    readers = getattr(provider, "_metric_readers", ())
    return list(readers) if isinstance(readers, (list, tuple)) else []


def _find_reader(provider: Any) -> ApitallyMetricReader | None:
    return next((r for r in _readers_of(provider) if isinstance(r, ApitallyMetricReader)), None)


def _only_apitally_readers(provider: Any) -> bool:
    readers = _readers_of(provider)
    return bool(readers) and all(isinstance(r, ApitallyMetricReader) for r in readers)


def _patch_middleware(reader: ApitallyMetricReader, lifecycle: Lifecycle) -> None:
    original = OpenTelemetryMiddleware.__init__
    exclude = excluded_spans()
    request_logger = lifecycle.request_logger

    @functools.wraps(original)
    def __init__(self: OpenTelemetryMiddleware, app: Any, *args: Any, **kwargs: Any) -> None:
        if exclude and kwargs.get("exclude_spans") is None:
            kwargs["exclude_spans"] = exclude
        if _only_apitally_readers(metrics.get_meter_provider()):
            kwargs["meter"] = NoOpMeterProvider().get_meter("opentelemetry.instrumentation.asgi")
        original(self, app, *args, **kwargs)
        self.app = CaptureMiddleware(
            self.app, sink=reader.span_processor, lifecycle=lifecycle, request_logger=request_logger
        )

    _state["original_init"] = original
    OpenTelemetryMiddleware.__init__ = __init__  # type: ignore[method-assign]
