"""A FastAPI app for request-logging tests; request logging is configured by env vars only."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from opentelemetry import trace

import apitally_otel

log = logging.getLogger("app.orders")
log.setLevel(logging.INFO)
tracer = trace.get_tracer(__name__)
app = FastAPI()


@app.post("/echo")
async def echo(request: Request) -> Response:
    return Response(await request.body(), media_type=request.headers.get("content-type", "application/json"))


@app.get("/account")
async def account() -> dict[str, Any]:
    return {"user": "ann", "password": "hunter2-response", "cards": [{"card_number": "4111111111111111"}]}


@app.get("/healthz")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/work")
async def work() -> dict[str, str]:
    log.info("working on %s", "order-42")
    log.warning("slow downstream")
    with tracer.start_as_current_span("db.query") as span:
        span.set_attribute("db.statement", "SELECT 1")
    return {"done": "yes"}


@app.get("/big")
async def big() -> JSONResponse:
    return JSONResponse({"data": "x" * 60_000})


@app.get("/binary")
async def binary() -> Response:
    return Response(b"\x00\x01\x02" * 100, media_type="application/octet-stream")


@app.get("/stream")
async def stream() -> StreamingResponse:
    async def chunks():  # type: ignore[no-untyped-def]
        for i in range(3):
            yield f'{{"chunk": {i}}}\n'.encode()

    return StreamingResponse(chunks(), media_type="text/plain")


@app.get("/fail")
async def fail() -> None:
    raise KeyError("missing-key")


apitally_otel.instrument_app(app, consumer_callback=lambda request: request.headers.get("x-consumer"))
