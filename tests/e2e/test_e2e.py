"""End to end: example apps under uvicorn in a subprocess, a real hub on loopback."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.sync.client import connect

from tests.support.servers import RecordingHub, app_process

Key = tuple[Any, str, str, int]


def run(
    hub: RecordingHub,
    hub_url: str,
    target: str,
    traffic: Callable[[httpx.Client, str], None],
    *args: str,
    **env: str,
) -> str:
    environment = {
        "APITALLY_CLIENT_ID": str(uuid.uuid4()),
        "APITALLY_HUB_BASE_URL": hub_url,
        "APITALLY_SYNC_INTERVAL": "1",
        **env,
    }
    with app_process(target, environment, *args) as process:
        process.wait_ready("/__ready__")
        with httpx.Client(base_url=process.url, timeout=10) as client:
            traffic(client, process.url)
    return process.output


def counts(hub: RecordingHub) -> Counter[Key]:
    total: Counter[Key] = Counter()
    for payload in hub.of_kind("sync"):
        for item in payload["requests"]:
            total[(item["consumer"], item["method"], item["path"], item["status_code"])] += item[
                "request_count"
            ]
            assert sum(item["response_times"].values()) == item["request_count"]
            assert all(int(k) % 10 == 0 for k in item["response_times"])
            assert sum(item["request_sizes"].values()) <= item["request_count"]
    return total


def test_starlette_example(recording_hub: tuple[RecordingHub, str]) -> None:
    hub, url = recording_hub

    def traffic(client: httpx.Client, base: str) -> None:
        for i in range(25):
            assert client.get(f"/items/{i}").status_code == 200
        assert client.post("/items", json={"name": "n"}).status_code == 201
        chunked = client.post("/items", content=iter([b'{"name":', b' "c"}']))  # no Content-Length
        assert chunked.status_code == 201 and chunked.request.headers["transfer-encoding"] == "chunked"
        assert client.post("/items", content=b"{}").status_code == 422
        assert client.get("/stream").content.startswith(b"x")
        assert client.get("/fail").status_code == 500
        assert client.get("/nothing/here").status_code == 404
        assert client.options("/items").status_code in (200, 405)
        assert client.get("/v1/users/7").json() == {"user": "7"}
        assert client.get("/whoami", headers={"x-api-key": "k1"}).text == "ok"
        assert client.get("/traced", params={"who": "bob"}).text == "traced"
        assert client.get("/items", headers={"x-consumer": "acme"}).status_code == 200
        with connect(base.replace("http", "ws") + "/ws") as ws:
            ws.send("hi")
            assert ws.recv() == "hi"

    output = run(hub, url, "examples.starlette_app:app", traffic)
    assert counts(hub) == {
        (None, "GET", "/items/{item_id:int}", 200): 25,
        (None, "POST", "/items", 201): 2,
        (None, "POST", "/items", 422): 1,
        (None, "GET", "/stream", 200): 1,
        (None, "GET", "/fail", 500): 1,
        (None, "GET", "/v1/users/{user_id}", 200): 1,
        ("k1", "GET", "/whoami", 200): 1,
        ("bob", "GET", "/traced", 200): 1,
        ("acme", "GET", "/items", 200): 1,
    }, output
    syncs = hub.of_kind("sync")
    items = [item for payload in syncs for item in payload["requests"]]
    stream = next(i for i in items if i["path"] == "/stream")
    assert stream["response_size_sum"] == 5005 and stream["response_sizes"] == {"5": 1}
    # A GET with neither Content-Length nor a chunked body has no request size (hub-protocol §4.1),
    # although its StreamingResponse listens for a disconnect (receive() gets an empty message).
    assert stream["request_sizes"] == {} and stream["request_size_sum"] == 0
    posts = [i for i in items if i["path"] == "/items" and i["status_code"] == 201]  # one sync or two
    # Content-Length for one, the bytes received for the chunked one.
    assert sum(p["request_size_sum"] for p in posts) == len(b'{"name":"n"}') + len(b'{"name": "c"}')
    assert sum(p["request_sizes"].get("0", 0) for p in posts) == 2
    (server_error,) = [e for p in syncs for e in p["server_errors"]]
    assert server_error["type"] == "builtins.ValueError" and server_error["msg"] == "something broke"
    assert server_error["path"] == "/fail" and server_error["error_count"] == 1
    assert (
        server_error["traceback"].startswith("Traceback")
        and 'raise ValueError("something broke")' in server_error["traceback"]
    )
    (validation_error,) = [e for p in syncs for e in p["validation_errors"]]
    assert validation_error == {
        "consumer": None,
        "method": "POST",
        "path": "/items",
        "loc": ["body", "name"],
        "msg": "Field required",
        "type": "missing",
        "error_count": 1,
    }
    consumers = [c for p in syncs for c in p["consumers"]]
    assert consumers == [{"identifier": "k1", "name": "Client k1", "group": "Customers"}]
    assert len(syncs) >= 2  # one per second while serving, plus the final one
    assert all(
        set(p)
        == {
            "instance_uuid",
            "message_uuid",
            "timestamp",
            "requests",
            "validation_errors",
            "server_errors",
            "consumers",
            "resources",
        }
        for p in syncs
    )
    assert len({p["message_uuid"] for p in syncs}) == len(syncs)
    assert len({p["instance_uuid"] for p in syncs}) == 1
    (startup,) = hub.of_kind("startup")
    assert startup["client"] == "python:starlette" and startup["instance_uuid"] == syncs[0]["instance_uuid"]
    assert {"method": "get", "path": "/v1/users/{user_id}"} in startup["paths"]
    assert startup["versions"]["app"] == "1.0.0" and "openapi" not in startup


def test_root_path(recording_hub: tuple[RecordingHub, str]) -> None:
    hub, url = recording_hub

    def traffic(client: httpx.Client, base: str) -> None:
        # Behind a proxy that strips /api: uvicorn --root-path puts it back into the scope.
        for i in range(3):
            assert client.get(f"/items/{i}").status_code == 200
        assert client.get("/v1/users/1").status_code == 200

    run(hub, url, "examples.starlette_app:app", traffic, "--root-path", "/api")
    assert counts(hub) == {
        (None, "GET", "/api/items/{item_id:int}", 200): 3,
        (None, "GET", "/api/v1/users/{user_id}", 200): 1,
    }


def test_fastapi_example(recording_hub: tuple[RecordingHub, str]) -> None:
    hub, url = recording_hub

    def traffic(client: httpx.Client, base: str) -> None:
        for i in range(10):
            assert client.get(f"/api/items/{i}").status_code == 200
        assert client.get("/api/items/abc").status_code == 422
        assert client.post("/api/items/", json={"name": "x"}).status_code == 422
        assert client.post("/api/items/", json={"name": "x", "price": 1.5}).status_code == 201
        assert len(client.get("/api/stream").content) == 10 * 800
        assert client.get("/api/fail").status_code == 500
        assert client.get("/api/me", headers={"x-api-key": "key-7"}).status_code == 200
        assert client.get("/api/items/", headers={"x-consumer": "acme"}).status_code == 200

    output = run(hub, url, "examples.fastapi_app:app", traffic)
    assert counts(hub) == {
        (None, "GET", "/api/items/{item_id}", 200): 10,
        (None, "GET", "/api/items/{item_id}", 422): 1,
        (None, "POST", "/api/items/", 422): 1,
        (None, "POST", "/api/items/", 201): 1,
        (None, "GET", "/api/stream", 200): 1,
        (None, "GET", "/api/fail", 500): 1,
        ("key-7", "GET", "/api/me", 200): 1,
        ("acme", "GET", "/api/items/", 200): 1,
    }, output
    syncs = hub.of_kind("sync")
    errors = sorted((tuple(e["loc"]), e["type"]) for p in syncs for e in p["validation_errors"])
    assert errors == [(("body", "price"), "missing"), (("path", "item_id"), "int_parsing")]
    (server_error,) = [e for p in syncs for e in p["server_errors"]]
    assert (
        server_error["type"] == "builtins.RuntimeError"
        and "the database is on fire" in server_error["traceback"]
    )
    stream = next(i for p in syncs for i in p["requests"] if i["path"] == "/api/stream")
    assert stream["response_size_sum"] == 8000 and stream["response_sizes"] == {"8": 1}
    (startup,) = hub.of_kind("startup")
    assert '"/api/items/{item_id}"' in startup["openapi"]
    assert {"method": "post", "path": "/api/items/"} in startup["paths"]


@pytest.mark.parametrize(
    ("mode", "consumer"),
    [
        ("raise", None),
        ("object", None),
        ("long", "c" * 128),
        ("state", "from-state"),
        ("async", "async-consumer"),
    ],
)
def test_misbehaving_consumer_callbacks(
    recording_hub: tuple[RecordingHub, str], mode: str, consumer: str | None
) -> None:
    hub, url = recording_hub

    def traffic(client: httpx.Client, base: str) -> None:
        for _ in range(3):
            assert client.get("/hello").text == "hello"

    output = run(hub, url, "tests.support.apps.callbacks:app", traffic, CALLBACK_MODE=mode)
    assert counts(hub) == {(consumer, "GET", "/hello", 200): 3}
    if mode in ("raise", "object"):
        assert output.count("consumer_callback") == 1, output  # one warning, not one per request


def test_heartbeat_without_traffic(recording_hub: tuple[RecordingHub, str]) -> None:
    hub, url = recording_hub
    run(hub, url, "tests.support.apps.callbacks:app", lambda client, base: hub.wait_for("sync", 3))
    syncs = hub.of_kind("sync")
    assert all(p["requests"] == [] for p in syncs)
    assert any(p["resources"] is not None for p in syncs)
    resources = next(p["resources"] for p in syncs if p["resources"] is not None)
    assert resources["memory_rss"] > 1_000_000 and resources["cpu_percent"] >= 0


def test_through_the_local_hub(hub_db: str | Path) -> None:
    """The FastAPI example against the real local hub (on each storage backend): what the hub
    reports is exactly what was sent."""
    from apitally_hub import HubServer

    client_id = str(uuid.uuid4())
    with HubServer(hub_db) as hub:
        environment = {
            "APITALLY_CLIENT_ID": client_id,
            "APITALLY_HUB_BASE_URL": hub.url,
            "APITALLY_SYNC_INTERVAL": "1",
        }
        with app_process("examples.fastapi_app:app", environment) as process:
            process.wait_ready("/__ready__")
            with httpx.Client(base_url=process.url) as client:
                for i in range(40):
                    client.get(f"/api/items/{i}", headers={"x-consumer": f"c{i % 4}"})
                for _ in range(3):
                    client.get("/api/items/x")
                    client.get("/api/fail")
                    client.get("/api/me", headers={"x-api-key": "vip"})
        endpoints = {
            (e["method"], e["path"]): e for e in hub.query(client_id, "dev", "endpoints")["endpoints"]
        }
        item = endpoints[("GET", "/api/items/{item_id}")]
        assert (item["requests"], item["client_errors"], item["server_errors"]) == (43, 3, 0)
        assert endpoints[("GET", "/api/fail")]["server_errors"] == 3
        consumers = {c["identifier"]: c for c in hub.query(client_id, "dev", "consumers")["consumers"]}
        assert {k: v["requests"] for k, v in consumers.items()} == {
            "c0": 10,
            "c1": 10,
            "c2": 10,
            "c3": 10,
            "vip": 3,
        }
        assert (consumers["vip"]["name"], consumers["vip"]["group"]) == ("Customer vip", "Customers")
        (validation,) = hub.query(client_id, "dev", "validation-errors")["validation_errors"]
        assert (validation["loc"], validation["count"]) == (["path", "item_id"], 3)
        (error,) = hub.query(client_id, "dev", "server-errors")["server_errors"]
        assert (error["type"], error["count"]) == ("builtins.RuntimeError", 3)
        (instance,) = hub.query(client_id, "dev", "instances")["instances"]
        assert instance["has_openapi"] and instance["versions"]["app"] == "1.0.0"
        assert hub.query(client_id, "dev", "rejections")["rejections"] == []


def test_without_lifespan_the_app_is_described_too(recording_hub: tuple[RecordingHub, str]) -> None:
    hub, url = recording_hub

    def traffic(client: httpx.Client, base: str) -> None:
        for i in range(5):
            assert client.get(f"/items/{i}").status_code == 200
        # No lifespan shutdown either: wait for a periodic sync to carry the requests.
        deadline = time.monotonic() + 10
        while sum(counts(hub).values()) < 5 and time.monotonic() < deadline:
            time.sleep(0.05)

    run(hub, url, "examples.starlette_app:app", traffic, "--lifespan", "off")
    assert counts(hub) == {(None, "GET", "/items/{item_id:int}", 200): 5}
    (startup,) = hub.of_kind("startup")
    assert {"method": "get", "path": "/items/{item_id:int}"} in startup["paths"]
