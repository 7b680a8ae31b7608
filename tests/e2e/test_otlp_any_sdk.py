"""Any OpenTelemetry SDK exports to the hub (issue 29): a plain OpenTelemetry Python SDK app (no
apitally code; cumulative explicit-bucket metrics) and a Node.js Express app (the OpenTelemetry JS
SDK from npm), each exporting OTLP/HTTP protobuf to a real hub with an app's write token.

After known traffic and the app's stop (SIGTERM: each SDK flushes its exporters), the hub counts
every request exactly once per method, route and status (from the HTTP server metrics), shows the
Python app's 500 as a server error (from its span's exception event) and keeps a request-log item
per request. With the SDK's metric interval left long (60 s) the traces arrive first and the
requests are counted from the spans; the metrics flushed at shutdown must not count them again.

The Node.js peer needs ``node`` and ``npm`` (CI installs them): without them its tests fail saying
what to install, they are not skipped.
"""

from __future__ import annotations

import contextlib
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from apitally_hub import HubServer
from tests.support.otlp_peers import PeerApp, run_node_express_app, run_otel_sdk_app

pytestmark = pytest.mark.timeout(300)

ENV = "prod"

Runner = Callable[..., contextlib.AbstractContextManager[PeerApp]]


@dataclass(frozen=True)
class Peer:
    runner: Runner
    item_route: str
    """The route template style of the peer's framework."""
    python: bool
    """A Python (FastAPI) app: a non-integer id is a 422 there, a 404 on the Node.js app."""

    def traffic(self) -> list[tuple[str, str, Any, int, str]]:
        """(method, URL path, JSON body, expected status, route) of each request sent."""
        item = self.item_route
        return [
            *[("GET", "/items", None, 200, "/items")] * 3,
            *[("GET", "/items/1", None, 200, item)] * 2,
            ("GET", "/items/9", None, 404, item),
            ("GET", "/items/abc", None, 422 if self.python else 404, item),
            ("POST", "/items", {"name": "kiwi", "price": 1.5}, 201, "/items"),
            ("POST", "/items", {"price": "x"}, 422, "/items"),
            *[("GET", "/boom", None, 500, "/boom")] * 2,
        ]

    def expected(self) -> dict[tuple[str, str], dict[str, int]]:
        counted: dict[tuple[str, str], Counter[str]] = {}
        for method, _, _, status, route in self.traffic():
            counted.setdefault((method, route), Counter())[str(status)] += 1
        return {key: dict(counter) for key, counter in counted.items()}


OTEL_SDK = Peer(run_otel_sdk_app, "/items/{item_id}", python=True)
NODE = Peer(run_node_express_app, "/items/:id", python=False)
PEERS = [pytest.param(OTEL_SDK, id="otel-sdk"), pytest.param(NODE, id="node-express")]


def wait_equal(get: Callable[[], object], expected: object, timeout: float, what: str) -> None:
    """Poll ``get()`` until it equals ``expected``; on timeout, fail showing the last value."""
    deadline = time.monotonic() + timeout
    while (value := get()) != expected:
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}: {value!r} != {expected!r}")
        time.sleep(0.1)


class Hub:
    def __init__(self, server: HubServer) -> None:
        self.server = server
        response = httpx.post(
            f"{server.url}/api/apps",
            json={"name": "SDK peer", "framework": "other", "envs": [ENV]},
            timeout=10,
        )
        assert response.status_code == 201, response.text
        self.client_id: str = response.json()["client_id"]
        self.token: str = response.json()["write_token"]

    def query(self, resource: str, **params: str | int | None) -> dict[str, Any]:
        return self.server.query(self.client_id, ENV, resource, **params)

    def endpoints(self) -> dict[tuple[str, str], dict[str, int]]:
        return {(r["method"], r["path"]): r["status_codes"] for r in self.query("endpoints")["endpoints"]}

    def log_items(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.query("requests", limit=1000)["items"]
        return items


@pytest.fixture
def hub() -> Iterator[Hub]:
    with HubServer() as server:
        yield Hub(server)


def send(peer: Peer, url: str) -> None:
    with httpx.Client(base_url=url, timeout=10) as client:
        for method, path, body, status, _ in peer.traffic():
            response = client.request(method, path, json=body)
            assert response.status_code == status, (method, path, response.text)


def check_request_log(hub: Hub, peer: Peer) -> None:
    """One request-log item per request, with its route, URL and status."""
    items = hub.log_items()
    assert Counter((i["method"], i["path"], i["status_code"]) for i in items) == Counter(
        (method, route, status) for method, _, _, status, route in peer.traffic()
    )
    assert Counter((i["method"], urlsplit(i["url"]).path, i["status_code"]) for i in items) == Counter(
        (method, path, status) for method, path, _, status, _ in peer.traffic()
    )
    assert {urlsplit(i["url"]).hostname for i in items} == {"127.0.0.1"}


def check_server_error(hub: Hub) -> None:
    [error] = hub.query("server-errors")["server_errors"]
    assert (error["method"], error["path"], error["type"], error["msg"], error["count"]) == (
        "GET",
        "/boom",
        "RuntimeError",
        "boom",
        2,
    )
    assert error["traceback"].startswith("Traceback (most recent call last):")
    assert error["traceback"].rstrip().endswith("RuntimeError: boom")


@pytest.mark.parametrize("peer", PEERS)
def test_sdk_app_is_counted_from_its_metrics(hub: Hub, peer: Peer) -> None:
    expected = peer.expected()
    with peer.runner(hub.server.url, hub.token, ENV) as app:
        send(peer, app.url)
        # metrics every second: the counts are there while the app runs
        wait_equal(hub.endpoints, expected, 30, "the counts from the metrics")
    assert app.proc.returncode in (0, -signal.SIGTERM), app.output
    assert hub.endpoints() == expected  # the flush at shutdown added nothing twice
    wait_equal(lambda: len(hub.log_items()), len(peer.traffic()), 30, "a request-log item per request")
    check_request_log(hub, peer)
    if peer.python:
        check_server_error(hub)
    assert hub.query("rejections")["rejections"] == []


def counted_from(hub: Hub) -> str | None:
    instances = hub.query("instances")["instances"]
    return str(instances[0]["counted_from"]) if len(instances) == 1 else None


@pytest.mark.parametrize("hold", [pytest.param(None, id="held"), pytest.param(1.0, id="released")])
@pytest.mark.parametrize("peer", PEERS)
def test_traces_before_metrics_are_not_counted_twice(peer: Peer, hold: float | None) -> None:
    """The SDK's metric interval left long (60 s): the traces come first, the metrics only with the
    flush at shutdown. The hub holds the counts from the spans back (``--otlp-span-hold``), and the
    metrics then count every request (``held``); or, the hold over before they come, it counts the
    spans, and the metrics take over from there without counting those requests again
    (``released``). Either way each request is counted once."""
    expected = peer.expected()
    options: dict[str, Any] = {} if hold is None else {"otlp_span_hold": hold}
    with HubServer(**options) as server:
        hub = Hub(server)
        long_interval = {"OTEL_METRIC_EXPORT_INTERVAL": "60000"}
        with peer.runner(server.url, hub.token, ENV, extra_env=long_interval) as app:
            send(peer, app.url)
            wait_equal(lambda: len(hub.log_items()), len(peer.traffic()), 30, "the traces")
            if hold is None:
                assert (counted_from(hub), hub.endpoints()) == ("held", {})
            else:
                wait_equal(hub.endpoints, expected, 30, "the counts from the spans")
                assert counted_from(hub) == "spans"
        assert app.proc.returncode in (0, -signal.SIGTERM), app.output
        wait_equal(lambda: counted_from(hub), "metrics", 30, "the metrics flushed at shutdown")
        assert hub.endpoints() == expected
        check_request_log(hub, peer)
        if peer.python:
            check_server_error(hub)
        assert hub.query("rejections")["rejections"] == []
