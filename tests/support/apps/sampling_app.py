"""A FastAPI app for request-log sampling tests. ``SAMPLING_MODE`` picks the callbacks:

- ``rate``: none (``APITALLY_REQUEST_LOGGING_SAMPLE_RATE`` alone);
- ``keep-5xx``: ``sample_on_response`` keeps every 5xx response;
- ``raising``: both callbacks raise (the rate decides, one warning each).

Each endpoint answers with its trace id and whether its trace was sampled, so a test knows every
request's trace, logged or not.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from opentelemetry import trace
from starlette.requests import Request

import apitally_otel
from apitally_otel import RequestLoggingConfig, ResponseInfo

tracer = trace.get_tracer(__name__)
app = FastAPI()


def trace_info(status_code: int = 200) -> JSONResponse:
    context = trace.get_current_span().get_span_context()
    with tracer.start_as_current_span("db.query"):
        pass
    body = {"trace_id": f"{context.trace_id:032x}", "sampled": context.trace_flags.sampled}
    return JSONResponse(body, status_code=status_code)


@app.get("/items/{n}")
async def item(n: int) -> JSONResponse:
    return trace_info()


@app.get("/flaky/{n}")
async def flaky(n: int) -> JSONResponse:
    return trace_info(503 if n % 5 == 0 else 200)


def keep_server_errors(request: Request, response: ResponseInfo) -> bool | None:
    return True if response.status_code >= 500 else None


def explode(*args: Any) -> bool | None:
    raise RuntimeError("sampling callback bug")


mode = os.environ.get("SAMPLING_MODE", "rate")
config = RequestLoggingConfig.from_env()
options: dict[str, Any] = {}
if mode == "keep-5xx":
    options = {"sample_on_response": keep_server_errors}
elif mode == "raising":
    options = {"sample_on_request": explode, "sample_on_response": explode}
apitally_otel.instrument_app(app, request_logging=dataclasses.replace(config, **options))
