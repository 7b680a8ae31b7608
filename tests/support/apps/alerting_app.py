"""The app of the alerting end-to-end tests, instrumented from env vars: ``/ok``, ``/fail`` (a
500), ``/slow?ms=N`` (answers after N ms)."""

from __future__ import annotations

import asyncio

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

import apitally_otel


async def ok(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


async def fail(request: Request) -> PlainTextResponse:
    return PlainTextResponse("the database is on fire", status_code=500)


async def slow(request: Request) -> PlainTextResponse:
    await asyncio.sleep(int(request.query_params.get("ms", "300")) / 1000)
    return PlainTextResponse("slow")


app = Starlette(routes=[Route("/ok", ok), Route("/fail", fail), Route("/slow", slow)])
apitally_otel.instrument_app(app)
