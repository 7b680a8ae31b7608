"""apitally-otel: API monitoring for Starlette and FastAPI, built on OpenTelemetry."""

from apitally_otel._asgi.context import set_consumer
from apitally_otel._asgi.custom_attributes import set_request_attribute
from apitally_otel._asgi.handled import capture_exception
from apitally_otel._consumers import Consumer
from apitally_otel.instrumentation import Instrumentation, instrument_app
from apitally_otel.metric_exporter import ApitallyMetricExporter
from apitally_otel.metric_reader import ApitallyMetricReader
from apitally_otel.request_logging import RequestLoggingConfig, ResponseInfo
from apitally_otel.span_processor import ApitallySpanProcessor
from apitally_otel.version import __version__

__all__ = [
    "ApitallyMetricExporter",
    "ApitallyMetricReader",
    "ApitallySpanProcessor",
    "Consumer",
    "Instrumentation",
    "RequestLoggingConfig",
    "ResponseInfo",
    "__version__",
    "capture_exception",
    "instrument_app",
    "set_consumer",
    "set_request_attribute",
]
