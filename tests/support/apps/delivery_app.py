"""The app of the delivery and worker tests: ``/hit/{n}`` and ``/pid``, instrumented from env vars."""

from __future__ import annotations

import os

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

import apitally_otel


async def hit(request: Request) -> PlainTextResponse:
    return PlainTextResponse("hit")


async def pid(request: Request) -> JSONResponse:
    return JSONResponse({"pid": os.getpid()})


app = Starlette(routes=[Route("/hit/{n:int}", hit), Route("/pid", pid)])
apitally_otel.instrument_app(app)
