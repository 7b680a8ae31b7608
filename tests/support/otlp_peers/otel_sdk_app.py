"""A plain OpenTelemetry Python SDK app (no apitally code): FastAPI with
``opentelemetry-instrumentation-fastapi`` and the OTLP/HTTP protobuf exporters for traces, metrics
and logs, configured only by the standard environment variables::

    export OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:8000
    export OTEL_EXPORTER_OTLP_HEADERS="Authorization=Bearer%20apt_...,Apitally-Env=dev"
    export OTEL_SEMCONV_STABILITY_OPT_IN=http
    export OTEL_METRIC_EXPORT_INTERVAL=1000
    export OTEL_SERVICE_NAME=otel-sdk-peer

Run by ``uvicorn otel_sdk_app:app --app-dir tests/support/otlp_peers`` in the ``otel-sdk`` virtual
environment (``benchmarks/common.py``), never imported by the project. Metric temporality is the
SDK's default (cumulative). The providers are shut down (flushing every exporter) when the app's
lifespan ends, that is on SIGTERM.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from pydantic import BaseModel

resource = Resource.create()  # OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES
tracer_provider = TracerProvider(resource=resource)
tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
# The reader's interval comes from OTEL_METRIC_EXPORT_INTERVAL.
meter_provider = MeterProvider(
    resource=resource, metric_readers=[PeriodicExportingMetricReader(OTLPMetricExporter())]
)
logger_provider = LoggerProvider(resource=resource)
logger_provider.add_log_record_processor(BatchLogRecordProcessor(OTLPLogExporter()))

logger = logging.getLogger("peer.otel_sdk")
logger.setLevel(logging.INFO)
logger.addHandler(LoggingHandler(logger_provider=logger_provider))

ITEMS = {1: "apple", 2: "pear"}


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    yield
    tracer_provider.shutdown()
    meter_provider.shutdown()
    logger_provider.shutdown()


app = FastAPI(lifespan=lifespan)


class Item(BaseModel):
    name: str
    price: float


@app.get("/items")
def list_items() -> list[dict[str, object]]:
    logger.info("listing %d items", len(ITEMS))
    return [{"id": k, "name": v} for k, v in ITEMS.items()]


@app.get("/items/{item_id}")
def get_item(item_id: int) -> JSONResponse:
    if item_id not in ITEMS:
        return JSONResponse({"detail": "not found"}, status_code=404)
    return JSONResponse({"id": item_id, "name": ITEMS[item_id]})


@app.post("/items", status_code=201)
def create_item(item: Item) -> dict[str, object]:
    return {"id": 3, "name": item.name, "price": item.price}


@app.get("/boom")
def boom() -> None:
    raise RuntimeError("boom")


FastAPIInstrumentor.instrument_app(app, tracer_provider=tracer_provider, meter_provider=meter_provider)
