"""The classic ``apitally`` client's middleware API (``apitally_otel.starlette`` / ``.fastapi``):
signatures, deprecations, request-logging keywords, callbacks, and where it sits in the stack."""

from __future__ import annotations

import inspect
import logging
import uuid
import warnings
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
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route, Router

import apitally_otel
from apitally_otel import _classic
from apitally_otel import fastapi as classic_fastapi
from apitally_otel import starlette as classic_starlette
from apitally_otel._request_log.log_item import CONSUMER_KEY, ROUTE_KEY
from apitally_otel.request_logging import ResponseInfo
from tests.support.servers import RecordingHub, ServerThread

CLASSIC_PARAMETERS = [
    "self",
    "app",
    "client_id",
    "env",
    "app_version",
    "openapi_url",
    "consumer_callback",
    "capture_client_disconnects",
    "proxy",
    "identify_consumer_callback",
    "request_logging_config",
    "kwargs",
]
"""``apitally.starlette.ApitallyMiddleware.__init__`` in apitally 0.25.1, in order."""

CLASSIC_DEFAULTS = {
    "env": "dev",
    "app_version": None,
    "openapi_url": "/openapi.json",
    "consumer_callback": None,
    "capture_client_disconnects": False,
    "proxy": None,
    "identify_consumer_callback": None,
    "request_logging_config": None,
}

CLASSIC_CONFIG_FIELDS = [
    "enabled",
    "log_query_params",
    "log_request_headers",
    "log_request_body",
    "log_response_headers",
    "log_response_body",
    "log_exception",
    "capture_logs",
    "capture_traces",
    "mask_query_params",
    "mask_headers",
    "mask_body_fields",
    "mask_request_body_callback",
    "mask_response_body_callback",
    "exclude_paths",
    "exclude_callback",
]
"""``apitally.client.request_logging.RequestLoggingConfig``'s fields in apitally 0.25.1, in order."""


@pytest.fixture(autouse=True)
def spans(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    """A global SDK tracer provider per test (the classic API takes none), reset afterwards."""
    reset_trace_globals()
    provider = TracerProvider()
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    yield exporter
    reset_trace_globals()


@pytest.fixture
def hub(recording_hub: tuple[RecordingHub, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[RecordingHub]:
    """The recording hub, as ``APITALLY_HUB_BASE_URL``; what the test set up is shut down after it."""
    monkeypatch.setenv("APITALLY_HUB_BASE_URL", recording_hub[1])
    made: list[Any] = []
    remember = _classic._remember

    def remember_and_keep(router: Any, setup: Any) -> None:
        made.append(setup)  # the test's app may be gone before its pipeline is shut down
        remember(router, setup)

    monkeypatch.setattr(_classic, "_remember", remember_and_keep)
    yield recording_hub[0]
    for setup in made:
        if setup.instrumentation is not None:
            setup.instrumentation.shutdown()


def request_counts(hub: RecordingHub) -> dict[tuple[object, ...], int]:
    out: dict[tuple[object, ...], int] = {}
    for payload in hub.of_kind("sync"):
        for item in payload["requests"]:
            key = (item["consumer"], item["method"], item["path"], item["status_code"])
            out[key] = out.get(key, 0) + item["request_count"]
    return out


def server_spans(exporter: InMemorySpanExporter) -> list[Any]:
    return [s for s in exporter.get_finished_spans() if s.kind is SpanKind.SERVER]


async def hello(request: Request) -> PlainTextResponse:
    return PlainTextResponse("hello")


async def item(request: Request) -> JSONResponse:
    return JSONResponse({"id": request.path_params["item_id"]})


class Tagging(BaseHTTPMiddleware):
    async def dispatch(self, request: Request, call_next: Any) -> Response:
        response: Response = await call_next(request)
        response.headers["x-tag"] = "1"
        return response


def make_app() -> Starlette:
    return Starlette(
        routes=[
            Route("/hello", hello),
            Mount("/api", routes=[Mount("/v1", app=Router(routes=[Route("/items/{item_id}", item)]))]),
        ]
    )


def client_id() -> str:
    return str(uuid.uuid4())


# -- the API -------------------------------------------------------------------------------------


def test_exports_and_signature_match_the_classic_client() -> None:
    for module in (classic_starlette, classic_fastapi):
        assert module.__all__ == [
            "ApitallyConsumer",
            "ApitallyMiddleware",
            "RequestLoggingConfig",
            "set_consumer",
        ]
        for name in module.__all__:
            assert hasattr(module, name)
    parameters = inspect.signature(classic_starlette.ApitallyMiddleware.__init__).parameters
    assert list(parameters) == CLASSIC_PARAMETERS
    assert {k: p.default for k, p in parameters.items() if k in CLASSIC_DEFAULTS} == CLASSIC_DEFAULTS
    assert parameters["kwargs"].kind is inspect.Parameter.VAR_KEYWORD
    assert list(inspect.signature(classic_starlette.RequestLoggingConfig).parameters) == CLASSIC_CONFIG_FIELDS
    assert list(inspect.signature(classic_starlette.set_consumer).parameters) == [
        "request",
        "identifier",
        "name",
        "group",
    ]
    assert list(inspect.signature(classic_starlette.ApitallyConsumer).parameters) == [
        "identifier",
        "name",
        "group",
    ]


def test_deprecated_arguments_warn_as_in_the_classic_client(hub: RecordingHub) -> None:
    app = make_app()
    with pytest.warns(DeprecationWarning, match="'identify_consumer_callback' parameter is deprecated"):
        classic_starlette.ApitallyMiddleware(app, client_id(), identify_consumer_callback=lambda r: "x")
    app = make_app()
    with pytest.warns(DeprecationWarning, match="'request_logging_config' parameter is deprecated"):
        classic_starlette.ApitallyMiddleware(
            app, client_id(), request_logging_config=classic_starlette.RequestLoggingConfig(enabled=True)
        )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        classic_starlette.ApitallyMiddleware(make_app(), client_id(), consumer_callback=lambda r: "x")


def test_deprecated_identify_consumer_callback_still_identifies(hub: RecordingHub) -> None:
    app = make_app()
    with pytest.warns(DeprecationWarning):
        app.add_middleware(
            classic_starlette.ApitallyMiddleware,
            client_id=client_id(),
            identify_consumer_callback=lambda request: request.headers.get("x-user"),
        )
        with ServerThread(app) as url:
            httpx.get(url + "/hello", headers={"x-user": "old-style"})
    assert request_counts(hub) == {("old-style", "GET", "/hello", 200): 1}


def test_flat_keywords_map_onto_our_config() -> None:
    def mask_request(request: dict[str, Any]) -> bytes | None:
        return None

    config = classic_starlette.RequestLoggingConfig.from_kwargs(
        {
            "enable_request_logging": True,
            "log_request_body": True,
            "log_response_body": True,
            "log_request_headers": True,
            "capture_logs": True,
            "mask_headers": ["x-secret"],
            "mask_query_params": ["key"],
            "mask_body_fields": ["card"],
            "exclude_paths": ["/internal/"],
            "mask_request_body_callback": mask_request,
        }
    )
    assert isinstance(config, apitally_otel.RequestLoggingConfig)
    assert config.enabled and config.log_request_body and config.log_response_body and config.capture_logs
    assert config.log_request_headers and config.log_query_params and not config.capture_traces
    assert config.mask_headers == ("x-secret",) and config.mask_query_params == ("key",)
    assert config.mask_body_fields == ("card",) and config.exclude_paths == ("/internal/",)
    assert config.mask_request_body is not None and config.mask_response_body is None
    assert not classic_starlette.RequestLoggingConfig().enabled


def test_classic_callbacks_get_the_classic_dicts() -> None:
    seen: dict[str, Any] = {}

    def mask_request(request: dict[str, Any]) -> bytes | None:
        seen["mask_request"] = request
        return b"{}"

    def mask_response(request: dict[str, Any], response: dict[str, Any]) -> bytes | None:
        seen["mask_response"] = (request, response)
        return None

    def exclude(request: dict[str, Any], response: dict[str, Any]) -> bool:
        seen["exclude"] = (request, response)
        return response["status_code"] == 404

    config = classic_starlette.RequestLoggingConfig(
        enabled=True,
        mask_request_body_callback=mask_request,
        mask_response_body_callback=mask_response,
        exclude_callback=exclude,
    )
    request = Request(
        {
            "type": "http",
            "method": "POST",
            "path": "/api/items/1",
            "root_path": "/api",
            "query_string": b"q=1",
            "headers": [(b"host", b"example.org"), (b"content-length", b"2")],
            ROUTE_KEY: "/api/items/{item_id}",
            CONSUMER_KEY: "c1",
        }
    )
    request._body = b"{}"
    response = ResponseInfo(404, [("content-type", "application/json")], b'{"x":1}', 7, 0.25)
    assert config.mask_request_body is not None and config.mask_response_body is not None
    assert config.exclude_callback is not None
    assert config.mask_request_body(request) == b"{}"
    assert config.mask_response_body(request, response) is None
    assert config.exclude_callback(request, response) is True
    req = seen["mask_request"]
    assert set(req) == {"timestamp", "method", "path", "url", "headers", "size", "consumer", "body"}
    assert (req["method"], req["path"], req["size"], req["consumer"], req["body"]) == (
        "POST",
        "/api/items/{item_id}",
        2,
        "c1",
        b"{}",
    )
    assert req["url"] == "http://example.org/api/items/1?q=1"
    assert ("content-length", "2") in req["headers"]
    res = seen["exclude"][1]
    assert res == {
        "status_code": 404,
        "response_time": 0.25,
        "headers": [("content-type", "application/json")],
        "size": 7,
        "body": b'{"x":1}',
    }


def test_set_consumer_and_consumer_object() -> None:
    request = Request({"type": "http", "method": "GET", "path": "/", "headers": []})
    classic_starlette.set_consumer(request, "id-1", name="One", group="G")
    assert request.state.apitally_consumer == apitally_otel.Consumer("id-1", "One", "G")


# -- in an app -----------------------------------------------------------------------------------


@pytest.mark.parametrize("position", ["first", "between", "last"])
def test_anywhere_in_the_stack_one_server_span_counted_once(
    position: str, hub: RecordingHub, spans: InMemorySpanExporter
) -> None:
    app = make_app()
    if position == "first":
        app.add_middleware(classic_starlette.ApitallyMiddleware, client_id=client_id(), env="prod")
    app.add_middleware(Tagging)
    if position == "between":
        app.add_middleware(classic_starlette.ApitallyMiddleware, client_id=client_id(), env="prod")
    app.add_middleware(Tagging)
    if position == "last":
        app.add_middleware(classic_starlette.ApitallyMiddleware, client_id=client_id(), env="prod")
    with ServerThread(app) as url:
        for _ in range(3):
            response = httpx.get(url + "/hello")
            assert response.text == "hello" and response.headers["x-tag"] == "1"
        assert httpx.get(url + "/api/v1/items/7").json() == {"id": "7"}
        assert httpx.get(url + "/nowhere").status_code == 404
    assert request_counts(hub) == {
        (None, "GET", "/hello", 200): 3,
        (None, "GET", "/api/v1/items/{item_id}", 200): 1,
    }
    assert len(hub.of_kind("startup")) == 1
    assert len(server_spans(spans)) == 5


def test_consumers_from_callback_state_and_set_consumer(hub: RecordingHub) -> None:
    async def by_state(request: Request) -> PlainTextResponse:
        request.state.apitally_consumer = "from-state"
        return PlainTextResponse("s")

    async def by_set_consumer(request: Request) -> PlainTextResponse:
        classic_fastapi.set_consumer(request, "from-set", name="Set", group="G1")
        return PlainTextResponse("c")

    def callback(request: Request) -> classic_starlette.ApitallyConsumer | None:
        user = request.headers.get("x-user")
        return (
            classic_starlette.ApitallyConsumer(user, name=f"User {user}", group="Callers") if user else None
        )

    app = Starlette(
        routes=[Route("/hello", hello), Route("/state", by_state), Route("/set", by_set_consumer)]
    )
    app.add_middleware(
        classic_starlette.ApitallyMiddleware, client_id=client_id(), consumer_callback=callback
    )
    with ServerThread(app) as url:
        httpx.get(url + "/hello", headers={"x-user": "u1"})
        httpx.get(url + "/state", headers={"x-user": "u1"})  # request.state wins, as in the classic client
        httpx.get(url + "/set")
    assert request_counts(hub) == {
        ("u1", "GET", "/hello", 200): 1,
        ("from-state", "GET", "/state", 200): 1,
        ("from-set", "GET", "/set", 200): 1,
    }
    consumers = sorted(
        (c["identifier"], c["name"], c["group"]) for p in hub.of_kind("sync") for c in p["consumers"]
    )
    assert consumers == [("from-set", "Set", "G1"), ("u1", "User u1", "Callers")]


def test_stack_built_twice_is_set_up_once(hub: RecordingHub) -> None:
    app = make_app()
    app.add_middleware(Tagging)
    app.add_middleware(classic_starlette.ApitallyMiddleware, client_id=client_id())
    first = app.build_middleware_stack()
    second = app.build_middleware_stack()
    assert first is not second
    ours = [_find(stack, classic_starlette.ApitallyMiddleware) for stack in (first, second)]
    assert ours[0] is not ours[1]
    assert ours[0].instrumentation is not None and ours[0].instrumentation is ours[1].instrumentation
    for _ in range(2):
        app.middleware_stack = None  # each server start builds the stack again
        with ServerThread(app) as url:
            assert httpx.get(url + "/hello").text == "hello"
    assert len(hub.of_kind("startup")) == 1
    assert request_counts(hub) == {(None, "GET", "/hello", 200): 2}


def _find(app: Any, cls: type) -> Any:
    while not isinstance(app, cls):
        app = app.app
    return app


def test_already_instrumented_fastapi_app_one_span_counted_once(
    hub: RecordingHub, spans: InMemorySpanExporter
) -> None:
    from fastapi import APIRouter, FastAPI
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    app = FastAPI()
    router = APIRouter(prefix="/things")

    @router.get("/{thing_id}")
    async def thing(thing_id: int) -> dict[str, int]:
        return {"id": thing_id}

    app.include_router(router)
    FastAPIInstrumentor.instrument_app(app, tracer_provider=trace.get_tracer_provider())
    app.add_middleware(classic_fastapi.ApitallyMiddleware, client_id=client_id(), env="prod")
    with ServerThread(app) as url:
        for i in range(3):
            assert httpx.get(f"{url}/things/{i}").json() == {"id": i}
        assert httpx.get(f"{url}/things/x").status_code == 422
    assert request_counts(hub) == {
        (None, "GET", "/things/{thing_id}", 200): 3,
        (None, "GET", "/things/{thing_id}", 422): 1,
    }
    assert len(server_spans(spans)) == 4
    validation = [v for p in hub.of_kind("sync") for v in p["validation_errors"]]
    assert [v["loc"] for v in validation] == [["path", "thing_id"]]
    FastAPIInstrumentor.uninstrument_app(app)


@pytest.mark.parametrize("otel_outside", [True, False])
def test_with_contrib_middleware_by_hand_one_server_span(
    otel_outside: bool, hub: RecordingHub, spans: InMemorySpanExporter
) -> None:
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

    app = make_app()
    if not otel_outside:
        app.add_middleware(OpenTelemetryMiddleware)  # type: ignore[arg-type]
    app.add_middleware(classic_starlette.ApitallyMiddleware, client_id=client_id())
    if otel_outside:
        app.add_middleware(OpenTelemetryMiddleware)  # type: ignore[arg-type]
    with ServerThread(app) as url:
        for _ in range(2):
            assert httpx.get(url + "/hello").text == "hello"
    assert request_counts(hub) == {(None, "GET", "/hello", 200): 2}
    assert len(server_spans(spans)) == 2


def test_bad_configuration_is_one_log_line_and_the_app_serves(
    hub: RecordingHub, caplog: pytest.LogCaptureFixture, spans: InMemorySpanExporter
) -> None:
    app = make_app()
    app.add_middleware(classic_starlette.ApitallyMiddleware, client_id="not-a-uuid")
    with caplog.at_level(logging.WARNING, logger="apitally_otel"):
        with ServerThread(app) as url:
            assert httpx.get(url + "/hello").text == "hello"
        app.build_middleware_stack()
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "apitally-otel disabled" in errors[0].getMessage()
    assert hub.messages == [] and server_spans(spans) == []


def test_capture_client_disconnects_and_unknown_keywords_warn(
    hub: RecordingHub, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="apitally_otel"):
        classic_starlette.ApitallyMiddleware(
            make_app(),
            client_id(),
            capture_client_disconnects=True,
            log_everything=True,  # type: ignore[call-arg]
        )
    messages = [r.getMessage() for r in caplog.records]
    assert any("capture_client_disconnects is not supported" in m for m in messages)
    assert any("unknown keyword arguments: log_everything" in m for m in messages)


def test_proxy_as_httpx_proxy() -> None:
    assert _classic._proxy_url(httpx.Proxy("http://proxy.test:3128")) == "http://proxy.test:3128"
    assert _classic._proxy_url("http://proxy.test:3128") == "http://proxy.test:3128"
    assert _classic._proxy_url(None) is None
