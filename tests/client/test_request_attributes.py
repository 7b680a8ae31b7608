"""``set_request_attribute``: bounds, the SERVER span's attributes and the request-log item, in
each way our middleware runs (instrument_app's lean middleware, our capture under contrib's
middleware as zero code has it, the classic ApitallyMiddleware); a no-op outside a request; never
raises."""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.test.globals_test import reset_trace_globals
from opentelemetry.trace import SpanKind
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

import apitally_otel
from apitally_hub import HubServer
from apitally_otel import RequestLoggingConfig, _classic, instrument_app, set_request_attribute
from apitally_otel import starlette as classic_starlette
from apitally_otel._asgi import custom_attributes
from apitally_otel._asgi.context import RequestRecord, current_request
from apitally_otel._request_log.log_capture import LogCapture
from apitally_otel._request_log.log_item import ItemBuilder
from tests.support.servers import ServerThread

PREFIX = "apitally.request.attribute."
SETUPS = ["instrument_app", "capture_under_contrib", "classic_middleware"]


@pytest.fixture(autouse=True)
def fresh_throttle(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(custom_attributes, "_warned_at", {})
    monkeypatch.setattr(custom_attributes, "_said_outside", False)


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """A global SDK tracer provider per test (the classic API takes none), reset afterwards."""
    reset_trace_globals()
    provider = TracerProvider()
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    yield exporter
    reset_trace_globals()


@pytest.fixture
def hub() -> Iterator[HubServer]:
    with HubServer() as server:
        yield server


# -- the app ---------------------------------------------------------------------------------------


class OddFloat(float):
    def __str__(self) -> str:
        raise RuntimeError("no text for you")


async def tagged(request: Request) -> PlainTextResponse:
    set_request_attribute("tenant", "acme")
    set_request_attribute("plan.tier", 3)
    set_request_attribute("ratio", 0.5)
    set_request_attribute("beta-user", True)
    set_request_attribute("long_value", "x" * 300)
    set_request_attribute("tenant", "acme-corp")  # again: replaces, counts once
    set_request_attribute("bad key!", "dropped")
    set_request_attribute("k" * 65, "dropped")
    set_request_attribute("", "dropped")
    set_request_attribute(7, "dropped")  # type: ignore[arg-type]
    set_request_attribute("none", None)  # type: ignore[arg-type]
    set_request_attribute("listed", ["a"])  # type: ignore[arg-type]
    set_request_attribute("odd", OddFloat(1.0))  # its __str__ raises: dropped as a bad value
    with trace.get_tracer("test").start_as_current_span("child"):
        set_request_attribute("from_child_span", "yes")  # still the request's (and its SERVER span's)
    return PlainTextResponse("tagged")


async def many(request: Request) -> PlainTextResponse:
    for i in range(25):
        set_request_attribute(f"a{i:02d}", i)
    return PlainTextResponse("many")


def in_threadpool(request: Request) -> PlainTextResponse:
    set_request_attribute("thread", "pool" if threading.current_thread().name.startswith("AnyIO") else "?")
    return PlainTextResponse("sync")


async def later(request: Request) -> Response:
    def task() -> None:
        set_request_attribute("from_background", "after the response")

    return PlainTextResponse("later", background=BackgroundTask(task))


async def plain(request: Request) -> PlainTextResponse:
    return PlainTextResponse("plain")


class Tagging(BaseHTTPMiddleware):
    async def dispatch(self, request: Request, call_next: Any) -> Response:
        set_request_attribute("middleware", "base-http")
        response: Response = await call_next(request)
        return response


def make_app(
    setup: str, client_id: str, hub_url: str, monkeypatch: pytest.MonkeyPatch
) -> tuple[Starlette, Any]:
    app = Starlette(
        routes=[
            Route("/tagged", tagged),
            Route("/many", many),
            Route("/sync", in_threadpool),
            Route("/later", later),
            Route("/plain", plain),
        ]
    )
    app.add_middleware(Tagging)
    if setup == "classic_middleware":
        monkeypatch.setenv("APITALLY_HUB_BASE_URL", hub_url)
        made: list[Any] = []
        remember = _classic._remember

        def remember_and_keep(router: Any, classic_setup: Any) -> None:
            made.append(classic_setup)
            remember(router, classic_setup)

        monkeypatch.setattr(_classic, "_remember", remember_and_keep)
        app.add_middleware(
            classic_starlette.ApitallyMiddleware, client_id=client_id, enable_request_logging=True
        )
        return app, made
    instrumentation = instrument_app(
        app,
        client_id=client_id,
        hub_base_url=hub_url,
        request_logging=RequestLoggingConfig(enabled=True),
        otel_metrics=setup == "capture_under_contrib",
    )
    assert instrumentation is not None
    return app, [instrumentation]


def shut_down(made: list[Any]) -> None:
    for setup in made:
        instrumentation = getattr(setup, "instrumentation", setup)
        if instrumentation is not None:
            instrumentation.shutdown()


def server_span_attributes(exporter: InMemorySpanExporter, path: str) -> dict[str, Any]:
    (span,) = [
        s
        for s in exporter.get_finished_spans()
        if s.kind is SpanKind.SERVER and (s.attributes or {}).get("http.route") == path
    ]
    return {k[len(PREFIX) :]: v for k, v in (span.attributes or {}).items() if k.startswith(PREFIX)}


def logged(hub: HubServer, client_id: str) -> dict[str, dict[str, Any]]:
    rows = hub.query(client_id, "dev", "requests", limit=100)["items"]
    items = [hub.query(client_id, "dev", f"requests/{row['uuid']}")["item"] for row in rows]
    return {item["request"]["path"]: item["request"] for item in items}


@pytest.mark.parametrize("setup", SETUPS)
def test_attributes_on_the_server_span_and_the_log_item(
    setup: str,
    spans: InMemorySpanExporter,
    hub: HubServer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    client_id = str(uuid.uuid4())
    app, made = make_app(setup, client_id, hub.url, monkeypatch)
    try:
        with caplog.at_level(logging.DEBUG, logger="apitally_otel"), ServerThread(app) as url:
            for path in ("/tagged", "/many", "/sync", "/later", "/plain", "/tagged"):
                assert httpx.get(url + path).status_code == 200
    finally:
        shut_down(made)
    expected_tagged = {
        "middleware": "base-http",
        "tenant": "acme-corp",
        "plan.tier": "3",
        "ratio": "0.5",
        "beta-user": "True",
        "long_value": "x" * 256,
        "from_child_span": "yes",
    }
    # The SERVER span: the same text as the log item, under the prefix.
    tagged_spans = [
        s
        for s in spans.get_finished_spans()
        if s.kind is SpanKind.SERVER and (s.attributes or {}).get("http.route") == "/tagged"
    ]
    assert len(tagged_spans) == 2
    for span in tagged_spans:
        attributes = span.attributes or {}
        assert {k[len(PREFIX) :]: v for k, v in attributes.items() if k.startswith(PREFIX)} == expected_tagged
    many_on_span = server_span_attributes(spans, "/many")
    assert many_on_span == {"middleware": "base-http", **{f"a{i:02d}": str(i) for i in range(19)}}
    assert server_span_attributes(spans, "/sync") == {"middleware": "base-http", "thread": "pool"}
    # Set after the response went out: the span has ended; the log item has it.
    assert server_span_attributes(spans, "/later") == {"middleware": "base-http"}
    assert server_span_attributes(spans, "/plain") == {"middleware": "base-http"}
    # The request-log items, as the hub has them.
    items = logged(hub, client_id)
    assert items["/tagged"]["attributes"] == expected_tagged
    assert items["/many"]["attributes"] == many_on_span  # 20 at most: the middleware's and 19
    assert items["/sync"]["attributes"] == {"middleware": "base-http", "thread": "pool"}
    assert items["/later"]["attributes"] == {
        "middleware": "base-http",
        "from_background": "after the response",
    }
    assert hub.query(client_id, "dev", "rejections")["rejections"] == []
    # Dropped ones were said, throttled: one warning per kind for the whole test, none raised.
    warnings = [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and "set_request_attribute" in r.getMessage()
    ]
    assert len(warnings) == 3, warnings
    assert any("key 'bad key!' dropped" in w for w in warnings)
    assert any("value of 'none' dropped: a NoneType" in w for w in warnings)
    assert any("'a19' dropped: at most 20 attributes" in w for w in warnings)
    assert not [r for r in caplog.records if "set_request_attribute() failed" in r.getMessage()]


def test_outside_a_request_it_does_nothing_and_says_so_once(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="apitally_otel"):
        set_request_attribute("tenant", "acme")
        set_request_attribute("tenant", "again")
        set_request_attribute("bad key", object())  # type: ignore[arg-type]
    said = [r for r in caplog.records if "outside of a monitored request" in r.getMessage()]
    assert len(said) == 1 and said[0].levelno == logging.DEBUG
    assert [r for r in caplog.records if r.levelno > logging.DEBUG] == []


def test_bounds_on_the_record() -> None:
    record = RequestRecord("GET", 1, 2)
    token = current_request.set(record)
    try:
        set_request_attribute("k" * 64, "v" * 257)
        set_request_attribute("K.k-_9", 1.25)
        set_request_attribute("ünïcode", "dropped")
        set_request_attribute("with space", "dropped")
        set_request_attribute("newline\n", "dropped")
        set_request_attribute("bytes", b"dropped")  # type: ignore[arg-type]
        for i in range(30):
            set_request_attribute(f"n{i}", i)
        set_request_attribute("K.k-_9", False)  # an existing key: replaced even when full
    finally:
        current_request.reset(token)
    assert record.attributes is not None and len(record.attributes) == 20
    assert record.attributes["k" * 64] == "v" * 256
    assert record.attributes["K.k-_9"] == "False"
    assert list(record.attributes)[2:] == [f"n{i}" for i in range(18)]


def test_the_log_item_carries_them_as_text() -> None:
    config = RequestLoggingConfig(enabled=True)
    scope = {"type": "http", "method": "GET", "path": "/x", "headers": [], "query_string": b""}
    capture = LogCapture(config, scope)
    record = RequestRecord("GET", 5, 6)
    record.route, record.status = "/x", 200
    record.attributes = {f"k{i}": str(i) for i in range(25)}  # a race past the bound: cut again
    item = capture.finish(record, 0.01)
    line = ItemBuilder(config).build(item)
    assert line is not None
    request = json.loads(line)["request"]
    assert request["attributes"] == {f"k{i}": str(i) for i in range(20)}
    without = LogCapture(config, scope).finish(RequestRecord("GET", 5, 6), 0.01)
    built = ItemBuilder(config).build(without)
    assert built is not None and "attributes" not in json.loads(built)["request"]


def test_exported() -> None:
    assert apitally_otel.set_request_attribute is set_request_attribute
    assert "set_request_attribute" in apitally_otel.__all__
