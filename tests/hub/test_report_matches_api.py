"""``apitally-otel report``: every column of every text table shows what the JSON query API answers.

The report is rendered from the query API's documents, so a column that reads a key the API does
not send shows a placeholder (``-``, ``0``) instead of the data. This test reads the API itself
(not the report's JSON) and compares each table of the text, cell by cell, on the same data.
"""

from __future__ import annotations

import re
import time
from datetime import datetime, timezone
from typing import Any

import httpx
import pytest

from apitally_hub import HubServer
from apitally_hub.cli import main
from apitally_hub.report.client import HubQueryClient
from tests.support.hub_samples import REQUEST_ITEM, VALIDATION_ERROR_ITEM, gzip_lines, log_line, new_uuid
from tests.support.hub_samples import startup as startup_message
from tests.support.hub_samples import sync as sync_message

CONSUMERS = [{"identifier": "acme", "name": "Acme Corp", "group": "Enterprise"}]  # "solo": no name
LOGGED = [  # (method, path, url, status, response time in s, consumer): distinct times in ms
    ("GET", "/api/items/{item_id}", "https://host/api/items/1", 200, 0.0123, "acme"),
    ("POST", "/api/items", "https://host/api/items", 422, 0.1049, "solo"),
    ("GET", "/api/items/{item_id}", "https://host/api/items/2?x=1", 500, 1.5006, None),
    ("DELETE", "/api/items/{item_id}", "https://host/api/items/3", 204, 0.0004, "acme"),
]


@pytest.fixture
def ingested(hub: HubServer, http: httpx.Client, client_id: str) -> str:
    """Two instances; two endpoints with 4xx and 5xx; two consumers; validation and server
    errors; four logged requests with distinct response times."""
    instance_a, instance_b = new_uuid(), new_uuid()
    post = {
        **REQUEST_ITEM,
        "consumer": "solo",
        "method": "POST",
        "path": "/api/items",
        "status_code": 422,
        "request_count": 7,
        "request_size_sum": 700,
        "response_size_sum": 10500,
        "response_times": {"0": 2, "20": 4, "500": 1},
        "request_sizes": {"0": 7},
        "response_sizes": {"1": 7},
    }
    failed = {
        **REQUEST_ITEM,
        "status_code": 500,
        "request_count": 3,
        "response_times": {"1000": 3},
        "request_size_sum": 0,
        "response_size_sum": 90,
        "request_sizes": {"0": 3},
        "response_sizes": {"0": 3},
    }
    second = {**VALIDATION_ERROR_ITEM, "method": "POST", "path": "/api/items", "loc": ["body", "price"]}
    messages = [
        ("startup", startup_message(instance_a)),
        ("startup", startup_message(instance_b)),
        (
            "sync",
            sync_message(
                instance_uuid=instance_a,
                requests=[REQUEST_ITEM, post],
                validation_errors=[VALIDATION_ERROR_ITEM, second],
                consumers=CONSUMERS,
            ),
        ),
        (
            "sync",
            sync_message(instance_uuid=instance_b, requests=[failed], validation_errors=[], consumers=[]),
        ),
    ]
    for endpoint, message in messages:
        assert http.post(f"/v2/{client_id}/dev/{endpoint}", json=message).status_code == 202
    now = time.time()
    lines = []
    for i, (method, path, url, status, seconds, consumer) in enumerate(LOGGED):
        line = log_line(
            timestamp=now - 60 * (i + 1),
            method=method,
            path=path,
            url=url,
            status_code=status,
            consumer=consumer,
        )
        line["response"]["response_time"] = seconds
        lines.append(line)
    upload = http.post(f"/v2/{client_id}/dev/log", params={"uuid": new_uuid()}, content=gzip_lines(lines))
    assert upload.status_code == 202
    hub.settle()
    return client_id


def shown(value: Any) -> str:
    """How a table cell shows an API value: ``-`` for none, numbers as written, long text cut."""
    if value is None:
        return "-"
    text = f"{value:g}" if isinstance(value, float) else str(value)
    return text if len(text) <= 60 else text[:59] + "…"


def tables(text: str) -> dict[str, list[dict[str, str]]]:
    """Each section of the text report (keyed by its heading, without a parenthesised suffix) as a
    list of rows ``{column header: cell}``. Columns are cut where the dashed rule under the headers
    puts them, so cells with spaces in them stay whole."""
    sections: dict[str, list[dict[str, str]]] = {}
    blocks = re.split(r"\n(?=\S)", text)
    for block in blocks:
        heading, *lines = block.rstrip("\n").split("\n")
        if len(lines) < 2 or not set(lines[1].strip()) <= {"-", " "}:
            continue
        spans = [m.span() for m in re.finditer(r"-+", lines[1])]

        def cells(line: str, spans: list[tuple[int, int]] = spans) -> list[str]:
            return [line[a:b].strip() for a, b in spans[:-1]] + [line[spans[-1][0] :].strip()]

        headers = cells(lines[0])
        rows = [dict(zip(headers, cells(line), strict=True)) for line in lines[2:]]
        sections[heading.split(" (")[0]] = rows
    return sections


def utc(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def test_every_column_of_the_text_report_is_the_api_value(
    hub: HubServer, ingested: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["report", "--hub", hub.url, "--client-id", ingested, "--env", "dev"]) == 0
    text = capsys.readouterr().out
    report = tables(text)
    with HubQueryClient(hub.url) as api:

        def get(resource: str, key: str, **params: str) -> list[dict[str, Any]]:
            items: list[dict[str, Any]] = api.app(ingested, "dev", resource, since="1h", **params)[key]
            return items

        endpoints = get("endpoints", "endpoints")
        consumers = get("consumers", "consumers")
        validation_errors = get("validation-errors", "validation_errors")
        server_errors = get("server-errors", "server_errors")
        instances = api.app(ingested, "dev", "instances")["instances"]
        requests = get("requests", "items", limit="20")
    checked_at = time.time()

    assert set(report) == {
        "Endpoints",
        "Consumers",
        "Validation errors",
        "Server errors",
        "Instances",
        "Request log",
    }
    assert len(endpoints) == 2 and len(consumers) == 2 and len(validation_errors) == 2
    assert len(server_errors) == 1 and len(instances) == 2 and len(requests) == len(LOGGED)

    assert report["Endpoints"] == [
        {
            "method": e["method"],
            "path": e["path"],
            "requests": shown(e["requests"]),
            "4xx": shown(e["client_errors"]),
            "5xx": shown(e["server_errors"]),
            "error rate": f"{e['error_rate']:.1%}",
            "p50 ms": shown(e["p50_ms"]),
            "p95 ms": shown(e["p95_ms"]),
            "p99 ms": shown(e["p99_ms"]),
            "req bytes": shown(e["request_bytes"]),
            "resp bytes": shown(e["response_bytes"]),
        }
        for e in endpoints
    ]
    assert report["Consumers"] == [
        {
            "identifier": c["identifier"],
            "name": shown(c["name"]),
            "group": shown(c["group"]),
            "requests": shown(c["requests"]),
            "4xx": shown(c["client_errors"]),
            "5xx": shown(c["server_errors"]),
        }
        for c in consumers
    ]
    assert report["Validation errors"] == [
        {
            "count": shown(v["count"]),
            "method": v["method"],
            "path": v["path"],
            "loc": ".".join(v["loc"]),
            "type": v["type"],
            "msg": shown(v["msg"]),
        }
        for v in validation_errors
    ]
    assert report["Server errors"] == [
        {
            "count": shown(s["count"]),
            "method": s["method"],
            "path": s["path"],
            "type": s["type"],
            "msg": shown(s["msg"]),
        }
        for s in server_errors
    ]
    assert len(report["Instances"]) == len(instances)
    for row, instance in zip(report["Instances"], instances, strict=True):
        ago = re.fullmatch(r"(\d+)s ago", row.pop("last sync"))
        assert ago is not None
        assert abs((checked_at - int(ago.group(1))) - instance["last_sync_at"]) <= 5
        assert row == {
            "instance": instance["instance_uuid"],
            "status": "online" if instance["online"] else "offline",
            "interval s": shown(instance["sync_interval"]),
            "client": instance["client"],
            "versions": shown(", ".join(f"{k} {v}" for k, v in sorted(instance["versions"].items()))),
        }
    assert report["Request log"] == [
        {
            "time": utc(r["timestamp"]),
            "method": r["method"],
            "path": r["path"],
            "status": shown(r["status_code"]),
            "ms": shown(round(r["response_time_ms"])),
            "consumer": r["consumer"] or "",
            "url": r["url"],
        }
        for r in requests
    ]
    # The data itself, so the comparison cannot pass on two empty or zero columns.
    assert [row["ms"] for row in report["Request log"]] == ["12", "105", "1501", "0"]
    assert "Request log (latest 4 of 4)" in text
    assert {row["5xx"] for row in report["Endpoints"]} == {"0", "3"}
    assert {row["name"] for row in report["Consumers"]} == {"Acme Corp", "-"}
