"""The OTLP peers (``tests/support/otlp_peers``) start, answer their routes and export OTLP/HTTP:
each runs against the recorder (``tests/support/otlp_recorder.py``), gets a little traffic and is
stopped; what it flushed on the way out must include traces and metrics (and, for apitally 1.0.0,
logs with its ``apitally.app.startup`` event).

The peers' environments (``benchmarks/.venvs/``, ``node_modules``) are made on first use, hence the
long timeout. The Node.js peer needs ``node`` and ``npm`` (Debian: ``nodejs npm``)."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.support.otlp_peers import PeerApp, run_apitally1_app, run_node_express_app, run_otel_sdk_app
from tests.support.otlp_recorder import OtlpRecorder

pytestmark = pytest.mark.timeout(600)

TOKEN = "apt_" + "sm0ket3st" * 2 + "abcdef"
ENV = "smoke"

Runner = Callable[[str, str, str], contextlib.AbstractContextManager[PeerApp]]


def traffic(url: str, *, python: bool) -> None:
    with httpx.Client(base_url=url, timeout=10) as client:
        for _ in range(2):
            assert client.get("/items", headers={"x-consumer": "alice"}).status_code == 200
            assert client.get("/items/1", headers={"x-consumer": "bob", "x-secret": "s"}).status_code == 200
        assert client.get("/items/9").status_code == 404
        assert client.get("/items/abc").status_code == (422 if python else 404)
        created = client.post("/items", json={"name": "kiwi", "price": 1.5, "card_number": "4111"})
        assert created.status_code == 201
        assert client.post("/items", json={"price": "x"}).status_code == 422
        assert client.get("/boom", headers={"connection": "close"}).status_code == 500


@pytest.fixture
def recorder() -> Iterator[OtlpRecorder]:
    with OtlpRecorder() as recorder:
        yield recorder


def server_span_routes(recorder: OtlpRecorder) -> set[str]:
    return {
        next(a.value.string_value for a in span.attributes if a.key == "http.route")
        for span in recorder.spans()
        if span.kind == 2 and any(a.key == "http.route" for a in span.attributes)  # SPAN_KIND_SERVER
    }


@pytest.mark.parametrize(
    ("runner", "python", "item_route"),
    [
        pytest.param(run_apitally1_app, True, "/items/{item_id}", id="apitally-1.0.0"),
        pytest.param(run_otel_sdk_app, True, "/items/{item_id}", id="otel-sdk"),
        pytest.param(run_node_express_app, False, "/items/:id", id="node-express"),
    ],
)
def test_peer_exports_otlp(recorder: OtlpRecorder, runner: Runner, python: bool, item_route: str) -> None:
    with runner(recorder.url, TOKEN, ENV) as app:
        traffic(app.url, python=python)
    # uvicorn re-raises SIGTERM once it has shut down gracefully (the lifespan, hence the flush, ran)
    assert app.proc.returncode in (0, -signal.SIGTERM), app.output

    for request in recorder.requests:
        assert request.headers["authorization"] == f"Bearer {TOKEN}"
        assert request.headers["apitally-env"] == ENV
        assert request.headers["content-type"] == "application/x-protobuf"
    assert recorder.of_signal("traces") and recorder.of_signal("metrics")
    assert "http.server.request.duration" in recorder.metric_names()
    assert {"/items", item_route, "/boom"} <= server_span_routes(recorder)


def test_apitally1_sends_its_startup_event(recorder: OtlpRecorder) -> None:
    with run_apitally1_app(recorder.url, TOKEN, ENV) as app:
        traffic(app.url, python=True)
    events: dict[str, Any] = {}
    for record in recorder.log_records():
        events.setdefault(record.event_name, record)
    assert "apitally.app.startup" in events, sorted(events)
    assert "apitally.consumer.update" in events
    assert "apitally.request.validation_error" in events
    assert "apitally.request.server_error" in events
