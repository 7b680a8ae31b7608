"""The lean SERVER-span middleware makes the span contrib's OpenTelemetryMiddleware makes.

Two copies of the same apps: one instrumented the contrib way (``otel_metrics=True``: contrib's
middleware composed with our capture middleware), one the lean way (``instrument_app`` default).
Every request of the matrix goes through both with the same ASGI scope; the exported spans must be
identical — name, kind, status, every attribute in order, events, parents, trace state — apart from
the instrumentation scope's name and version, timing and generated ids; so must the responses.
Under the default, ``http`` and ``http/dup`` semconv modes, with and without header capture,
excluded URLs, a server request hook, a response propagator and a propagator that lists headers.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi import FastAPI
from opentelemetry import baggage, propagate
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.context import Context
from opentelemetry.instrumentation._semconv import _OpenTelemetrySemanticConventionStability
from opentelemetry.instrumentation.propagators import (
    TraceResponsePropagator,
    get_global_response_propagator,
    set_global_response_propagator,
)
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.propagators.textmap import CarrierT, Getter, TextMapPropagator, default_getter
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Span
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Mount, Route

import apitally_otel
from apitally_otel import Instrumentation, instrument_app
from apitally_otel._asgi.server_span import ServerSpanMiddleware
from tests.support.servers import RecordingHub

SAMPLED = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
UNSAMPLED = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"


class TenantPropagator(TextMapPropagator):
    """Puts every ``x-tenant-*`` request header in the baggage: a propagator that lists the keys."""

    def extract(
        self, carrier: CarrierT, context: Context | None = None, getter: Getter[CarrierT] = default_getter
    ) -> Context:
        context = context if context is not None else Context()
        for key in getter.keys(carrier):
            if key.startswith("x-tenant-"):
                values = getter.get(carrier, key)
                if values:
                    context = baggage.set_baggage(key, values[0], context)
        return context

    def inject(self, carrier: CarrierT, context: Context | None = None, setter: Any = None) -> None:
        pass

    @property
    def fields(self) -> set[str]:
        return set()


def hook(span: Span, scope: dict[str, Any]) -> None:
    if scope["path"] == "/hook-fails":
        raise ValueError("the hook failed")
    span.set_attribute("test.hook.path", scope["path"])


class Item(BaseModel):
    name: str
    price: float


def starlette_app(provider: TracerProvider) -> Starlette:
    tracer = provider.get_tracer("test.app")

    async def item(request: Request) -> Response:
        return JSONResponse({"id": request.path_params["item_id"]})

    async def boom(request: Request) -> Response:
        raise RuntimeError("boom")

    async def unavailable(request: Request) -> Response:
        return PlainTextResponse("down", status_code=503)

    async def stream(request: Request) -> Response:
        async def chunks() -> Any:
            for part in (b"one,", b"two,", b"three"):
                yield part

        return StreamingResponse(chunks(), media_type="text/plain")

    async def child(request: Request) -> Response:
        with tracer.start_as_current_span("child work", attributes={"work.kind": "db"}) as span:
            span.add_event("started")
            apitally_otel.set_consumer("consumer-1", name="One")
        return PlainTextResponse("done")

    async def headers(request: Request) -> Response:
        return PlainTextResponse(
            "h", headers={"x-resp": "r1", "set-cookie": "session=secret", "x-secret-thing": "s"}
        )

    async def ok(request: Request) -> Response:
        return PlainTextResponse("ok")

    async def later(request: Request) -> Response:
        async def work() -> None:  # after the last message is sent: still in the request's trace
            with tracer.start_as_current_span("background work"):
                apitally_otel.set_consumer("consumer-2")

        return PlainTextResponse("accepted", status_code=202, background=BackgroundTask(work))

    return Starlette(
        routes=[
            Route("/items/{item_id:int}", item, methods=["GET", "PUT"]),
            Route("/boom", boom),
            Route("/unavailable", unavailable),
            Route("/stream", stream),
            Route("/child", child),
            Route("/headers", headers),
            Route("/health", ok),
            Route("/hook-fails", ok),
            Route("/later", later),
            Mount("/v1", routes=[Route("/accounts/{account_id}", ok)]),
        ]
    )


def fastapi_app(provider: TracerProvider) -> FastAPI:
    # FastAPI's own telemetry is on (its provider is given): it must stand down for both paths.
    app = FastAPI(telemetry={"tracer_provider": provider})

    @app.post("/items")
    async def create(item: Item) -> dict[str, Any]:
        return {"name": item.name}

    @app.get("/items/{item_id}")
    async def read(item_id: int) -> dict[str, int]:
        return {"id": item_id}

    return app


@dataclass
class Req:
    method: str
    path: str
    app: str = "starlette"
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    query: bytes = b""
    body: bytes = b""
    root_path: str = ""
    client: tuple[str, int] | None = ("127.0.0.1", 50000)
    server: tuple[str, int] | None = ("127.0.0.1", 8000)
    http_version: str = "1.1"
    scheme: str = "http"
    host: bytes | None = b"api.example.com:8000"  # None: no Host header

    def scope(self) -> dict[str, Any]:
        headers = [(b"user-agent", b"fidelity/1.0"), *self.headers]
        if self.host is not None:
            headers.insert(0, (b"host", self.host))
        if self.body:
            headers.append((b"content-length", str(len(self.body)).encode()))
        return {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": self.http_version,
            "method": self.method,
            "scheme": self.scheme,
            "path": self.root_path + self.path,
            "raw_path": (self.root_path + self.path).encode(),
            "query_string": self.query,
            "root_path": self.root_path,
            "headers": headers,
            "client": self.client,
            "server": self.server,
            "state": {},
        }


JSON = (b"content-type", b"application/json")
MATRIX = [
    Req("GET", "/items/42"),
    Req("HEAD", "/items/42"),
    Req("PUT", "/items/42", body=b"x"),
    Req("BREW", "/items/42"),  # unknown method: _OTHER, "HTTP /items/42", 405
    Req("OPTIONS", "/items/42"),
    Req("GET", "/items/7", query=b"page=2&Signature=abc&sig=x&AWSAccessKeyId=k&X-Goog-Signature=g"),
    Req("GET", "/items/7", query=b"%53ignature=abc&q=caf%C3%A9"),  # an escaped name is redacted too
    Req("GET", "/items/7", headers=[(b"host", b"user:secret@api.example.com")]),  # credentials in the URL
    Req("GET", "/items/1", headers=[(b"traceparent", SAMPLED), (b"tracestate", b"vendor=1,other=2")]),
    Req("GET", "/items/1", headers=[(b"traceparent", SAMPLED), (b"baggage", b"user=alice,tier=gold")]),
    Req("GET", "/items/1", headers=[(b"traceparent", UNSAMPLED)]),  # not recorded at all
    Req("GET", "/items/1", headers=[(b"x-tenant-id", b"acme"), (b"x-tenant-region", b"eu")]),
    Req("GET", "/items/1", headers=[(b"user-agent", b"Mozilla/5.0 (compatible; Googlebot/2.1)")]),
    Req("GET", "/items/1", headers=[(b"x-custom-header", b"caf\xe9"), (b"x-custom-header", b"two")]),
    Req("GET", "/items/1", headers=[(b"host", b"second.example.com")]),  # two Host headers
    Req("GET", "/items/1", host=b""),  # an empty Host header
    Req("GET", "/items/1", host=None),  # none: the server's address
    Req("GET", "/items/1", host=b"caf\xe9.example.com"),  # not UTF-8
    Req("GET", "/child"),
    Req("GET", "/boom"),
    Req("GET", "/unavailable"),
    Req("GET", "/stream"),
    Req("GET", "/later"),
    Req("GET", "/headers", headers=[(b"x-secret-token", b"t0k3n")]),
    Req("GET", "/v1/accounts/acc_1"),
    Req("GET", "/nope"),
    Req("GET", "/health"),  # excluded by OTEL_PYTHON_STARLETTE_EXCLUDED_URLS
    Req("GET", "/hook-fails"),
    Req("GET", "/items/5", root_path="/api"),
    Req("GET", "/items/5", client=("::1", 50001), server=("::1", 8000)),
    Req("GET", "/items/5", client=None, server=None),
    Req("GET", "/items/5", server=("127.0.0.1", 80), scheme="https", http_version="2"),
    Req("POST", "/items", "fastapi", [JSON], body=b'{"name": "w", "price": 1.5}'),
    Req("POST", "/items", "fastapi", [JSON], body=b'{"name": 1}'),  # 422
    Req("GET", "/items/3", "fastapi"),
    Req("GET", "/items/x", "fastapi"),  # 422 on a path parameter
]


@dataclass
class Path:
    """One way of instrumenting the two apps, with its own tracer provider and exporter."""

    apps: dict[str, Any]
    exporter: InMemorySpanExporter
    setups: list[Instrumentation]


def build(lean: bool, hub_url: str) -> Path:
    provider = TracerProvider()
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    apps: dict[str, Any] = {"starlette": starlette_app(provider), "fastapi": fastapi_app(provider)}
    setups = []
    for app in apps.values():
        extra: dict[str, Any] = {} if lean else {"otel_metrics": True, "meter_provider": NoOpMeterProvider()}
        setup = instrument_app(
            app,
            client_id=str(uuid.uuid4()),
            hub_base_url=hub_url,
            tracer_provider=provider,
            sync_interval=3600,
            server_request_hook=hook,
            **extra,
        )
        assert setup is not None
        setups.append(setup)
        uses_lean = any(m.cls is ServerSpanMiddleware for m in app.user_middleware)  # type: ignore[comparison-overlap]
        assert uses_lean is lean
    return Path(apps, exporter, setups)


async def call(app: Any, req: Req) -> tuple[list[dict[str, Any]], str | None]:
    sent: list[dict[str, Any]] = []
    received = False

    async def receive() -> dict[str, Any]:
        nonlocal received
        if received:
            await asyncio.sleep(0)
            return {"type": "http.disconnect"}
        received = True
        return {"type": "http.request", "body": req.body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append({k: list(v) if k == "headers" else v for k, v in message.items()})

    try:
        await app(req.scope(), receive, send)
    except Exception as exc:  # the plain Starlette app re-raises after its 500 response
        return sent, repr(exc)
    return sent, None


_OWN_FRAMES = re.compile(
    r'  File "[^"]*/(opentelemetry|apitally_otel)/[^"]*", line \d+, in [^\n]*\n(    [^\n]*\n)*'
)


def _event(event: Any) -> tuple[str, list[tuple[str, Any]]]:
    attributes = []
    for key, value in (event.attributes or {}).items():
        if key == "exception.stacktrace":
            # The middleware's own frames differ (contrib's and ours); the app's must not.
            value = _OWN_FRAMES.sub("", value)
        attributes.append((key, value))
    return event.name, attributes


def describe(spans: list[ReadableSpan]) -> list[dict[str, Any]]:
    ids = {s.context.span_id: i for i, s in enumerate(spans) if s.context is not None}
    local_traces = {s.context.trace_id for s in spans if s.context is not None and s.parent is None}
    out = []
    for span in spans:
        assert span.context is not None
        parent = span.parent
        out.append(
            {
                "name": span.name,
                "kind": span.kind,
                "status": (span.status.status_code, span.status.description),
                "attributes": list((span.attributes or {}).items()),
                "events": [_event(e) for e in span.events],
                "links": list(span.links),
                "parent": (
                    None
                    if parent is None
                    else ("remote", parent.trace_id, parent.span_id, parent.trace_flags)
                    if parent.is_remote
                    else ("local", ids.get(parent.span_id))
                ),
                "trace_id": "local" if span.context.trace_id in local_traces else span.context.trace_id,
                "trace_state": span.context.trace_state,
                "trace_flags": span.context.trace_flags,
                "schema_url": span.instrumentation_scope.schema_url if span.instrumentation_scope else None,
                "resource": dict(span.resource.attributes),
                "dropped": (span.dropped_attributes, span.dropped_events, span.dropped_links),
            }
        )
    return out


def _response(sent: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for message in sent:
        message = dict(message)
        headers = []
        for name, value in message.pop("headers", None) or []:
            if name == b"traceresponse":  # ids of different spans: the format and flags must agree
                value = re.sub(rb"^00-[0-9a-f]{32}-[0-9a-f]{16}-", b"00-TRACEID-SPANID-", value)
            headers.append((name, value))
        out.append({**message, "headers": headers})
    return out


@pytest.fixture
def reset_semconv() -> Iterator[None]:
    _OpenTelemetrySemanticConventionStability._initialized = False
    yield
    _OpenTelemetrySemanticConventionStability._initialized = False  # the next reader sees its env


@pytest.fixture(params=["w3c", "w3c+tenant"])
def global_propagators(request: pytest.FixtureRequest) -> Iterator[None]:
    """The default W3C propagators (requests without their headers skip them on the lean path), and
    the same with a propagator of our own (on every request)."""
    textmap = propagate.get_global_textmap()
    response = get_global_response_propagator()  # type: ignore[no-untyped-call]
    propagators: list[Any] = [TraceContextTextMapPropagator(), W3CBaggagePropagator()]
    if request.param == "w3c+tenant":
        propagators.append(TenantPropagator())
    propagate.set_global_textmap(CompositePropagator(propagators))
    yield
    propagate.set_global_textmap(textmap)
    set_global_response_propagator(response)  # type: ignore[no-untyped-call]


HEADER_CAPTURE = {
    "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST": "x-custom-.*,User-Agent,x-secret-.*",
    "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_RESPONSE": "content-type,x-resp,set-cookie,x-secret-.*",
    "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SANITIZE_FIELDS": ".*secret.*,set-cookie",
}


@pytest.mark.parametrize("headers", [False, True], ids=["", "header-capture"])
@pytest.mark.parametrize("mode", ["", "http", "http/dup"], ids=["default", "http", "http-dup"])
@pytest.mark.usefixtures("reset_semconv", "global_propagators")
def test_lean_span_equals_contribs(
    mode: str, headers: bool, monkeypatch: pytest.MonkeyPatch, recording_hub: tuple[RecordingHub, str]
) -> None:
    _, hub_url = recording_hub
    if mode:
        monkeypatch.setenv("OTEL_SEMCONV_STABILITY_OPT_IN", mode)
    if headers:
        for name, value in HEADER_CAPTURE.items():
            monkeypatch.setenv(name, value)
        set_global_response_propagator(TraceResponsePropagator())  # type: ignore[no-untyped-call]
    monkeypatch.setenv("OTEL_PYTHON_STARLETTE_EXCLUDED_URLS", "/health")
    monkeypatch.setenv("OTEL_PYTHON_EXCLUDED_URLS", "/v1/accounts/acc_1")  # shadowed by the STARLETTE one
    contrib, lean = build(False, hub_url), build(True, hub_url)
    loop = asyncio.new_event_loop()
    try:
        for req in MATRIX:
            results = []
            for path in (contrib, lean):
                path.exporter.clear()
                sent, error = loop.run_until_complete(call(path.apps[req.app], req))
                results.append((describe(list(path.exporter.get_finished_spans())), _response(sent), error))
            label = f"{req.method} {req.root_path}{req.path}?{req.query!r} {req.headers}"
            assert results[1] == results[0], label  # spans, response messages, exception
            expect_spans = req.path != "/health" and UNSAMPLED not in dict(req.headers).values()
            assert bool(results[0][0]) is expect_spans, label  # the matrix tests what it means to
    finally:
        loop.close()
        for path in (contrib, lean):
            for setup in path.setups:
                setup.shutdown()


@pytest.mark.usefixtures("reset_semconv")
def test_a_query_string_that_is_not_utf8_is_served(recording_hub: tuple[RecordingHub, str]) -> None:
    """Where contrib's middleware raises (and the app answers 500), the lean one serves the request."""
    _, hub_url = recording_hub
    lean = build(True, hub_url)
    loop = asyncio.new_event_loop()
    try:
        request = Req("GET", "/items/7", query=b"q=\xff")
        sent, error = loop.run_until_complete(call(lean.apps["starlette"], request))
    finally:
        loop.close()
        for setup in lean.setups:
            setup.shutdown()
    assert error is None and sent[0]["status"] == 200
    (span,) = lean.exporter.get_finished_spans()
    assert (
        span.attributes is not None
        and span.attributes["http.url"] == "http://api.example.com:8000/items/7?q=\ufffd"
    )
