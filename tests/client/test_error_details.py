"""Validation errors and server errors through a real app: hostile bodies never break anything."""

from __future__ import annotations

import base64
import gzip
import json
import uuid
from collections.abc import Iterator
from typing import Any

import anyio
import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry.sdk.trace import TracerProvider
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from apitally_otel import Instrumentation, instrument_app


async def respond(request: Request) -> Response:
    """Answers with the status, headers and (base64) body the request asks for."""
    spec = await request.json()
    return Response(
        base64.b64decode(spec["body"]),
        status_code=spec["status"],
        headers=spec.get("headers", {}),
        media_type=spec.get("media_type"),
    )


CONSUMER_VALUES: list[Any] = [None]


async def identify(request: Request) -> Response:
    import apitally_otel

    value = CONSUMER_VALUES[0]
    apitally_otel.set_consumer(value, name=value, group=value)
    return Response("ok")


async def handled_500(request: Request) -> Response:
    return JSONResponse({"error": "handled"}, status_code=500)


async def fails_in_background(request: Request) -> Response:
    def boom() -> None:
        raise RuntimeError("after the response")

    return JSONResponse({"ok": True}, background=BackgroundTask(boom))


async def fails_in_group(request: Request) -> Response:
    raise ExceptionGroup("many", [KeyError("first"), ValueError("second")])  # noqa: F821


@pytest.fixture(scope="module")
def instrumented() -> Iterator[tuple[Starlette, Instrumentation]]:
    app = Starlette(
        routes=[
            Route("/respond", respond, methods=["POST"]),
            Route("/handled", handled_500),
            Route("/identify", identify),
            Route("/background", fails_in_background),
            Route("/group", fails_in_group),
        ]
    )
    setup = instrument_app(
        app,
        client_id=str(uuid.uuid4()),
        hub_base_url="http://127.0.0.1:9",
        tracer_provider=TracerProvider(),
        sync_interval=3600,
    )
    assert setup is not None
    yield app, setup
    setup.exporter._client = None  # nothing to deliver: the hub address is unused on purpose
    setup.shutdown()


def call(app: Starlette, method: str, path: str, **kwargs: Any) -> tuple[int, bytes]:
    """Status and the raw (undecoded) body the client received."""
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)

    async def go() -> tuple[int, bytes]:
        async with (
            httpx.AsyncClient(transport=transport, base_url="http://test") as client,
            client.stream(method, path, **kwargs) as response,
        ):
            return response.status_code, b"".join([chunk async for chunk in response.aiter_raw()])

    return anyio.run(go)


def spec(status: int, body: bytes, **extra: Any) -> dict[str, Any]:
    return {"status": status, "body": base64.b64encode(body).decode(), **extra}


VALID = json.dumps({"detail": [{"loc": ["query", "n"], "msg": "bad n", "type": "int_parsing"}]}).encode()


def drain(setup: Instrumentation) -> Any:
    return setup.span_processor.aggregator.drain()


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        (spec(422, VALID, media_type="application/json"), 1),
        (spec(400, VALID, media_type="application/json"), 1),
        (
            spec(
                422, gzip.compress(VALID), media_type="application/json", headers={"Content-Encoding": "gzip"}
            ),
            1,
        ),
        (spec(422, VALID, media_type="text/plain"), 0),
        (spec(409, VALID, media_type="application/json"), 0),
        (spec(422, b"not json", media_type="application/json"), 0),
        (spec(422, b'{"detail": "a string"}', media_type="application/json"), 0),
        (spec(422, b'{"detail": [{"loc": ["x"]}]}', media_type="application/json"), 0),
        (spec(422, b"\xff\xfe\xfd" * 10, media_type="application/json"), 0),
        (
            spec(
                422,
                b'{"detail": [' + b'{"loc":["a"],"msg":"m","type":"t"},' * 60_000 + b"1]}",
                media_type="application/json",
            ),
            0,
        ),
        (
            spec(
                422,
                gzip.compress(b" " * 30_000_000),
                media_type="application/json",
                headers={"Content-Encoding": "gzip"},
            ),
            0,
        ),
    ],
    ids=[
        "422",
        "400-same-shape",
        "gzip",
        "not-json-type",
        "409",
        "garbage",
        "detail-string",
        "missing-keys",
        "invalid-utf8",
        "2MB",
        "gzip-bomb",
    ],
)
def test_validation_bodies(
    instrumented: tuple[Starlette, Instrumentation], case: dict[str, Any], expected: int
) -> None:
    app, setup = instrumented
    drain(setup)
    status, content = call(app, "POST", "/respond", json=case)
    assert status == case["status"]
    assert content == base64.b64decode(case["body"])  # the client got the body untouched
    data = drain(setup)
    assert sum(s.count for s in data.series.values()) == 1
    assert sum(data.validation_errors.values()) == expected
    if expected:
        ((_, method, path, loc, msg, type_),) = data.validation_errors
        assert (method, path, loc, msg, type_) == ("POST", "/respond", ("query", "n"), "bad n", "int_parsing")


def test_handled_500_is_not_a_server_error(instrumented: tuple[Starlette, Instrumentation]) -> None:
    app, setup = instrumented
    drain(setup)
    assert call(app, "GET", "/handled")[0] == 500
    data = drain(setup)
    assert [key[3] for key in data.series] == [500] and data.server_errors == {}


def test_background_task_failure_is_not_a_server_error(
    instrumented: tuple[Starlette, Instrumentation],
) -> None:
    app, setup = instrumented
    drain(setup)
    assert call(app, "GET", "/background")[0] == 200
    data = drain(setup)
    assert [key[3] for key in data.series] == [200] and data.server_errors == {}


def test_exception_group_reports_first_leaf(instrumented: tuple[Starlette, Instrumentation]) -> None:
    app, setup = instrumented
    drain(setup)
    assert call(app, "GET", "/group")[0] == 500
    data = drain(setup)
    ((_, _, path, type_, msg, tb),) = data.server_errors
    assert (path, type_, msg) == ("/group", "builtins.KeyError", "'first'") and tb.endswith(
        "KeyError: 'first'"
    )


@given(status=st.sampled_from([200, 400, 422, 500]), body=st.binary(max_size=3000), gz=st.booleans())
def test_any_body_is_served_and_counted(
    instrumented: tuple[Starlette, Instrumentation], status: int, body: bytes, gz: bool
) -> None:
    app, setup = instrumented
    drain(setup)
    headers = {"Content-Encoding": "gzip"} if gz else {}
    case = spec(status, body, media_type="application/json", headers=headers)
    assert call(app, "POST", "/respond", json=case) == (status, body)
    data = drain(setup)
    assert sum(s.count for s in data.series.values()) == 1


consumer_values = (
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=300) | st.binary(max_size=50)
)


@given(
    value=consumer_values
    | st.lists(consumer_values, max_size=3)
    | st.dictionaries(st.text(max_size=5), consumer_values, max_size=3)
)
def test_any_consumer_value_is_served_and_counted(
    instrumented: tuple[Starlette, Instrumentation], value: Any
) -> None:
    app, setup = instrumented
    drain(setup)
    CONSUMER_VALUES[0] = value
    assert call(app, "GET", "/identify") == (200, b"ok")
    data = drain(setup)
    ((consumer, *_), count) = ((key, s.count) for key, s in data.series.items()).__next__()
    assert count == 1 and len(data.series) == 1
    assert consumer is None or (
        isinstance(consumer, str) and 0 < len(consumer) <= 128 and consumer == consumer.strip()
    )
    for info in data.consumers:
        assert info.name is None or len(info.name) <= 64
