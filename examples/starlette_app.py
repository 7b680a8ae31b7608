"""A Starlette app monitored with apitally-otel.

Run it against the local hub:

    apitally-otel hub &
    APITALLY_CLIENT_ID=$(python -c "import uuid; print(uuid.uuid4())") \
    APITALLY_HUB_BASE_URL=http://127.0.0.1:8250 uvicorn examples.starlette_app:app

Reads APITALLY_CLIENT_ID, APITALLY_ENV, APITALLY_HUB_BASE_URL and APITALLY_SYNC_INTERVAL.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

from opentelemetry import trace
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Mount, Route, Router, WebSocketRoute
from starlette.websockets import WebSocket

import apitally_otel

tracer = trace.get_tracer(__name__)


async def list_items(request: Request) -> JSONResponse:
    return JSONResponse([{"id": 1}, {"id": 2}])


async def get_item(request: Request) -> JSONResponse:
    return JSONResponse({"id": request.path_params["item_id"]})


async def create_item(request: Request) -> JSONResponse:
    body = await request.body()
    try:
        data = json.loads(body or b"{}")
    except ValueError:
        data = None
    if not isinstance(data, dict) or not isinstance(data.get("name"), str):
        # A hand-built FastAPI-style validation error.
        detail = [{"loc": ["body", "name"], "msg": "Field required", "type": "missing"}]
        return JSONResponse({"detail": detail}, status_code=422)
    return JSONResponse({"id": 3, "name": data["name"]}, status_code=201)


async def stream(request: Request) -> StreamingResponse:
    async def chunks() -> AsyncIterator[bytes]:
        for i in range(5):
            await asyncio.sleep(0)
            yield b"x" * 1000 + str(i).encode()

    return StreamingResponse(chunks(), media_type="text/plain")


async def fail(request: Request) -> Response:
    raise ValueError("something broke")


async def whoami(request: Request) -> PlainTextResponse:
    """Identifies the consumer with set_consumer()."""
    key = request.headers.get("x-api-key")
    if key:
        apitally_otel.set_consumer(key, name=f"Client {key}", group="Customers")
    return PlainTextResponse("ok")


async def traced(request: Request) -> PlainTextResponse:
    """Identifies the consumer with a span attribute on a nested child span."""
    with tracer.start_as_current_span("lookup"), tracer.start_as_current_span("auth") as span:
        span.set_attribute("apitally.consumer.identifier", request.query_params.get("who", "anonymous"))
    return PlainTextResponse("traced")


def get_user(request: Request) -> JSONResponse:  # sync endpoint: runs in the threadpool
    return JSONResponse({"user": request.path_params["user_id"]})


async def echo(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_text(await websocket.receive_text())
    await websocket.close()


v1 = Router(routes=[Route("/users/{user_id}", get_user)])

app = Starlette(
    routes=[
        Route("/items", list_items),
        Route("/items", create_item, methods=["POST"]),
        Route("/items/{item_id:int}", get_item),
        Route("/stream", stream),
        Route("/fail", fail),
        Route("/whoami", whoami),
        Route("/traced", traced),
        Mount("/v1", routes=v1.routes),
        WebSocketRoute("/ws", echo),
    ]
)


def _consumer_from_header(request: Request) -> str | None:
    return request.headers.get("x-consumer")


apitally_otel.instrument_app(app, consumer_callback=_consumer_from_header, app_version="1.0.0")
