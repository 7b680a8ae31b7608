"""capture_exception, Sentry event ids and Loguru records, end to end through the local hub."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

import apitally_otel
from apitally_hub import HubServer
from apitally_otel import RequestLoggingConfig, instrument_app
from tests.support.servers import ServerThread, app_process


@pytest.fixture
def hub() -> Iterator[HubServer]:
    with HubServer() as server:
        yield server


def run(hub: HubServer, traffic: Any, **env: str) -> tuple[str, Any, str]:
    """Serve tests/support/apps/handled_app.py with request logging on; ``traffic(base_url)``'s result."""
    client_id = str(uuid.uuid4())
    environment = {
        "APITALLY_CLIENT_ID": client_id,
        "APITALLY_HUB_BASE_URL": hub.url,
        "APITALLY_SYNC_INTERVAL": "1",
        "APITALLY_REQUEST_LOGGING_ENABLED": "true",
        **env,
    }
    with app_process("tests.support.apps.handled_app:app", environment) as process:
        process.wait_ready("/__ready__")
        result = traffic(process.url)
    return client_id, result, process.output


def log_items(hub: HubServer, client_id: str) -> dict[str, list[dict[str, Any]]]:
    rows = hub.query(client_id, "dev", "requests", limit=1000)["items"]
    by_path: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        item = hub.query(client_id, "dev", f"requests/{row['uuid']}")["item"]
        by_path.setdefault(item["request"]["path"], []).append(item)
    return by_path


def server_errors(hub: HubServer, client_id: str) -> dict[str, dict[str, Any]]:
    errors = hub.query(client_id, "dev", "server-errors")["server_errors"]
    by_msg = {error["msg"]: error for error in errors}
    assert len(by_msg) == len(errors)
    return by_msg


def test_capture_exception_gives_a_server_error_without_a_500(hub: HubServer) -> None:
    def traffic(base: str) -> dict[str, Any]:
        with httpx.Client(base_url=base) as client:
            assert client.get("/handled/none", headers={"x-consumer": "acme"}).json()["fallback"]
            assert client.get("/sync").json() == {"ok": "yes"}
            assert client.get("/logs/1", headers={"x-middleware-fails": "1"}).status_code == 200
            assert client.get("/reraised").status_code == 500  # uvicorn then closes the connection
        return dict(httpx.get(base + "/__modules__").json())

    env = {"APITALLY_REQUEST_LOGGING_CAPTURE_LOGS": "true"}
    client_id, modules, output = run(hub, traffic, **env)
    errors = server_errors(hub, client_id)
    assert set(errors) == {
        "handled, Sentry none",
        "from a sync endpoint",
        "in a BaseHTTPMiddleware",
        "reported, then raised",
    }, output
    handled = errors["handled, Sentry none"]
    assert (handled["method"], handled["path"]) == ("GET", "/handled/{report}")
    assert handled["type"] == "builtins.ValueError"
    assert handled["count"] == 1 and handled["consumers"] == 1
    (of_acme,) = hub.query(client_id, "dev", "server-errors", consumer="acme")["server_errors"]
    assert of_acme["msg"] == "handled, Sentry none"  # the request's consumer
    assert handled["traceback"].startswith("Traceback")
    assert "raise ValueError(message)" in handled["traceback"]
    assert handled["sentry_event_id"] is None
    assert errors["from a sync endpoint"]["path"] == "/sync"
    assert errors["in a BaseHTTPMiddleware"]["path"] == "/logs/{n}"
    assert errors["reported, then raised"]["count"] == 1  # reported and escaped: counted once
    endpoints = {e["path"]: e for e in hub.query(client_id, "dev", "endpoints")["endpoints"]}
    assert endpoints["/handled/{report}"]["server_errors"] == 0  # the response was a 200
    assert endpoints["/reraised"]["server_errors"] == 1
    # The request's log item carries the exception too.
    items = log_items(hub, client_id)
    (item,) = items["/handled/{report}"]
    assert item["response"]["status_code"] == 200 and item["request"]["consumer"] == "acme"
    assert item["exception"]["type"] == "builtins.ValueError"
    assert item["exception"]["message"] == "handled, Sentry none"
    assert "sentry_event_id" not in item["exception"]
    # Neither Sentry nor Loguru was imported by us.
    assert modules == {"sentry_sdk": False, "loguru": False}


def test_sentry_event_ids_on_server_errors_and_log_items(hub: HubServer) -> None:
    def traffic(base: str) -> list[dict[str, Any]]:
        with httpx.Client(base_url=base) as client:
            for report in ("after", "before", "none"):
                assert client.get(f"/handled/{report}").status_code == 200
            assert client.get("/fail").status_code == 500  # uvicorn then closes the connection
        return list(httpx.get(base + "/__sentry__").json())

    client_id, events, output = run(hub, traffic, SENTRY="1")
    ids: dict[str, list[str]] = {}
    for event in events:  # what the in-memory transport recorded
        for value in event["values"]:
            ids.setdefault(value, []).append(event["event_id"])
    assert len(ids["handled, Sentry after"]) == 1 and len(ids["handled, Sentry before"]) == 1, events
    assert "handled, Sentry none" not in ids and ids["unhandled"]
    errors = server_errors(hub, client_id)
    assert errors["handled, Sentry after"]["sentry_event_id"] == ids["handled, Sentry after"][0], output
    assert errors["handled, Sentry before"]["sentry_event_id"] == ids["handled, Sentry before"][0]
    assert errors["handled, Sentry none"]["sentry_event_id"] is None
    unhandled = errors["unhandled"]["sentry_event_id"]
    assert unhandled == ids["unhandled"][0]  # captured by Sentry's middleware, after ours finished
    items = log_items(hub, client_id)
    on_items = {
        i["exception"]["message"]: i["exception"].get("sentry_event_id") for i in items["/handled/{report}"]
    }
    assert on_items == {
        "handled, Sentry after": ids["handled, Sentry after"][0],
        "handled, Sentry before": ids["handled, Sentry before"][0],
        "handled, Sentry none": None,
    }
    (failed,) = items["/fail"]
    assert failed["exception"]["type"] == "builtins.RuntimeError"
    assert failed["exception"]["sentry_event_id"] == unhandled


def test_loguru_records_land_on_their_own_request(hub: HubServer) -> None:
    def traffic(base: str) -> None:
        def get(n: int) -> None:
            with httpx.Client(base_url=base) as client:
                assert client.get(f"/logs/{n}").json() == {"n": n}

        with ThreadPoolExecutor(20) as pool:  # all in flight at once: their records interleave
            list(pool.map(get, range(20)))

    env = {"APITALLY_REQUEST_LOGGING_CAPTURE_LOGS": "true", "LOGURU": "1"}
    client_id, _, output = run(hub, traffic, **env)
    items = log_items(hub, client_id)["/logs/{n}"]
    assert len(items) == 20, output
    for item in items:
        n = int(item["request"]["url"].rsplit("/", 1)[1])
        assert [(r["logger"], r["level"], r["message"]) for r in item["logs"]] == [
            ("tests.support.apps.handled_app", "INFO", f"loguru record of request {n}"),
            ("tests.support.apps.handled_app", "WARNING", f"second loguru record of request {n}"),
            ("app.handled", "INFO", f"stdlib record of request {n}"),
        ]
        loguru_record = item["logs"][0]
        assert loguru_record["file"].endswith("handled_app.py") and loguru_record["line"] > 0
        assert abs(loguru_record["timestamp"] - item["request"]["timestamp"]) < 60


# -- in-process -----------------------------------------------------------------------------------


async def recovers(request: Request) -> PlainTextResponse:
    try:
        {}["missing"]
    except KeyError as exc:
        apitally_otel.capture_exception(exc)
        apitally_otel.capture_exception(exc)  # twice: one error
    return PlainTextResponse("recovered")


def test_the_span_gets_the_exception_event(hub: HubServer) -> None:
    provider = TracerProvider()
    spans = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    client_id = str(uuid.uuid4())
    app = Starlette(routes=[Route("/recovers", recovers)])
    setup = instrument_app(app, client_id=client_id, hub_base_url=hub.url, tracer_provider=provider)
    assert setup is not None
    with ServerThread(app) as url:
        assert httpx.get(url + "/recovers").text == "recovered"
    setup.shutdown()
    (server,) = [s for s in spans.get_finished_spans() if s.kind is SpanKind.SERVER]
    (event,) = server.events
    assert event.name == "exception" and event.attributes is not None
    assert event.attributes["exception.type"] == "KeyError"
    assert server.status.status_code is StatusCode.UNSET  # handled: the request did not fail
    (error,) = hub.query(client_id, "dev", "server-errors")["server_errors"]
    assert (error["path"], error["type"], error["count"]) == ("/recovers", "builtins.KeyError", 1)


def test_capture_exception_outside_a_request(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="apitally_otel"):
        apitally_otel.capture_exception(ValueError("no request"))
        apitally_otel.capture_exception(ValueError("still none"))
        apitally_otel.capture_exception("not an exception")  # type: ignore[arg-type]
    outside = [r for r in caplog.records if "outside of a monitored request" in r.getMessage()]
    assert len(outside) == 1 and outside[0].levelno == logging.DEBUG


def test_the_loguru_sink_is_added_once_and_removed() -> None:
    from loguru import logger

    from apitally_otel._config import HubSettings
    from apitally_otel._request_log import log_sinks
    from apitally_otel._request_log.logger import RequestLogger

    def handlers() -> set[int]:
        return set(logger._core.handlers)  # type: ignore[attr-defined]  # replaced on every add/remove

    before = handlers()
    settings = HubSettings(str(uuid.uuid4()), "dev", "http://127.0.0.1:9", 60.0, 10)
    config = RequestLoggingConfig(enabled=True, capture_logs=True)
    loggers = [RequestLogger(config, settings) for _ in range(2)]
    for request_logger in loggers:
        request_logger.on_app_started()
        request_logger.on_app_started()
    assert len(handlers() - before) == 1 and log_sinks.loguru_attached()
    root_handlers = [h for h in logging.getLogger().handlers if isinstance(h, log_sinks._RootHandler)]
    assert len(root_handlers) == 1
    loggers[0].shutdown(0.1)
    assert len(handlers() - before) == 1  # still used by the other one
    loggers[1].shutdown(0.1)
    assert handlers() == before and not log_sinks.loguru_attached()
    assert not [h for h in logging.getLogger().handlers if isinstance(h, log_sinks._RootHandler)]


def test_a_record_bridged_between_logging_and_loguru_is_captured_once() -> None:
    from apitally_otel._request_log.log_capture import LogCapture

    capture = LogCapture(RequestLoggingConfig(enabled=True, capture_logs=True), {"method": "GET"})
    record = logging.LogRecord("app", logging.WARNING, "/app/x.py", 7, "disk %s", ("full",), None)
    capture.add_log_record(record)

    class Level:
        name = "WARNING"

    class When:
        def timestamp(self) -> float:
            return record.created + 0.001

    loguru_record = {
        "time": When(),
        "name": "app",
        "level": Level(),
        "message": "disk full",
        "file": None,
        "line": 7,
    }
    capture.add_loguru_record(loguru_record)  # InterceptHandler: the same record, through Loguru
    capture.add_loguru_record(loguru_record)  # logged again, through Loguru only: kept
    assert [r["message"] for r in capture.item.logs or []] == ["disk full", "disk full"]
