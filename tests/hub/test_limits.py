"""Bounded resources (issue 11): the body budget, per-line and per-file request-log limits, the
per-client ingest rate and the body timeout, each against a real hub on loopback."""

from __future__ import annotations

import base64
import gzip
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from apitally_hub import HubServer
from apitally_hub.protocol.log_limits import BODY_TOO_LARGE
from tests.support.hub_samples import gzip_lines, log_line, new_uuid, settling_client, sync


def stored_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))


def raw_request(hub: HubServer, path: str, headers: dict[str, str], body: bytes = b"") -> socket.socket:
    """A connection that sent the request line, ``headers`` and the start of a body, and holds."""
    host, port = hub.url.removeprefix("http://").rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=10)
    head = f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    sock.sendall(head.encode() + body)
    return sock


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, rest


def wait_until(predicate: Any, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


# -- request-log amplification ----------------------------------------------------------------


def huge_body_line(base64_chars: int) -> dict[str, Any]:
    line = log_line()
    line["request"]["body"] = "A" * base64_chars  # valid base64 of zero bytes... lots of them
    return line


@pytest.fixture
def own_hub(tmp_path: Path) -> Iterator[HubServer]:
    with HubServer(tmp_path / "hub.sqlite") as hub:
        yield hub


def test_a_48_kB_upload_holding_a_49_MB_body_stores_nothing_big(own_hub: HubServer) -> None:
    """It was a 202 writing ~50 MB to the database per request (16 requests: 884 MB)."""
    client_id = new_uuid()
    body = gzip.compress((json.dumps(huge_body_line(49_000_000)) + "\n").encode(), 9)
    assert len(body) < 60_000
    before = stored_bytes(own_hub.db_path)
    with httpx.Client(base_url=own_hub.url, timeout=30) as http:
        for _ in range(4):
            response = http.post(f"/v2/{client_id}/dev/log", params={"uuid": new_uuid()}, content=body)
            assert response.status_code == 413, response.text
        assert http.get(f"/api/{client_id}/dev/requests").json()["total"] == 0
        assert http.get("/health").json()["status"] == "ok"
    assert stored_bytes(own_hub.db_path) - before < 1_000_000


def test_a_body_over_the_protocol_limit_is_cut_to_the_sentinel(own_hub: HubServer) -> None:
    client_id = new_uuid()
    big, fine = huge_body_line(300_000), log_line()
    big["response"]["body"] = "B" * 70_000
    body = gzip_lines([big, fine])
    with settling_client(own_hub) as http:
        response = http.post(f"/v2/{client_id}/dev/log", params={"uuid": new_uuid()}, content=body)
        assert response.status_code == 202, response.text
        item = http.get(f"/api/{client_id}/dev/requests/{big['uuid']}").json()["item"]
        assert item["request"]["body"] == item["response"]["body"] == BODY_TOO_LARGE
        assert base64.b64decode(BODY_TOO_LARGE) == b"<body too large>"
        assert item["request"]["url"] == big["request"]["url"]  # the rest of the line is kept
        kept = http.get(f"/api/{client_id}/dev/requests/{fine['uuid']}").json()["item"]
        assert kept == fine  # lines within the limits are stored as sent


def test_a_small_upload_that_expands_too_much_is_413(own_hub: HubServer) -> None:
    """Valid lines, but 48 kB expanding to 30 MB: over 64 times the upload (and the 8 MB floor)."""
    line = log_line()
    line["logs"] = [{**line["logs"][0], "message": "x" * 2048} for _ in range(1000)]
    lines = []
    for _ in range(15):
        lines.append({**line, "uuid": new_uuid()})
    body = gzip_lines(lines)
    assert len(body) < 200_000
    response = httpx.post(f"{own_hub.url}/v2/{new_uuid()}/dev/log", params={"uuid": new_uuid()}, content=body)
    assert response.status_code == 413
    assert "Decompressed body is larger than" in response.text


# -- the body budget ------------------------------------------------------------------------------


def test_concurrent_big_bodies_over_the_budget_get_503_before_being_read() -> None:
    """32 concurrent 9.5 MB bodies took the hub to 1.6 GB; now bodies in flight have a budget."""
    with HubServer(max_inflight_body_bytes=20_000_000) as hub:
        budget = hub.app.state.hub.admission.budget
        size = 9_500_000
        headers = {"Content-Type": "application/json", "Content-Length": str(size)}
        path = f"/v2/{new_uuid()}/dev/sync"
        holders = [raw_request(hub, path, headers, b" " * 100_000) for _ in range(2)]
        try:
            assert wait_until(lambda: budget.in_use == 2 * size)
            third = raw_request(hub, path, headers)  # headers only: answered before any body is sent
            status, response_headers, _ = read_response(third)
            third.close()
            assert status == 503
            assert response_headers["retry-after"] == "2"
            # no Content-Length: the reservation grows chunk by chunk, and fails at 1 MB over
            chunks = iter([b" " * 600_000] * 3)
            json_type = {"content-type": "application/json"}
            chunked = httpx.post(f"{hub.url}{path}", content=chunks, headers=json_type)
            assert chunked.status_code == 503
            assert httpx.post(f"{hub.url}{path}", json=sync()).status_code == 202  # small bodies still fit
            holders[0].sendall(b" " * (size - 100_000))
            status, _, _ = read_response(holders[0])
            assert status == 400  # blank JSON: refused, and its reservation given back
        finally:
            for sock in holders:
                sock.close()
        assert wait_until(lambda: budget.in_use == 0)
        assert httpx.post(f"{hub.url}{path}", json=sync()).status_code == 202


# -- the per-client ingest rate ---------------------------------------------------------------------


def test_a_client_over_its_ingest_rate_gets_429_and_others_do_not() -> None:
    with HubServer(ingest_rate=2_000, ingest_burst=20_000) as hub, httpx.Client(base_url=hub.url) as http:
        greedy, other = new_uuid(), new_uuid()
        statuses = [http.post(f"/v2/{greedy}/dev/sync", json=sync()).status_code for _ in range(40)]
        assert statuses[0] == 202 and statuses[-1] == 429
        limited = http.post(f"/v2/{greedy}/dev/sync", json=sync())
        assert limited.status_code == 429
        assert 1 <= int(limited.headers["retry-after"]) <= 3
        assert http.post(f"/v2/{other}/dev/sync", json=sync()).status_code == 202
        assert http.get(f"/api/{greedy}/dev/rejections").json()["rejections"] == []  # nothing recorded
        time.sleep(int(limited.headers["retry-after"]))
        assert http.post(f"/v2/{greedy}/dev/sync", json=sync()).status_code == 202


def test_log_files_are_charged_what_they_decompress_to() -> None:
    line = log_line()
    line["logs"] = [{**line["logs"][0], "message": "y" * 2000} for _ in range(100)]
    body = gzip_lines([line])  # ~2 kB on the wire, ~220 kB kept
    with HubServer(ingest_rate=10_000, ingest_burst=100_000) as hub, httpx.Client(base_url=hub.url) as http:
        client_id = new_uuid()
        first = http.post(f"/v2/{client_id}/dev/log", params={"uuid": new_uuid()}, content=body)
        assert first.status_code == 202
        response = http.post(f"/v2/{client_id}/dev/log", params={"uuid": new_uuid()}, content=body)
        assert response.status_code == 429
        assert int(response.headers["retry-after"]) >= 10


# -- the body timeout -------------------------------------------------------------------------------


def test_a_body_that_does_not_arrive_in_time_is_408() -> None:
    with HubServer(body_timeout=0.5) as hub:
        budget = hub.app.state.hub.admission.budget
        headers = {"Content-Type": "application/json", "Content-Length": "5000"}
        sock = raw_request(hub, f"/v2/{new_uuid()}/dev/sync", headers, b"{")
        started = time.monotonic()
        status, _, _ = read_response(sock)
        sock.close()
        assert status == 408
        assert 0.4 < time.monotonic() - started < 5
        assert wait_until(lambda: budget.in_use == 0)
