"""The span processor on its own: SDK spans in, aggregate out; it never raises."""

from __future__ import annotations

import logging

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

from apitally_otel import ApitallySpanProcessor
from apitally_otel._asgi.context import RequestRecord


@pytest.fixture
def setup() -> tuple[TracerProvider, ApitallySpanProcessor, InMemorySpanExporter]:
    provider = TracerProvider()
    processor = ApitallySpanProcessor()
    exporter = InMemorySpanExporter()
    provider.add_span_processor(processor)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, processor, exporter


def series(processor: ApitallySpanProcessor) -> dict[tuple[object, ...], int]:
    return {key: s.count for key, s in processor.aggregator.drain().series.items()}


@pytest.mark.parametrize(
    "attributes",
    [
        {"http.method": "GET", "http.status_code": 200, "http.route": "/a/{id}"},
        {"http.request.method": "GET", "http.response.status_code": 200, "http.route": "/a/{id}"},
    ],
)
def test_derives_from_old_and_new_semconv(setup, attributes) -> None:  # type: ignore[no-untyped-def]
    provider, processor, _ = setup
    tracer = provider.get_tracer("t")
    with (
        tracer.start_as_current_span("GET /a/{id}", kind=SpanKind.SERVER, attributes=attributes),
        tracer.start_as_current_span("child") as child,
    ):
        child.set_attribute("apitally.consumer.identifier", "  acme  ")
    assert series(processor) == {("acme", "GET", "/a/{id}", 200): 1}


def test_exception_without_status_is_a_500(setup) -> None:  # type: ignore[no-untyped-def]
    provider, processor, _ = setup
    tracer = provider.get_tracer("t")
    with (
        pytest.raises(ValueError),
        tracer.start_as_current_span(
            "GET /x", kind=SpanKind.SERVER, attributes={"http.method": "GET", "http.route": "/x"}
        ),
    ):
        raise ValueError("boom")
    assert series(processor) == {(None, "GET", "/x", 500): 1}


def test_ignores_non_server_spans_options_and_spans_without_route(setup) -> None:  # type: ignore[no-untyped-def]
    provider, processor, _ = setup
    tracer = provider.get_tracer("t")
    with tracer.start_as_current_span("internal", attributes={"http.method": "GET", "http.route": "/x"}):
        pass
    with tracer.start_as_current_span(
        "opt", kind=SpanKind.SERVER, attributes={"http.method": "OPTIONS", "http.route": "/x"}
    ):
        pass
    with tracer.start_as_current_span("no route", kind=SpanKind.SERVER, attributes={"http.method": "GET"}):
        pass
    with (
        tracer.start_as_current_span("outer", kind=SpanKind.SERVER),
        tracer.start_as_current_span(
            "nested server",
            kind=SpanKind.SERVER,
            attributes={"http.method": "GET", "http.route": "/nested", "http.status_code": 200},
        ),
    ):
        pass  # a SERVER span under a local parent is not a request of its own
    assert series(processor) == {}


def test_enduser_id_is_the_last_resort(setup) -> None:  # type: ignore[no-untyped-def]
    provider, processor, _ = setup
    tracer = provider.get_tracer("t")
    attrs = {"http.method": "GET", "http.route": "/", "http.status_code": 200, "enduser.id": "u1"}
    with tracer.start_as_current_span("s", kind=SpanKind.SERVER, attributes=attrs):
        pass
    assert series(processor) == {("u1", "GET", "/", 200): 1}


def test_claimed_spans_are_counted_by_the_middleware_only(setup) -> None:  # type: ignore[no-untyped-def]
    provider, processor, _ = setup
    tracer = provider.get_tracer("t")
    attrs = {
        "http.method": "GET",
        "http.route": "/r",
        "http.status_code": 201,
        "apitally.consumer.identifier": "c",
    }
    with tracer.start_as_current_span("s", kind=SpanKind.SERVER, attributes=attrs) as span:
        ctx = span.get_span_context()
        record = RequestRecord("GET", ctx.trace_id, ctx.span_id)
        record.route, record.status, record.ttfb, record.request_size, record.response_size = (
            "/r",
            201,
            0.05,
            10,
            20,
        )
        processor.claim_span(record)
    assert processor.aggregator.drain().series == {}
    processor.record_request(record, span.attributes)
    data = processor.aggregator.drain()
    ((key, s),) = data.series.items()
    assert key == ("c", "GET", "/r", 201) and s.time_bins == {50: 1} and s.request_size_sum == 10
    assert processor._claimed == {}  # released when the span ended


class ExplodingAggregator:
    def add_request(self, *args: object) -> None:
        raise RuntimeError("a bug of ours")


def test_on_end_never_raises_and_other_processors_still_run(setup, caplog) -> None:  # type: ignore[no-untyped-def]
    provider, processor, exporter = setup
    processor.aggregator = ExplodingAggregator()
    tracer = provider.get_tracer("t")
    attrs = {"http.method": "GET", "http.route": "/", "http.status_code": 200}
    with (
        caplog.at_level(logging.ERROR),
        tracer.start_as_current_span("s", kind=SpanKind.SERVER, attributes=attrs),
    ):
        pass
    assert [s.name for s in exporter.get_finished_spans()] == ["s"]
    assert any("failed to process span" in r.getMessage() for r in caplog.records)


def test_exporters_get_spans_unchanged(setup) -> None:  # type: ignore[no-untyped-def]
    provider, _, exporter = setup
    tracer = provider.get_tracer("t")
    attrs = {"http.method": "GET", "http.route": "/", "http.status_code": 200}
    with tracer.start_as_current_span("s", kind=SpanKind.SERVER, attributes=attrs) as span:
        span.set_status(Status(StatusCode.OK))
    (finished,) = exporter.get_finished_spans()
    assert dict(finished.attributes or {}) == attrs


def test_unreleased_claims_are_bounded(caplog) -> None:  # type: ignore[no-untyped-def]
    processor = ApitallySpanProcessor()
    with caplog.at_level(logging.WARNING):
        for i in range(25_000):
            processor.claim_span(RequestRecord("GET", 1, i + 1))
    assert len(processor._claimed) == 10_000
    assert sum("too many requests in flight" in r.getMessage() for r in caplog.records) == 1
