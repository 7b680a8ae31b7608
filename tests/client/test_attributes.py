"""put_attribute writes what span.set_attribute would, on every kind of span and under every limit."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import SpanLimits, TracerProvider

from apitally_otel._asgi.attributes import put_attribute

Writes = list[tuple[str, str | int]]
CASES: dict[str, tuple[SpanLimits | None, Writes]] = {
    "new keys": (None, [("http.route", "/items/{id}"), ("http.status_code", 200)]),
    "a key set again moves to the end": (None, [("a", 1), ("http.route", "/x"), ("a", 2)]),
    "attribute count limit": (SpanLimits(max_attributes=3), [("b", 1), ("c", "two"), ("d", 3), ("b", 4)]),
    "value length limit": (SpanLimits(max_attribute_length=4), [("http.route", "/items/{id}"), ("n", 12345)]),
}


def _span(limits: SpanLimits | None) -> trace.Span:
    provider = TracerProvider(span_limits=limits) if limits is not None else TracerProvider()
    return provider.get_tracer("test").start_span("GET /", attributes={"http.method": "GET", "a": 0})


def _apply(
    write: Callable[[trace.Span, str, str | int], None], limits: SpanLimits | None, writes: Writes
) -> trace.Span:
    span = _span(limits)
    for key, value in writes:
        write(span, key, value)
    return span


@pytest.mark.parametrize("case", list(CASES))
def test_same_attributes_order_and_dropped_count_as_set_attribute(case: str) -> None:
    limits, writes = CASES[case]
    ours = _apply(put_attribute, limits, writes)
    sdk = _apply(lambda span, key, value: span.set_attribute(key, value), limits, writes)
    assert list(ours.attributes.items()) == list(sdk.attributes.items())  # type: ignore[attr-defined]
    assert ours.dropped_attributes == sdk.dropped_attributes  # type: ignore[attr-defined]


def test_an_ended_span_is_left_as_it_is() -> None:
    span = _span(None)
    span.end()
    put_attribute(span, "http.route", "/late")
    assert "http.route" not in span.attributes  # type: ignore[attr-defined]


def test_a_non_recording_span_is_left_as_it_is() -> None:
    put_attribute(trace.INVALID_SPAN, "http.route", "/x")  # no attributes, no error
    assert not trace.INVALID_SPAN.is_recording()
