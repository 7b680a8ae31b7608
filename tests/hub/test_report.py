"""``apitally-otel report``: exact counts in ``--json`` and a readable text rendering."""

from __future__ import annotations

import json
import socket
from typing import Any

import httpx
import pytest

from apitally_hub import HubServer
from apitally_hub.cli import main
from tests.support.hub_samples import REQUEST_ITEM, new_uuid, startup, sync

ACME = {"identifier": "acme", "name": "Acme Corp", "group": "Enterprise"}


@pytest.fixture
def ingested(hub: HubServer, http: httpx.Client, client_id: str) -> str:
    """Two instances; known requests, errors and consumers for one app."""
    instance_a, instance_b = new_uuid(), new_uuid()
    not_found = {
        **REQUEST_ITEM,
        "status_code": 404,
        "request_count": 2,
        "request_size_sum": 10,
        "response_size_sum": 20,
        "response_times": {"0": 1, "250": 1},
        "request_sizes": {"0": 2},
        "response_sizes": {"0": 2},
    }
    messages = [
        ("startup", startup(instance_a)),
        ("sync", sync(instance_uuid=instance_a, requests=[REQUEST_ITEM, not_found], consumers=[ACME])),
        (
            "sync",
            sync(
                instance_uuid=instance_b,
                requests=[{**REQUEST_ITEM, "consumer": None}],
                consumers=[],
                validation_errors=[],
                server_errors=[],
            ),
        ),
    ]
    for endpoint, message in messages:
        assert http.post(f"/v2/{client_id}/dev/{endpoint}", json=message).status_code == 202
    hub.settle()
    return client_id


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_json_report_has_exact_counts(
    hub: HubServer, ingested: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "report", "--hub", hub.url, "--client-id", ingested, "--env", "dev", "--json")
    assert code == 0
    report: dict[str, Any] = json.loads(out)
    assert (report["client_id"], report["env"], report["hub"]) == (ingested, "dev", hub.url)
    [endpoint] = report["endpoints"]
    # bins {0: 61, 10: 18, 120: 6, 250: 1}, N = 86: p50 rank 43 -> 0; p95 rank 82 -> 120; p99 rank 86 -> 250
    assert {
        k: endpoint[k]
        for k in (
            "method",
            "path",
            "requests",
            "client_errors",
            "server_errors",
            "p50_ms",
            "p95_ms",
            "p99_ms",
            "request_bytes",
            "response_bytes",
        )
    } == {
        "method": "GET",
        "path": "/api/items/{item_id}",
        "requests": 86,
        "client_errors": 2,
        "server_errors": 0,
        "p50_ms": 0,
        "p95_ms": 120,
        "p99_ms": 250,
        "request_bytes": 2 * REQUEST_ITEM["request_size_sum"] + 10,
        "response_bytes": 2 * 67890 + 20,
    }
    consumers = {c["identifier"]: c for c in report["consumers"]}
    assert consumers["acme"]["requests"] == 44
    assert (consumers["acme"]["name"], consumers["acme"]["group"]) == ("Acme Corp", "Enterprise")
    assert set(consumers) == {"acme"}  # consumers are listed by their traffic in the window
    assert [(v["count"], v["loc"]) for v in report["validation_errors"]] == [(3, ["query", "foo"])]
    assert [(s["count"], s["type"]) for s in report["server_errors"]] == [(1, "builtins.ValueError")]
    assert len(report["instances"]) == 2
    assert all(i["online"] for i in report["instances"])


def test_text_report_renders_tables(
    hub: HubServer, ingested: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "report", "--hub", hub.url, "--client-id", ingested, "--since", "30m")
    assert code == 0
    for heading in ("Endpoints", "Consumers", "Validation errors", "Server errors", "Instances"):
        assert f"\n{heading}\n" in out
    assert "/api/items/{item_id}" in out and "Acme Corp" in out and "builtins.ValueError" in out
    assert "online" in out and "2.3%" in out  # error rate 2 / 86


def test_empty_app_renders_none(hub: HubServer, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "report", "--hub", hub.url, "--client-id", new_uuid())
    assert code == 0
    assert out.count("(none)") == 5


def test_unreachable_hub_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    code, _, err = run(capsys, "report", "--hub", f"http://127.0.0.1:{port}", "--client-id", new_uuid())
    assert code == 1
    assert "cannot reach the hub" in err


def test_bad_since_exits_1(hub: HubServer, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "report", "--hub", hub.url, "--client-id", new_uuid(), "--since", "soon")
    assert code == 1
    assert "422" in err
