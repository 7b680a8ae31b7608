"""instrument_app in-process: providers, idempotency, bad configuration, existing instrumentation."""

from __future__ import annotations

import logging
import uuid

import httpx
import pytest
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from opentelemetry.sdk.metrics import MeterProvider as SdkMeterProvider
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from starlette.applications import Starlette
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

import apitally_otel
from apitally_otel import instrument_app
from tests.support.servers import RecordingHub, ServerThread


async def hello(request: Request) -> PlainTextResponse:
    return PlainTextResponse("hello")


def make_app() -> Starlette:
    return Starlette(routes=[Route("/hello", hello)])


def providers() -> tuple[TracerProvider, InMemorySpanExporter]:
    provider = TracerProvider()
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def request_counts(hub: RecordingHub) -> dict[tuple[object, ...], int]:
    out: dict[tuple[object, ...], int] = {}
    for payload in hub.of_kind("sync"):
        for item in payload["requests"]:
            key = (item["consumer"], item["method"], item["path"], item["status_code"])
            out[key] = out.get(key, 0) + item["request_count"]
    return out


def test_serves_counts_and_exports_one_server_span(recording_hub: tuple[RecordingHub, str]) -> None:
    hub, hub_url = recording_hub
    app = make_app()
    provider, spans = providers()
    setup = instrument_app(
        app, client_id=str(uuid.uuid4()), hub_base_url=hub_url, tracer_provider=provider, sync_interval=3600
    )
    assert setup is not None
    assert instrument_app(app, client_id=str(uuid.uuid4()), hub_base_url=hub_url) is setup  # idempotent
    with ServerThread(app) as url:
        for _ in range(5):
            assert httpx.get(url + "/hello").text == "hello"
    # lifespan shutdown made the final sync; the startup message went out at startup
    assert request_counts(hub) == {(None, "GET", "/hello", 200): 5}
    assert len(hub.of_kind("startup")) == 1
    server_spans = [s for s in spans.get_finished_spans() if s.kind is SpanKind.SERVER]
    assert len(server_spans) == 5  # the user's exporter sees every span, once
    assert server_spans[0].attributes is not None and server_spans[0].attributes["http.route"] == "/hello"
    assert server_spans[0].attributes["http.response.body.size"] == 5
    assert not [s for s in spans.get_finished_spans() if s.name.endswith(("receive", "send"))]
    setup.shutdown()


def test_invalid_configuration_leaves_the_app_untouched(caplog: pytest.LogCaptureFixture) -> None:
    for kwargs in ({"client_id": "not-a-uuid"}, {"client_id": str(uuid.uuid4()), "env": "bad env!"}, {}):
        app = make_app()
        with caplog.at_level(logging.ERROR):
            caplog.clear()
            assert instrument_app(app, **kwargs) is None  # type: ignore[arg-type]
        assert len(caplog.records) == 1 and "apitally-otel disabled" in caplog.records[0].getMessage()
        assert app.user_middleware == []
        with ServerThread(app) as url:
            assert httpx.get(url + "/hello").text == "hello"


def test_disabled_by_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APITALLY_DISABLED", "true")
    monkeypatch.setenv("APITALLY_CLIENT_ID", str(uuid.uuid4()))
    app = make_app()
    assert instrument_app(app) is None
    assert app.user_middleware == []


def test_settings_from_env(monkeypatch: pytest.MonkeyPatch, recording_hub: tuple[RecordingHub, str]) -> None:
    _, hub_url = recording_hub
    client_id = str(uuid.uuid4())
    monkeypatch.setenv("APITALLY_CLIENT_ID", client_id.upper())
    monkeypatch.setenv("APITALLY_ENV", "staging")
    monkeypatch.setenv("APITALLY_HUB_BASE_URL", hub_url + "/")
    setup = instrument_app(make_app(), tracer_provider=TracerProvider(), sync_interval=3600)
    assert setup is not None and setup.exporter.settings is not None
    assert setup.exporter.settings.hub_url == f"{hub_url}/v2/{client_id}/staging"
    setup.shutdown()


def test_already_instrumented_app_gets_no_second_server_span(recording_hub: tuple[RecordingHub, str]) -> None:
    hub, hub_url = recording_hub
    app = make_app()
    provider, spans = providers()
    app.add_middleware(OpenTelemetryMiddleware, tracer_provider=provider)  # instrumented by hand
    setup = instrument_app(app, client_id=str(uuid.uuid4()), hub_base_url=hub_url, tracer_provider=provider)
    assert setup is not None
    assert [m.cls for m in app.user_middleware].count(OpenTelemetryMiddleware) == 1  # type: ignore[comparison-overlap]
    with ServerThread(app) as url:
        for _ in range(3):
            httpx.get(url + "/hello")
    assert request_counts(hub) == {(None, "GET", "/hello", 200): 3}
    assert len([s for s in spans.get_finished_spans() if s.kind is SpanKind.SERVER]) == 3
    setup.shutdown()


def test_set_consumer_from_base_http_middleware(recording_hub: tuple[RecordingHub, str]) -> None:
    hub, hub_url = recording_hub

    class Auth(BaseHTTPMiddleware):
        async def dispatch(self, request: Request, call_next):  # type: ignore[no-untyped-def]
            apitally_otel.set_consumer(request.headers.get("x-user"), group="mw")
            response: Response = await call_next(request)
            return response

    app = make_app()
    app.add_middleware(Auth)
    setup = instrument_app(
        app, client_id=str(uuid.uuid4()), hub_base_url=hub_url, tracer_provider=TracerProvider()
    )
    assert setup is not None
    with ServerThread(app) as url:
        httpx.get(url + "/hello", headers={"x-user": "u1"})
        httpx.get(url + "/hello")
    assert request_counts(hub) == {("u1", "GET", "/hello", 200): 1, (None, "GET", "/hello", 200): 1}
    consumers = [c for p in hub.of_kind("sync") for c in p["consumers"]]
    assert consumers == [{"identifier": "u1", "name": None, "group": "mw"}]
    setup.shutdown()


def test_set_consumer_outside_a_request_is_harmless() -> None:
    apitally_otel.set_consumer("nobody")
    apitally_otel.set_consumer(None)
    apitally_otel.set_consumer(object())


@pytest.mark.xfail(
    not hasattr(SdkMeterProvider, "add_metric_reader"),
    reason="SDK 1.39 (requirements/oldest.txt) cannot add a reader to an existing MeterProvider",
    strict=True,
)
def test_existing_pipeline_with_fastapi_instrumentor(recording_hub: tuple[RecordingHub, str]) -> None:
    from fastapi import FastAPI
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    hub, hub_url = recording_hub
    provider, spans = providers()
    user_reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[user_reader])
    app = FastAPI()

    @app.get("/things/{thing_id}")
    async def thing(thing_id: int) -> dict[str, int]:
        return {"id": thing_id}

    @app.get("/crash")
    async def crash() -> None:
        raise ZeroDivisionError("x")

    FastAPIInstrumentor.instrument_app(app, tracer_provider=provider, meter_provider=meter_provider)
    setup = instrument_app(
        app,
        client_id=str(uuid.uuid4()),
        hub_base_url=hub_url,
        tracer_provider=provider,
        meter_provider=meter_provider,
    )
    assert setup is not None and not setup.owns_meter_provider
    with ServerThread(app) as url:
        for i in range(4):
            assert httpx.get(f"{url}/things/{i}").status_code == 200
        assert httpx.get(f"{url}/crash").status_code == 500
    assert request_counts(hub) == {
        (None, "GET", "/things/{thing_id}", 200): 4,
        (None, "GET", "/crash", 500): 1,
    }
    server_spans = [s for s in spans.get_finished_spans() if s.kind is SpanKind.SERVER]
    assert len(server_spans) == 5  # one SERVER span per request, all still exported
    assert {s.attributes["http.route"] for s in server_spans if s.attributes} == {
        "/things/{thing_id}",
        "/crash",
    }
    # The user's own metric reader still gets the instrumentor's metrics, untouched by ours.
    names = {
        m.name
        for rm in user_reader.get_metrics_data().resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
    }
    assert "http.server.duration" in names or "http.server.request.duration" in names
    server_errors = [e for p in hub.of_kind("sync") for e in p["server_errors"]]
    assert [e["type"] for e in server_errors] == ["builtins.ZeroDivisionError"]
    setup.shutdown()


def test_invalid_proxy_is_one_error_and_the_app_is_untouched(caplog: pytest.LogCaptureFixture) -> None:
    app = make_app()
    with caplog.at_level(logging.ERROR):
        assert instrument_app(app, client_id=str(uuid.uuid4()), proxy="not a url") is None
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == [
        next(r.getMessage() for r in caplog.records if "invalid proxy" in r.getMessage())
    ]
    assert app.user_middleware == []


def test_otel_prefixed_aliases_configure_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """`opentelemetry-instrument --apitally_client_id ...` sets OTEL_APITALLY_CLIENT_ID."""
    client_id = str(uuid.uuid4())
    monkeypatch.setenv("OTEL_APITALLY_CLIENT_ID", client_id)
    monkeypatch.setenv("OTEL_APITALLY_ENV", "edge")
    monkeypatch.setenv("OTEL_APITALLY_HUB_BASE_URL", "http://127.0.0.1:9")  # refused at once: no hub here
    setup = instrument_app(make_app(), tracer_provider=TracerProvider(), sync_interval=3600)
    assert setup is not None and setup.exporter.settings is not None
    settings = setup.exporter.settings
    assert (settings.client_id, settings.env, settings.hub_base_url) == (
        client_id,
        "edge",
        "http://127.0.0.1:9",
    )
    setup.shutdown()


def test_first_request_into_a_mounted_starlette_app_gets_the_full_template(
    recording_hub: tuple[RecordingHub, str],
) -> None:
    """A mounted Starlette app writes itself into scope["app"]: the route map must come from the
    app the request entered, even when the very first request goes through the mount."""
    hub, hub_url = recording_hub
    from starlette.routing import Mount

    legacy = Starlette(routes=[Route("/s/{n}", hello)])
    app = Starlette(routes=[Route("/hello", hello), Mount("/legacy", legacy)])
    setup = instrument_app(
        app, client_id=str(uuid.uuid4()), hub_base_url=hub_url, tracer_provider=TracerProvider()
    )
    assert setup is not None
    with ServerThread(app) as url:
        assert httpx.get(url + "/legacy/s/1").status_code == 200
        assert httpx.get(url + "/hello").status_code == 200
    assert request_counts(hub) == {(None, "GET", "/legacy/s/{n}", 200): 1, (None, "GET", "/hello", 200): 1}
    setup.shutdown()
