"""A FastAPI app that handles exceptions itself and reports them with ``capture_exception``.

``SENTRY=1`` initialises sentry-sdk with an in-memory transport (nothing leaves the process;
``GET /__sentry__`` lists the events it recorded); ``LOGURU=1`` logs with Loguru. Without them
neither package is imported (``GET /__modules__`` tells). Request logging and everything else
come from the ``APITALLY_*`` env vars.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from typing import Any

from fastapi import FastAPI, Request, Response
from starlette.middleware.base import BaseHTTPMiddleware

import apitally_otel

SENTRY = os.environ.get("SENTRY") == "1"
LOGURU = os.environ.get("LOGURU") == "1"
log = logging.getLogger("app.handled")
log.setLevel(logging.INFO)

if SENTRY:
    import sentry_sdk
    from sentry_sdk.envelope import Envelope
    from sentry_sdk.transport import Transport

    class MemoryTransport(Transport):
        """Keeps every event Sentry sends, in memory."""

        events: list[dict[str, Any]] = []

        def capture_envelope(self, envelope: Envelope) -> None:
            event = envelope.get_event()
            if event is not None:
                MemoryTransport.events.append(event)

    sentry_sdk.init(dsn="https://public@example.invalid/1", transport=MemoryTransport)

if LOGURU:
    from loguru import logger

app = FastAPI()


def failure(message: str) -> ValueError:
    try:
        raise ValueError(message)
    except ValueError as exc:
        return exc


@app.get("/handled/{report}")
async def handled(report: str, request: Request) -> dict[str, Any]:
    """Fails, recovers, answers 200; ``report`` says whether and when the app tells Sentry."""
    apitally_otel.set_consumer(request.headers.get("x-consumer"))
    exc = failure(f"handled, Sentry {report}")
    if report == "before":
        sentry_sdk.capture_exception(exc)
    apitally_otel.capture_exception(exc)
    if report == "after":
        sentry_sdk.capture_exception(exc)
    return {"ok": False, "fallback": True}


@app.get("/sync")
def in_the_threadpool() -> dict[str, str]:
    apitally_otel.capture_exception(failure("from a sync endpoint"))
    return {"ok": "yes"}


@app.get("/reraised")
async def reraised() -> None:
    exc = failure("reported, then raised")
    apitally_otel.capture_exception(exc)
    raise exc


@app.get("/fail")
async def fail() -> None:
    raise RuntimeError("unhandled")


@app.get("/logs/{n}")
async def logs(n: int) -> dict[str, int]:
    if LOGURU:
        logger.info("loguru record of request {}", n)
        await asyncio.sleep(0.02)  # the other requests log meanwhile
        logger.warning("second loguru record of request {}", n)
    log.info("stdlib record of request %d", n)
    return {"n": n}


@app.get("/__sentry__")
async def sentry_events() -> list[dict[str, Any]]:
    sentry_sdk.flush()
    return [
        {"event_id": event["event_id"], "values": [v.get("value") for v in event["exception"]["values"]]}
        for event in MemoryTransport.events
        if "exception" in event
    ]


@app.get("/__modules__")
async def modules() -> dict[str, bool]:
    return {name: name in sys.modules for name in ("sentry_sdk", "loguru")}


class Recovering(BaseHTTPMiddleware):
    """A middleware that catches a failure of its own and reports it."""

    async def dispatch(self, request: Request, call_next: Any) -> Response:
        if request.headers.get("x-middleware-fails"):
            apitally_otel.capture_exception(failure("in a BaseHTTPMiddleware"))
        response: Response = await call_next(request)
        return response


app.add_middleware(Recovering)
apitally_otel.instrument_app(app)
