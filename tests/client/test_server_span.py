"""instrument_app's lean SERVER-span path over a real server: what is traced, what is counted,
and where contrib's middleware takes over (websockets, otel_metrics=True)."""

from __future__ import annotations

import gc
import logging
import time
import uuid
import weakref
from collections.abc import Iterator

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from opentelemetry.instrumentation.utils import suppress_http_instrumentation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket
from websockets.sync.client import connect

from apitally_otel import instrument_app
from apitally_otel._asgi.context import RequestRecord
from tests.support.servers import RecordingHub, ServerThread


async def hello(request: Request) -> PlainTextResponse:
    return PlainTextResponse("hello")


async def echo(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_text(await websocket.receive_text())
    await websocket.close()


class Suppressed:
    """Serves the requests to /quiet with HTTP instrumentation suppressed (as an HTTP client's
    instrumentation does for its own calls)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/quiet":
            with suppress_http_instrumentation():
                await self.app(scope, receive, send)
        else:
            await self.app(scope, receive, send)


def make_app() -> Starlette:
    routes = [Route("/hello", hello), Route("/health", hello), Route("/quiet", hello)]
    return Starlette(routes=[*routes, WebSocketRoute("/ws", echo)])


@pytest.fixture
def traced() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    provider = TracerProvider()
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


def counts(hub: RecordingHub) -> dict[tuple[str, str, int], int]:
    out: dict[tuple[str, str, int], int] = {}
    for payload in hub.of_kind("sync"):
        for item in payload["requests"]:
            key = (item["method"], item["path"], item["status_code"])
            out[key] = out.get(key, 0) + item["request_count"]
    return out


def test_excluded_and_suppressed_requests_are_counted_not_traced(
    monkeypatch: pytest.MonkeyPatch,
    recording_hub: tuple[RecordingHub, str],
    traced: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    hub, hub_url = recording_hub
    provider, exporter = traced
    monkeypatch.setenv("OTEL_PYTHON_EXCLUDED_URLS", "/health")
    app = make_app()
    setup = instrument_app(app, client_id=str(uuid.uuid4()), hub_base_url=hub_url, tracer_provider=provider)
    assert setup is not None
    monkeypatch.setenv("OTEL_PYTHON_EXCLUDED_URLS", "/hello")  # read when instrument_app was called
    app.user_middleware.insert(0, Middleware(Suppressed))  # outside ours
    with ServerThread(app) as url:
        for path in ("/hello", "/health", "/quiet"):
            assert httpx.get(url + path).status_code == 200
    setup.shutdown()
    assert counts(hub) == {("GET", "/hello", 200): 1, ("GET", "/health", 200): 1, ("GET", "/quiet", 200): 1}
    assert [s.name for s in exporter.get_finished_spans()] == ["GET /hello"]


def test_websockets_are_traced_by_contribs_middleware(
    recording_hub: tuple[RecordingHub, str], traced: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    _, hub_url = recording_hub
    provider, exporter = traced
    app = make_app()
    setup = instrument_app(app, client_id=str(uuid.uuid4()), hub_base_url=hub_url, tracer_provider=provider)
    assert setup is not None
    with ServerThread(app) as url, connect(url.replace("http", "ws") + "/ws") as ws:
        ws.send("hi")
        assert ws.recv() == "hi"
    setup.shutdown()
    (span,) = [s for s in exporter.get_finished_spans() if s.kind is SpanKind.SERVER]
    assert span.name == "HTTP /ws"  # contrib's name for a scope without a method
    assert span.instrumentation_scope is not None
    assert span.instrumentation_scope.name == "opentelemetry.instrumentation.asgi"


def test_otel_metrics_composes_contribs_middleware_with_its_metrics(
    recording_hub: tuple[RecordingHub, str], traced: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    hub, hub_url = recording_hub
    provider, exporter = traced
    reader = InMemoryMetricReader()
    app = make_app()
    setup = instrument_app(
        app,
        client_id=str(uuid.uuid4()),
        hub_base_url=hub_url,
        tracer_provider=provider,
        meter_provider=MeterProvider(metric_readers=[reader]),
        otel_metrics=True,
    )
    assert setup is not None
    assert app.user_middleware[0].cls is OpenTelemetryMiddleware  # type: ignore[comparison-overlap]
    with ServerThread(app) as url:
        assert httpx.get(url + "/hello").status_code == 200
    names = {
        m.name
        for rm in reader.get_metrics_data().resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
    }
    setup.shutdown()
    assert "http.server.duration" in names
    assert counts(hub) == {("GET", "/hello", 200): 1}
    (span,) = exporter.get_finished_spans()
    assert span.attributes is not None and span.attributes["http.route"] == "/hello"


def test_a_hook_for_an_already_instrumented_app_is_one_warning(
    caplog: pytest.LogCaptureFixture,
    recording_hub: tuple[RecordingHub, str],
    traced: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    _, hub_url = recording_hub
    provider, _ = traced
    app = make_app()
    app.add_middleware(OpenTelemetryMiddleware, tracer_provider=provider)
    with caplog.at_level(logging.WARNING, logger="apitally_otel"):
        setup = instrument_app(
            app,
            client_id=str(uuid.uuid4()),
            hub_base_url=hub_url,
            tracer_provider=provider,
            server_request_hook=lambda span, scope: None,
        )
    assert setup is not None
    assert [r.getMessage() for r in caplog.records] == [
        "apitally-otel: the app is already instrumented; server_request_hook is not used"
    ]
    setup.shutdown()


def live_records() -> int:
    return sum(1 for o in gc.get_objects() if type(o) is RequestRecord)


SERVERS = [{"loop": "asyncio", "http": "h11"}, {"loop": "uvloop", "http": "httptools"}]


@pytest.mark.parametrize("server", SERVERS, ids=["asyncio-h11", "uvloop-httptools"])
@pytest.mark.parametrize("composed", [False, True], ids=["lean", "under-contribs-middleware"])
def test_a_finished_request_is_not_kept_alive_by_the_servers_keep_alive_timer(
    server: dict[str, str],
    composed: bool,
    recording_hub: tuple[RecordingHub, str],
    traced: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    """The server copies the current context when it schedules a connection's keep-alive timeout,
    at the response's last message, and (asyncio) keeps a cancelled timer's copy until it is due:
    the request's span and record would live seconds longer, and be promoted by the collector."""
    _, hub_url = recording_hub
    provider, _ = traced
    spans: list[weakref.ref[trace.Span]] = []

    async def remember(request: Request) -> PlainTextResponse:
        spans.append(weakref.ref(trace.get_current_span()))
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route("/remember", remember)])
    if composed:
        app.add_middleware(OpenTelemetryMiddleware, tracer_provider=provider)
    setup = instrument_app(app, client_id=str(uuid.uuid4()), hub_base_url=hub_url, tracer_provider=provider)
    assert setup is not None
    with ServerThread(app, timeout_keep_alive=60, **server) as url, httpx.Client() as client:
        before = live_records()
        for _ in range(2):  # the second request cancels the first one's timer; the connection stays open
            assert client.get(url + "/remember").status_code == 200
        deadline = time.monotonic() + 5
        while True:
            gc.collect()
            ours = [ref() for ref in spans] if not composed else []  # contrib's span is contrib's
            left = [span for span in ours if span is not None]
            if (not left and live_records() <= before) or time.monotonic() > deadline:
                break
            del left, ours
            time.sleep(0.02)
        assert len(spans) == 2
        assert left == []
        assert live_records() <= before
    setup.shutdown()
