"""The issue's acceptance test (issue 29): the genuine apitally 1.0.0 client, on a FastAPI app under
uvicorn in its own virtual environment, exports OTLP/HTTP to a real hub (on each backend) with an
app's write token; the hub shows what it sent.

Known traffic goes to the app while it runs (its first export, about 2 s after startup, brings the
startup record: the instance is online with its versions and paths); SIGTERM makes apitally flush
everything left. Then, through the query API: the requests per endpoint, method and status exactly;
the consumers with their names and groups; the 422s' details; the 500s with their traceback; the
request log's items with the masked header and body field. The dashboard's endpoints page lists the
routes, and an alert rule on server errors fires to a real webhook.

Every wait is on a condition (the query API polled until the numbers are there, or a timeout).
"""

from __future__ import annotations

import base64
import json
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from apitally_hub import HubServer
from apitally_hub.alerting.config import AlertingConfig
from tests.support.otlp_peers import run_apitally1_app
from tests.support.servers import ServerThread, WebhookReceiver

pytestmark = pytest.mark.timeout(300)

ENV = "prod"
ALERTING = AlertingConfig(interval=0.3, retry_base_seconds=0.2)
ITEM = "/items/{item_id}"

T = TypeVar("T")

# What the test sends: (method, URL path, headers, JSON body, expected status, route, consumer)
Call = tuple[str, str, dict[str, str], Any, int, str, str | None]
ALICE = {"x-consumer": "alice"}
BOB = {"x-consumer": "bob", "x-secret": "hush"}
TRAFFIC: list[Call] = [
    *[("GET", "/items", ALICE, None, 200, "/items", "alice")] * 3,
    *[("GET", "/items/1", BOB, None, 200, ITEM, "bob")] * 2,
    ("GET", "/items/9", {}, None, 404, ITEM, None),
    ("GET", "/items/abc", ALICE, None, 422, ITEM, "alice"),
    (
        "POST",
        "/items",
        BOB,
        {"name": "kiwi", "price": 1.5, "card_number": "4111111111111111"},
        201,
        "/items",
        "bob",
    ),
    ("POST", "/items", {}, {"price": "x"}, 422, "/items", None),
    *[("GET", "/boom", {}, None, 500, "/boom", None)] * 2,
]


def expected_status_codes() -> dict[tuple[str, str], dict[str, int]]:
    counted: dict[tuple[str, str], Counter[str]] = {}
    for method, _, _, _, status, route, _ in TRAFFIC:
        counted.setdefault((method, route), Counter())[str(status)] += 1
    return {key: dict(counter) for key, counter in counted.items()}


def expected_consumer_requests() -> dict[str, int]:
    return dict(Counter(consumer for *_, consumer in TRAFFIC if consumer is not None))


def wait_for(condition: Callable[[], T | None], timeout: float, what: str) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)


def wait_equal(get: Callable[[], object], expected: object, timeout: float, what: str) -> None:
    """Poll ``get()`` until it equals ``expected``; on timeout, fail showing the last value."""
    deadline = time.monotonic() + timeout
    while (value := get()) != expected:
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}: {value!r} != {expected!r}")
        time.sleep(0.1)


class Hub:
    """The hub with the app registered (a write token) and an HTTP client for its JSON APIs."""

    def __init__(self, server: HubServer, http: httpx.Client) -> None:
        self.server, self.http = server, http
        app = self.http.post("/api/apps", json={"name": "Peer shop", "framework": "fastapi", "envs": [ENV]})
        assert app.status_code == 201, app.text
        self.client_id: str = app.json()["client_id"]
        self.token: str = app.json()["write_token"]
        self.api = f"/api/{self.client_id}/{ENV}"

    def query(self, resource: str, **params: str | int | None) -> dict[str, Any]:
        return self.server.query(self.client_id, ENV, resource, **params)

    def post(self, resource: str, body: dict[str, Any]) -> str:
        response = self.http.post(f"{self.api}/{resource}", json=body)
        assert response.status_code == 201, response.text
        return str(response.json()["id"])


@pytest.fixture
def hook() -> Iterator[tuple[WebhookReceiver, str]]:
    receiver = WebhookReceiver()
    with ServerThread(receiver.app()) as url:
        yield receiver, url


@pytest.fixture
def hub(hub_db: str | Path) -> Iterator[Hub]:
    with (
        HubServer(hub_db, alerting=ALERTING) as server,
        httpx.Client(base_url=server.url, timeout=10) as http,
    ):
        yield Hub(server, http)


def send_traffic(url: str) -> None:
    with httpx.Client(base_url=url, timeout=10) as client:
        for method, path, headers, body, status, _, _ in TRAFFIC:
            response = client.request(method, path, headers=headers, json=body)
            assert response.status_code == status, (method, path, response.text)


def endpoints_now(hub: Hub) -> dict[tuple[str, str], dict[str, int]]:
    return {(row["method"], row["path"]): row["status_codes"] for row in hub.query("endpoints")["endpoints"]}


def request_item(hub: Hub, **filters: str | int) -> dict[str, Any]:
    [summary] = hub.query("requests", **filters)["items"]
    response = hub.http.get(f"{hub.api}/requests/{summary['uuid']}")
    assert response.status_code == 200, response.text
    item: dict[str, Any] = response.json()["item"]  # the request-log item (hub-protocol.md §5)
    return item


def headers_of(part: dict[str, Any]) -> dict[str, str]:
    return {name.lower(): value for name, value in part.get("headers") or []}


def body_of(part: dict[str, Any]) -> Any:
    """A captured body (base64 in the item) as JSON."""
    assert "body" in part, part
    return json.loads(base64.b64decode(part["body"]))


def test_apitally1_app_exports_to_the_hub(hub: Hub, hook: tuple[WebhookReceiver, str]) -> None:
    receiver, hook_url = hook
    channel = hub.post("channels", {"name": "hook", "type": "webhook", "url": hook_url + "/errors"})
    hub.post(
        "alert-rules",
        {
            "name": "Peer 5xx",
            "metric": "server_errors",
            "condition": ">",
            "threshold": 0,
            "window_minutes": 5,
            "channels": [channel],
        },
    )

    with run_apitally1_app(hub.server.url, hub.token, ENV) as app:
        send_traffic(app.url)
        # The first export (about 2 s after startup) brings the startup record: online, with versions.
        [instance] = wait_for(
            lambda: [i for i in hub.query("instances")["instances"] if i["online"] and i["versions"]],
            30,
            "the instance online with its startup data",
        )
    # uvicorn re-raises SIGTERM once it has shut down gracefully (apitally flushed on the way out)
    assert app.proc.returncode in (0, -signal.SIGTERM), app.output

    assert instance["versions"]["apitally-py"] == "1.0.0"
    assert {"python", "fastapi", "starlette"} <= set(instance["versions"])
    assert instance["client"] == "python:fastapi"
    assert instance["path_count"] == 4  # GET /items, GET /items/{item_id}, POST /items, GET /boom
    assert instance["has_openapi"] is True

    # After the final flush: every request counted exactly once.
    expected = expected_status_codes()
    wait_equal(lambda: endpoints_now(hub), expected, 30, "every request counted")
    rows = {(row["method"], row["path"]): row for row in hub.query("endpoints")["endpoints"]}
    assert rows[("GET", "/boom")]["server_errors"] == 2
    assert rows[("GET", ITEM)]["client_errors"] == 2
    assert sum(row["requests"] for row in rows.values()) == len(TRAFFIC)

    consumers = {c["identifier"]: c for c in hub.query("consumers")["consumers"]}
    assert {key: (c["name"], c["group"], c["requests"]) for key, c in consumers.items()} == {
        "alice": ("Consumer alice", "Peers", expected_consumer_requests()["alice"]),
        "bob": ("Consumer bob", "Peers", expected_consumer_requests()["bob"]),
    }
    assert consumers["alice"]["client_errors"] == 1

    validation = {
        (v["method"], v["path"], tuple(v["loc"]), v["type"]): (v["msg"], v["count"])
        for v in hub.query("validation-errors")["validation_errors"]
    }
    assert validation == {
        ("GET", ITEM, ("path", "item_id"), "int_parsing"): (
            "Input should be a valid integer, unable to parse string as an integer",
            1,
        ),
        ("POST", "/items", ("body", "name"), "missing"): ("Field required", 1),
        ("POST", "/items", ("body", "price"), "float_parsing"): (
            "Input should be a valid number, unable to parse string as a number",
            1,
        ),
    }

    [error] = hub.query("server-errors")["server_errors"]
    assert (error["method"], error["path"], error["type"], error["msg"], error["count"]) == (
        "GET",
        "/boom",
        "builtins.RuntimeError",
        "boom",
        2,
    )
    assert error["traceback"].startswith("Traceback (most recent call last):")
    assert 'raise RuntimeError("boom")' in error["traceback"]
    assert error["traceback"].rstrip().endswith("RuntimeError: boom")

    # The request log: one item per request (apitally 1.x logs every request), masked.
    log = hub.query("requests", limit=1000)
    assert log["total"] == len(TRAFFIC)
    assert Counter((i["method"], i["path"], i["status_code"]) for i in log["items"]) == Counter(
        (method, route, status) for method, _, _, _, status, route, _ in TRAFFIC
    )
    assert all(i["url"].startswith(app.url) for i in log["items"])
    read = request_item(hub, path=ITEM, status=200, limit=1)
    headers = headers_of(read["request"])
    assert headers["x-secret"] == "[REDACTED]" and headers["x-consumer"] == "bob"
    assert read["request"]["consumer"] == "bob"
    created = request_item(hub, method="POST", status=201)
    assert body_of(created["request"]) == {"name": "kiwi", "price": 1.5, "card_number": "[REDACTED]"}
    assert body_of(created["response"])["card_number"] == "[REDACTED]"
    failed = request_item(hub, path="/boom", limit=1)
    assert failed["exception"]["type"].endswith("RuntimeError")

    # The dashboard's endpoints page shows the routes.
    page = hub.http.get(f"/apps/{hub.client_id}/{ENV}/endpoints")
    assert page.status_code == 200
    for _, route in expected:
        assert route in page.text, route

    # The rule on server errors fires.
    [firing] = receiver.wait_for(lambda delivered: delivered, 30, "/errors")
    notice = firing.json()
    assert (notice["event"], notice["rule"]["name"], notice["value"]) == ("firing", "Peer 5xx", 2)
