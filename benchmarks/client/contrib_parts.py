"""What parts of contrib's ``OpenTelemetryMiddleware`` cost per request, next to the lean path's.

    python -m benchmarks.client.contrib_parts [--number 20000]

Each part is timed alone (best of 7 repeats of ``--number`` calls, µs per call) on the scope of the
overhead benchmark's Starlette GET, in the default semconv mode, with an SDK tracer and a no-op
meter as ``instrument_app``'s contrib composition uses them. The findings for upstream are in
``benchmarks/README.md`` ("Findings for upstream").
"""

from __future__ import annotations

import argparse
import timeit
from collections.abc import Callable
from typing import Any

from opentelemetry import trace
from opentelemetry.instrumentation.asgi import (
    OpenTelemetryMiddleware,
    _parse_active_request_count_attrs,
    _parse_duration_attrs,
    asgi_getter,
    collect_request_attributes,
    get_default_span_details,
    get_host_port_url_tuple,
)
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.trace import TracerProvider

from apitally_otel._asgi.http_semconv import HttpServerSemconv, ServerSpanSettings
from apitally_otel._asgi.server_span import _GETTER
from benchmarks.client import apps, worker


def parts() -> dict[str, Callable[[], Any]]:
    scope = worker.make_scope(apps.SCENARIOS[0])
    scope["headers"] = [*scope["headers"], (b"accept-encoding", b"gzip"), (b"connection", b"keep-alive")]
    tracer = TracerProvider().get_tracer("bench")
    attributes = collect_request_attributes(scope)
    span = tracer.start_span("GET /items/42", attributes=attributes)
    middleware = OpenTelemetryMiddleware(
        None,
        tracer_provider=TracerProvider(),
        meter_provider=NoOpMeterProvider(),
        exclude_spans=["receive", "send"],
    )
    semconv = HttpServerSemconv(ServerSpanSettings())

    def second_attribute_loop() -> None:
        for key, value in attributes.items():
            span.set_attribute(key, value)

    def metrics_with_a_noop_meter() -> None:
        # the finally block of contrib's __call__, plus the active-requests +1, with no-op instruments
        active = _parse_active_request_count_attrs(attributes)
        middleware.active_requests_counter.add(1, active)
        old = _parse_duration_attrs(attributes)
        new = _parse_duration_attrs(attributes, middleware._sem_conv_opt_in_mode)
        context = trace.set_span_in_context(span)
        if middleware.duration_histogram_old:
            middleware.duration_histogram_old.record(1, old, context=context)
        middleware.active_requests_counter.add(-1, active)
        size = asgi_getter.get(scope, "content-length")
        if size and middleware.server_request_size_histogram:
            middleware.server_request_size_histogram.record(int(size[0]), new, context=context)

    return {
        "contrib: collect_request_attributes": lambda: collect_request_attributes(scope),
        "lean: HttpServerSemconv.request (same attributes, one header pass)": lambda: semconv.request(scope),
        "contrib: asgi_getter.get(scope, 'host') (decodes every header)": lambda: asgi_getter.get(
            scope, "host"
        ),
        "lean: the propagators' getter, same lookup": lambda: _GETTER.get(scope, "host"),
        "contrib: span name + URL tuple (no excluded URLs)": lambda: (
            get_default_span_details(scope),
            get_host_port_url_tuple(scope),
        ),
        "contrib: the second loop re-setting the start attributes": second_attribute_loop,
        "contrib: metrics work with a no-op meter": metrics_with_a_noop_meter,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--number", type=int, default=20_000)
    args = parser.parse_args()
    for name, part in parts().items():
        best = min(timeit.repeat(part, number=args.number, repeat=7)) / args.number * 1e6
        print(f"{best:7.2f} µs  {name}")


if __name__ == "__main__":
    main()
