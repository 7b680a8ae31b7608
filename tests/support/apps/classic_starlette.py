"""A Starlette app set up as the classic ``apitally`` client's guide shows it, for the parity test.

``CLASSIC_IMPORT=apitally`` imports the middleware from the classic client (run in its own venv),
anything else from ``apitally_otel``: that import is the only difference. ``CLASSIC_LOGGING=flat``
configures request logging with the flat keyword arguments, else with ``RequestLoggingConfig``.
``CLASSIC_CLIENT_ID`` and ``CLASSIC_ENV`` say where the data goes (``APITALLY_HUB_BASE_URL``: the hub).
"""

from __future__ import annotations

import os
from typing import Any

from starlette.applications import Starlette
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route

if os.environ.get("CLASSIC_IMPORT") == "apitally":
    from apitally.starlette import ApitallyConsumer, ApitallyMiddleware, RequestLoggingConfig
else:
    from apitally_otel.starlette import ApitallyConsumer, ApitallyMiddleware, RequestLoggingConfig


async def health(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


async def get_item(request: Request) -> JSONResponse:
    return JSONResponse({"id": request.path_params["item_id"], "name": "thing"})


async def create_item(request: Request) -> JSONResponse:
    body = await request.json()
    return JSONResponse({"created": body}, status_code=201, headers={"x-tenant": "t-1"})


async def me(request: Request) -> JSONResponse:
    request.state.apitally_consumer = ApitallyConsumer("state-user", name="State User", group="State")
    return JSONResponse({"token": "abc", "user": "state-user"})


async def fail(request: Request) -> Response:
    raise RuntimeError("boom")


async def internal(request: Request) -> PlainTextResponse:
    return PlainTextResponse("internal")


async def user(request: Request) -> JSONResponse:
    return JSONResponse({"user": request.path_params["user_id"]})


class Timing(BaseHTTPMiddleware):
    async def dispatch(self, request: Request, call_next: Any) -> Response:
        response: Response = await call_next(request)
        response.headers["x-timing"] = "1"
        return response


def consumer_callback(request: Request) -> ApitallyConsumer | None:
    key = request.headers.get("x-api-key")
    return ApitallyConsumer(key, name=f"Customer {key}", group="Customers") if key else None


def mask_request_body(request: dict[str, Any]) -> bytes | None:
    return (
        None if request["path"] == "/items" and b"classified" in (request["body"] or b"") else request["body"]
    )


def mask_response_body(request: dict[str, Any], response: dict[str, Any]) -> bytes | None:
    return None if request["path"] == "/v1/users/{user_id}" else response["body"]


def exclude(request: dict[str, Any], response: dict[str, Any]) -> bool:
    return any(name.lower() == "x-no-log" for name, _ in request["headers"])


LOGGING: dict[str, Any] = {
    "log_request_headers": True,
    "log_request_body": True,
    "log_response_body": True,
    "mask_headers": ["x-tenant"],
    "mask_query_params": ["session"],
    "mask_body_fields": ["card_number"],
    "exclude_paths": ["/internal/"],
    "mask_request_body_callback": mask_request_body,
    "mask_response_body_callback": mask_response_body,
    "exclude_callback": exclude,
}

app = Starlette(
    routes=[
        Route("/health", health),
        Route("/items/{item_id:int}", get_item),
        Route("/items", create_item, methods=["POST"]),
        Route("/me", me),
        Route("/fail", fail),
        Route("/internal/stats", internal),
        Mount("/v1", routes=[Route("/users/{user_id}", user)]),
    ]
)
app.add_middleware(Timing)
app.add_middleware(CORSMiddleware, allow_origins=["*"])
client_id, env = os.environ["CLASSIC_CLIENT_ID"], os.environ.get("CLASSIC_ENV", "dev")
if os.environ.get("CLASSIC_LOGGING") == "flat":
    app.add_middleware(
        ApitallyMiddleware,  # added last: it wraps the middleware above
        client_id=client_id,
        env=env,
        consumer_callback=consumer_callback,
        enable_request_logging=True,
        **LOGGING,
    )
else:
    app.add_middleware(
        ApitallyMiddleware,
        client_id=client_id,
        env=env,
        consumer_callback=consumer_callback,
        request_logging_config=RequestLoggingConfig(enabled=True, **LOGGING),
    )
