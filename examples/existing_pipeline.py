"""Adding apitally-otel to an OpenTelemetry pipeline the app already runs.

The app owns its providers and exporters (OTLP here) and instruments FastAPI itself;
``instrument_app`` then only adds what is missing: our span processor on the app's
TracerProvider, our metric reader on its MeterProvider, and the capture middleware inside the
existing SERVER span (no second span, nothing counted twice). The OTLP exporters keep receiving
every span and metric they received before.

    OTEL_EXPORTER_OTLP_ENDPOINT=http://collector:4318 APITALLY_CLIENT_ID=<uuid> \\
      uvicorn examples.existing_pipeline:app
"""

from __future__ import annotations

from fastapi import FastAPI
from opentelemetry import metrics, trace
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

import apitally_otel

# The app's own pipeline.
tracer_provider = TracerProvider()
tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
meter_provider = MeterProvider(metric_readers=[PeriodicExportingMetricReader(OTLPMetricExporter())])
trace.set_tracer_provider(tracer_provider)
metrics.set_meter_provider(meter_provider)

app = FastAPI()


@app.get("/hello/{name}")
async def hello(name: str) -> dict[str, str]:
    return {"hello": name}


FastAPIInstrumentor.instrument_app(app, tracer_provider=tracer_provider, exclude_spans=["receive", "send"])

# apitally-otel joins that pipeline.
apitally_otel.instrument_app(app, tracer_provider=tracer_provider, meter_provider=meter_provider)
