"""A Starlette app whose consumer_callback misbehaves as CALLBACK_MODE says."""

from __future__ import annotations

import os
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

import apitally_otel


async def hello(request: Request) -> PlainTextResponse:
    return PlainTextResponse("hello")


def callback(request: Request) -> Any:
    mode = os.environ.get("CALLBACK_MODE", "")
    if mode == "raise":
        raise RuntimeError("callback exploded")
    if mode == "object":
        return {"not": "a consumer"}.items()
    if mode == "long":
        return "c" * 10_000
    if mode == "consumer-object":
        return apitally_otel.Consumer("obj", name=" Obj ", group="G")
    if mode == "state":
        request.state.apitally_consumer = "from-state"
        return None
    return None


async def async_callback(request: Request) -> Any:
    return "async-consumer"


app = Starlette(routes=[Route("/hello", hello)])
apitally_otel.instrument_app(
    app, consumer_callback=async_callback if os.environ.get("CALLBACK_MODE") == "async" else callback
)
