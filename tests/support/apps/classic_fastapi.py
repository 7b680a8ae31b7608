"""A FastAPI app set up as the classic ``apitally`` client's guide shows it, for the parity test.

As :mod:`tests.support.apps.classic_starlette`: ``CLASSIC_IMPORT=apitally`` imports the classic
client, anything else ``apitally_otel``; ``CLASSIC_LOGGING=flat`` uses the flat keywords.
"""

from __future__ import annotations

import os
from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response
from pydantic import BaseModel
from starlette.middleware.base import BaseHTTPMiddleware

if os.environ.get("CLASSIC_IMPORT") == "apitally":
    from apitally.fastapi import ApitallyConsumer, ApitallyMiddleware, RequestLoggingConfig, set_consumer
else:
    from apitally_otel.fastapi import ApitallyConsumer, ApitallyMiddleware, RequestLoggingConfig, set_consumer


class Item(BaseModel):
    name: str
    price: float


app = FastAPI(version="1.2.3")
router = APIRouter(prefix="/v1")


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/items/{item_id}")
async def get_item(item_id: int) -> dict[str, Any]:
    return {"id": item_id, "name": "thing"}


@app.post("/items", status_code=201)
async def create_item(item: Item, response: Response) -> dict[str, Any]:
    response.headers["x-tenant"] = "t-1"
    return {"created": item.model_dump()}


@app.get("/me")
async def me(request: Request) -> dict[str, str]:
    request.state.apitally_consumer = ApitallyConsumer("state-user", name="State User", group="State")
    return {"token": "abc", "user": "state-user"}


@app.get("/whoami")
async def whoami(request: Request) -> dict[str, str]:
    set_consumer(request, "set-user", name="Set User", group="Set")
    return {"user": "set-user"}


@app.get("/fail")
async def fail() -> None:
    raise RuntimeError("boom")


@app.get("/internal/stats")
async def internal() -> dict[str, str]:
    return {"internal": "yes"}


@router.get("/users/{user_id}")
async def user(user_id: str) -> dict[str, str]:
    return {"user": user_id}


app.include_router(router)


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

app.add_middleware(Timing)
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
