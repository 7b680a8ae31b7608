"""The benchmark apps, the request scenarios and the variants (how each contender is wired in).

Imported by the worker and server scripts in every virtual environment (the project's and the
peers'), so only the standard library, Starlette, FastAPI and pydantic are imported at module level;
each variant imports its own library when it is set up.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, FastAPI
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route

CLIENT_ID = str(uuid.UUID(int=0x5EED))
WRITE_TOKEN = "apt_" + "b3nchmark" * 2 + "000000"  # the format apitally 1.0.0 checks
ENV = "bench"
APPS = ("starlette", "fastapi")
VARIANTS = (
    "bare",
    "otel",
    "apitally-otel",
    "apitally-otel-middleware",
    "apitally-otel-contrib",
    "apitally-otel-pipeline",
    "apitally-otel-auto",
    "apitally-1.0.0",
    "apitally-0.25.1",
)
VARIANT_LABELS = {
    "bare": "bare app",
    "otel": "contrib OpenTelemetryMiddleware (SDK tracer, exclude receive/send)",
    "apitally-otel": "apitally-otel instrument_app",
    "apitally-otel-middleware": "apitally-otel ApitallyMiddleware (the classic apitally API)",
    "apitally-otel-contrib": "apitally-otel on a hand-added contrib OpenTelemetryMiddleware",
    "apitally-otel-pipeline": "apitally-otel in an existing pipeline (contrib instrumentor)",
    "apitally-otel-auto": "apitally-otel zero-code (opentelemetry-instrument hook)",
    "apitally-1.0.0": "apitally 1.0.0 init(app)",
    "apitally-0.25.1": "apitally 0.25.1 ApitallyMiddleware",
}
PEER_VARIANTS = ("apitally-1.0.0", "apitally-0.25.1")  # each runs in its own virtual environment


@dataclass(frozen=True)
class Scenario:
    name: str
    app: str
    method: str
    path: str
    body: bytes = b""
    expect: int = 200
    headers: tuple[tuple[bytes, bytes], ...] = field(default=())


SCENARIOS = (
    Scenario("starlette GET /items/{id}", "starlette", "GET", "/items/42"),
    Scenario("starlette GET /v1/accounts/{id} (mount)", "starlette", "GET", "/v1/accounts/acc_123/orders/7"),
    Scenario(
        "fastapi POST /items (validated)",
        "fastapi",
        "POST",
        "/items",
        b'{"name": "widget", "price": 9.5, "tags": ["a", "b"]}',
        200,
        ((b"content-type", b"application/json"),),
    ),
    Scenario(
        "fastapi POST /items (422)",
        "fastapi",
        "POST",
        "/items",
        b'{"name": 1, "tags": "x"}',
        422,
        ((b"content-type", b"application/json"),),
    ),
)


def build_starlette() -> Starlette:
    """~20 routes, one of them a mounted sub-app with its own routes."""

    async def item(request: Request) -> Response:
        return JSONResponse({"id": request.path_params["item_id"], "name": "item"})

    async def ok(request: Request) -> Response:
        return JSONResponse({"ok": True, "params": request.path_params})

    async def text(request: Request) -> Response:
        return PlainTextResponse("ok")

    account_routes = [
        Route("/accounts", ok),
        Route("/accounts/{account_id}", ok),
        Route("/accounts/{account_id}/orders", ok),
        Route("/accounts/{account_id}/orders/{order_id:int}", ok),
        Route("/invoices/{invoice_id}", ok),
    ]
    routes = [
        Route("/", text),
        Route("/health", text),
        Route("/users", ok, methods=["GET", "POST"]),
        Route("/users/{user_id}", ok, methods=["GET", "PUT", "DELETE"]),
        Route("/users/{user_id}/orders", ok),
        Route("/orders", ok),
        Route("/orders/{order_id}", ok),
        Route("/products", ok),
        Route("/products/{sku}", ok),
        Route("/search", ok),
        Route("/reports/{year:int}/{month:int}", ok),
        Route("/files/{path:path}", ok),
        Route("/items", ok, methods=["GET", "POST"]),
        Route("/items/{item_id:int}", item, methods=["GET", "PUT", "DELETE"]),
        Mount("/v1", routes=account_routes),
    ]
    return Starlette(routes=routes)


class Item(BaseModel):
    name: str
    price: float
    tags: list[str] = []


def build_fastapi() -> FastAPI:
    app = FastAPI()
    router = APIRouter(prefix="/v1")

    @app.post("/items")
    async def create_item(item: Item) -> dict[str, Any]:
        return {"name": item.name, "price": item.price, "tags": item.tags}

    @app.get("/items/{item_id}")
    async def read_item(item_id: int, q: str | None = None) -> dict[str, Any]:
        return {"id": item_id, "q": q}

    @app.get("/health")
    async def health() -> dict[str, bool]:
        return {"ok": True}

    @router.get("/users/{user_id}")
    async def read_user(user_id: str) -> dict[str, str]:
        return {"id": user_id}

    app.include_router(router)
    return app


@dataclass
class Handle:
    """A wired-up app, and what the benchmark may ask of its variant."""

    app: Any
    flush: Callable[[], None] = lambda: None  # settle telemetry still pending (counted in the timing)
    recorded: Callable[[], int | None] = lambda: None  # requests the variant has counted, if known


def setup(variant: str, app_name: str, sink_url: str, sync_interval: float = 3600.0) -> Handle:
    """Build ``app_name`` and instrument it as ``variant``; all telemetry goes to ``sink_url``."""
    os.environ["APITALLY_HUB_BASE_URL"] = sink_url  # apitally 0.25.1 reads it at import
    os.environ["APITALLY_OTLP_ENDPOINT"] = sink_url  # apitally 1.0.0
    os.environ.pop("PYTEST_CURRENT_TEST", None)  # apitally 1.0.0 stays inactive under pytest
    app = build_starlette() if app_name == "starlette" else build_fastapi()
    if variant == "bare":
        return Handle(app)
    if variant == "otel":
        return _otel(app)
    if variant == "apitally-otel":
        return _apitally_otel(app, sink_url, sync_interval)
    if variant == "apitally-otel-middleware":
        return _apitally_otel_middleware(app, app_name, sync_interval)
    if variant == "apitally-otel-contrib":
        return _apitally_otel(app, sink_url, sync_interval, composed=True)
    if variant == "apitally-otel-pipeline":
        return _apitally_otel_pipeline(app, app_name, sink_url, sync_interval)
    if variant == "apitally-otel-auto":
        return _apitally_otel_auto(app, app_name, sink_url, sync_interval)
    if variant == "apitally-1.0.0":
        return _apitally_1(app)
    if variant == "apitally-0.25.1":
        return _apitally_0(app, app_name)
    raise ValueError(f"unknown variant {variant!r}")


def _otel(app: Any) -> Handle:
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
    from opentelemetry.sdk.trace import TracerProvider

    provider = TracerProvider()
    app.add_middleware(OpenTelemetryMiddleware, tracer_provider=provider, exclude_spans=["receive", "send"])
    return Handle(app, _flusher(provider))


def _apitally_otel(app: Any, sink_url: str, sync_interval: float, *, composed: bool = False) -> Handle:
    """``instrument_app``: the lean SERVER-span middleware; ``composed``: the app already has contrib's
    middleware (configured as the ``otel`` baseline), so ``instrument_app`` adds its capture inside."""
    from opentelemetry.sdk.trace import TracerProvider

    from apitally_otel import instrument_app

    provider = TracerProvider()
    if composed:
        from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
        from opentelemetry.metrics import NoOpMeterProvider

        app.add_middleware(
            OpenTelemetryMiddleware,
            tracer_provider=provider,
            meter_provider=NoOpMeterProvider(),
            exclude_spans=["receive", "send"],
        )
    setup = instrument_app(
        app,
        client_id=CLIENT_ID,
        env=ENV,
        hub_base_url=sink_url,
        sync_interval=sync_interval,
        tracer_provider=provider,
    )
    assert setup is not None, "instrument_app refused the configuration"
    return Handle(app, _flusher(provider), _recorded(setup.span_processor))


def _apitally_otel_middleware(app: Any, app_name: str, sync_interval: float) -> Handle:
    """``app.add_middleware(ApitallyMiddleware, client_id=..., env=...)`` as the classic client's
    setup guide writes it (the hub URL from ``APITALLY_HUB_BASE_URL``); set up when Starlette builds
    the stack, on the same lean path as ``instrument_app``."""
    from apitally_otel import _classic

    os.environ["APITALLY_SYNC_INTERVAL"] = str(sync_interval)
    if app_name == "fastapi":
        from apitally_otel.fastapi import ApitallyMiddleware
    else:
        from apitally_otel.starlette import ApitallyMiddleware
    app.add_middleware(ApitallyMiddleware, client_id=CLIENT_ID, env=ENV)

    def instrumentation() -> Any:
        setup = _classic._setup_for(app.router)
        assert setup is not None and setup.instrumentation is not None, "the middleware was not set up"
        return setup.instrumentation

    def flush() -> None:
        _flusher(instrumentation().tracer_provider)()

    def recorded() -> int:
        return _recorded(instrumentation().span_processor)()

    return Handle(app, flush, recorded)


def _recorded(processor: Any) -> Callable[[], int]:
    aggregator = processor.aggregator

    def recorded() -> int:
        aggregator._fold_now()  # what is still pending on the request path
        return sum(series.count for series in list(aggregator._data.series.values()))

    return recorded


def _apitally_otel_pipeline(app: Any, app_name: str, sink_url: str, sync_interval: float) -> Handle:
    """examples/existing_pipeline.py: the app's own providers, instrumented by contrib's instrumentor
    (its HTTP metrics on a no-op meter: they are the app's cost, not ours), then ``instrument_app``.
    StarletteInstrumentor has no ``exclude_spans``: that app pays for contrib's receive/send spans."""
    from opentelemetry.metrics import NoOpMeterProvider
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.trace import TracerProvider

    from apitally_otel import instrument_app

    provider = TracerProvider()
    options: dict[str, Any] = {"exclude_spans": ["receive", "send"]} if app_name == "fastapi" else {}
    _instrumentor(app_name).instrument_app(
        app, tracer_provider=provider, meter_provider=NoOpMeterProvider(), **options
    )
    setup = instrument_app(
        app,
        client_id=CLIENT_ID,
        env=ENV,
        hub_base_url=sink_url,
        sync_interval=sync_interval,
        tracer_provider=provider,
        meter_provider=MeterProvider(),
    )
    assert setup is not None, "instrument_app refused the configuration"
    return Handle(app, _flusher(provider), _recorded(setup.span_processor))


def _apitally_otel_auto(app: Any, app_name: str, sink_url: str, sync_interval: float) -> Handle:
    """What ``opentelemetry-instrument`` does with ``OTEL_METRICS_EXPORTER=apitally``: the SDK
    providers (the configurator's part), our pre-instrument hook, then the framework instrumentor."""
    from opentelemetry import metrics, trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.trace import TracerProvider

    from apitally_otel import ApitallyMetricReader, auto

    os.environ.update(
        APITALLY_CLIENT_ID=CLIENT_ID, APITALLY_ENV=ENV, APITALLY_SYNC_INTERVAL=str(sync_interval)
    )
    provider = TracerProvider()
    trace.set_tracer_provider(provider)
    reader = ApitallyMetricReader()
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
    auto.pre_instrument()
    _instrumentor(app_name).instrument_app(app)
    return Handle(app, _flusher(provider), _recorded(reader.span_processor))


def _instrumentor(app_name: str) -> Any:
    if app_name == "fastapi":
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

        return FastAPIInstrumentor
    from opentelemetry.instrumentation.starlette import StarletteInstrumentor

    return StarletteInstrumentor


def _flusher(provider: Any) -> Callable[[], None]:
    def flush() -> None:
        if hasattr(provider, "force_flush"):
            provider.force_flush()

    return flush


def _apitally_1(app: Any) -> Handle:
    import apitally  # type: ignore[import-not-found, unused-ignore]
    from apitally.shared import metrics  # type: ignore[import-not-found, unused-ignore]
    from opentelemetry import trace

    apitally.init(app, write_token=WRITE_TOKEN, env=ENV)

    def recorded() -> int:
        return sum(h.duration.count for h in list(metrics.request_histograms.values()))

    def flush() -> None:  # the SDK provider exists only once apitally has activated (at startup)
        _flusher(trace.get_tracer_provider())()

    return Handle(app, flush, recorded)


def _apitally_0(app: Any, app_name: str) -> Handle:
    if app_name == "fastapi":
        from apitally.fastapi import ApitallyMiddleware  # type: ignore[import-not-found, unused-ignore]
    else:
        from apitally.starlette import ApitallyMiddleware  # type: ignore[import-not-found, unused-ignore]
    from apitally.client.client_asyncio import (  # type: ignore[import-not-found, unused-ignore]
        ApitallyClient,
    )

    app.add_middleware(ApitallyMiddleware, client_id=CLIENT_ID, env=ENV)

    def recorded() -> int | None:
        client = ApitallyClient._instance
        if client is None:
            return None
        return int(sum(client.request_counter.request_counts.values()))

    return Handle(app, recorded=recorded)
