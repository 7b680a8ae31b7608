"""The example messages of hub-protocol.md §3, §4 (with the items of §4.1-4.4) and §5.

Elisions (``…``) in the document are filled with valid values; every builder returns a fresh
message with new UUIDs, so tests never collide on ``message_uuid``.
"""

from __future__ import annotations

import base64
import copy
import gzip
import json
import time
import uuid
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from apitally_hub import HubServer

OPENAPI = json.dumps({"openapi": "3.1.0", "info": {"title": "demo", "version": "1.2.3"}, "paths": {}})

REQUEST_ITEM: dict[str, Any] = {
    "consumer": "acme",
    "method": "GET",
    "path": "/api/items/{item_id}",
    "status_code": 200,
    "request_count": 42,
    "request_size_sum": 30123,
    "response_size_sum": 67890,
    "response_times": {"0": 30, "10": 9, "120": 3},
    "request_sizes": {"0": 40, "12": 2},
    "response_sizes": {"1": 42},
}
VALIDATION_ERROR_ITEM: dict[str, Any] = {
    "consumer": None,
    "method": "GET",
    "path": "/api/val",
    "loc": ["query", "foo"],
    "msg": "Input should be a valid integer, unable to parse string as an integer",
    "type": "int_parsing",
    "error_count": 3,
}
SERVER_ERROR_ITEM: dict[str, Any] = {
    "consumer": None,
    "method": "POST",
    "path": "/api/baz",
    "type": "builtins.ValueError",
    "msg": "baz",
    "traceback": 'Traceback (most recent call last):\n  File "app.py", line 1, in baz\nValueError: baz',
    "sentry_event_id": None,
    "error_count": 1,
}
CONSUMER_ITEM: dict[str, Any] = {"identifier": "acme-corp", "name": "Acme Corp", "group": "Enterprise"}


def new_uuid() -> str:
    return str(uuid.uuid4())


def startup(instance_uuid: str | None = None) -> dict[str, Any]:
    return {
        "instance_uuid": instance_uuid or new_uuid(),
        "message_uuid": new_uuid(),
        "paths": [{"method": "get", "path": "/api/items/{item_id}"}],
        "openapi": OPENAPI,
        "versions": {
            "python": "3.11.7",
            "starlette": "1.10.0",
            "fastapi": "0.165.0",
            "uvicorn": "0.54.0",
            "app": "1.2.3",
        },
        "client": "python:starlette",
    }


def sync(
    *,
    instance_uuid: str | None = None,
    timestamp: float | None = None,
    requests: list[dict[str, Any]] | None = None,
    validation_errors: list[dict[str, Any]] | None = None,
    server_errors: list[dict[str, Any]] | None = None,
    consumers: list[dict[str, Any]] | None = None,
    resources: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The §4 example; each list defaults to the one example item of §4.1-4.4."""
    return {
        "instance_uuid": instance_uuid or new_uuid(),
        "message_uuid": new_uuid(),
        "timestamp": time.time() if timestamp is None else timestamp,
        "requests": copy.deepcopy([REQUEST_ITEM] if requests is None else requests),
        "validation_errors": copy.deepcopy(
            [VALIDATION_ERROR_ITEM] if validation_errors is None else validation_errors
        ),
        "server_errors": copy.deepcopy([SERVER_ERROR_ITEM] if server_errors is None else server_errors),
        "consumers": copy.deepcopy([CONSUMER_ITEM] if consumers is None else consumers),
        "resources": {"cpu_percent": 3.2, "memory_rss": 123456789} if resources is None else resources,
    }


def log_line(
    *,
    timestamp: float | None = None,
    method: str = "GET",
    path: str = "/api/foo/{bar}",
    url: str = "https://host/api/foo/123?foo=bar&token=******",
    status_code: int = 200,
    consumer: str | None = "acme",
) -> dict[str, Any]:
    """The §5 example line (all optional parts present)."""
    ts = time.time() if timestamp is None else timestamp
    request: dict[str, Any] = {
        "timestamp": ts,
        "method": method,
        "path": path,
        "url": url,
        "headers": [["accept", "*/*"]],
        "size": 123,
        "body": base64.b64encode(b'{"name": "x"}').decode(),
        "client_ip": "192.0.2.1",
    }
    if consumer is not None:
        request["consumer"] = consumer
    return {
        "uuid": new_uuid(),
        "request": request,
        "response": {
            "status_code": status_code,
            "response_time": 0.105,
            "headers": [["content-type", "application/json"]],
            "size": 17,
            "body": base64.b64encode(b'{"ok": true, "n": 1}').decode(),
        },
        "exception": {
            "type": "builtins.ValueError",
            "message": "boom",
            "traceback": "Traceback ...\nValueError: boom",
        },
        "logs": [
            {
                "timestamp": ts + 0.01,
                "logger": "app.svc",
                "level": "WARNING",
                "message": "slow",
                "file": "/app/svc.py",
                "line": 42,
            }
        ],
        "spans": [
            {
                "span_id": "00f067aa0ba902b7",
                "parent_span_id": None,
                "name": "read_item",
                "kind": "INTERNAL",
                "start_time": int(ts * 1e9),
                "end_time": int(ts * 1e9) + 105_000_000,
                "status": "ERROR",
                "attributes": {},
            }
        ],
        "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
    }


def minimal_log_line() -> dict[str, Any]:
    """A line with only the required keys (the client omits null or empty values)."""
    return {
        "uuid": new_uuid(),
        "request": {"timestamp": time.time(), "method": "GET", "url": "http://localhost/x"},
        "response": {"status_code": 204, "response_time": 0.001},
    }


def gzip_lines(lines: list[dict[str, Any]]) -> bytes:
    return gzip.compress("".join(json.dumps(line) + "\n" for line in lines).encode())


def settling_client(hub: HubServer) -> httpx.Client:
    """A client whose reads of the query API and the dashboard first wait until what the hub
    accepted is folded (ingest commits messages to a queue; aggregates follow within milliseconds)."""

    def settle(request: httpx.Request) -> None:
        if request.method == "GET" and not request.url.path.startswith(("/v2/", "/static/", "/health")):
            hub.settle()

    return httpx.Client(base_url=hub.url, timeout=10.0, event_hooks={"request": [settle]})


# The rows of the group-traffic backfill tests (one per backend): consumers (identifier, group),
# consumer_traffic (resolution, bucket, consumer, path, status, count, request bytes, response
# bytes), and the group_traffic rows the migration must make of them.
BACKFILL_CONSUMERS = [("a", "Gold"), ("b", "Gold"), ("x", None)]
BACKFILL_TRAFFIC = [
    (60, 0, "a", "/1", 200, 3, 30, 300),
    (60, 0, "a", "/2", 200, 2**53, 1, 1),  # saturates, never overflows
    (60, 0, "b", "/1", 500, 1, 10, 100),
    (60, 0, "x", "/1", 200, 7, 70, 700),  # no group: left out
    (3600, 0, "b", "/1", 500, 1, 10, 100),
]
BACKFILL_EXPECTED = [
    ("c", "prod", 60, 0, "Gold", 200, 2**53, 31, 301),
    ("c", "prod", 60, 0, "Gold", 500, 1, 10, 100),
    ("c", "prod", 3600, 0, "Gold", 500, 1, 10, 100),
]
