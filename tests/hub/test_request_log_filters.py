"""The request log's filters on sizes and body text, in the JSON API and the dashboard's page, on
each backend: the right items, cursor paging, and the body search's bound (the newest
:data:`LOG_BODY_SCAN` requests matching the other filters) said in the answer and on the page."""

from __future__ import annotations

import base64
import time
from typing import Any

import httpx

from apitally_hub.storage.records import LOG_BODY_SCAN
from tests.support.hub_samples import gzip_lines, log_line, new_uuid


def line(
    n: int, *, request_body: bytes, response_body: bytes, sizes: tuple[int, int], at: float | None = None
) -> dict[str, Any]:
    item = log_line(url=f"https://host/items/{n}", timestamp=at)
    item["request"]["body"] = base64.b64encode(request_body).decode()
    item["response"]["body"] = base64.b64encode(response_body).decode()
    item["request"]["size"], item["response"]["size"] = sizes
    return item


def upload(http: httpx.Client, client_id: str, lines: list[dict[str, Any]]) -> None:
    for start in range(0, len(lines), 1000):
        response = http.post(
            f"/v2/{client_id}/dev/log",
            params={"uuid": new_uuid()},
            content=gzip_lines(lines[start : start + 1000]),
        )
        assert response.status_code == 202, response.text


def urls(http: httpx.Client, client_id: str, **params: str) -> list[str]:
    response = http.get(f"/api/{client_id}/dev/requests", params={"since": "1h", **params})
    assert response.status_code == 200, response.text
    return [item["url"].rsplit("/", 1)[-1] for item in response.json()["items"]]


def fill(http: httpx.Client, client_id: str) -> None:
    now = time.time()
    upload(
        http,
        client_id,
        [
            line(
                0,
                request_body=b'{"sku": "RED-1"}',
                response_body=b'{"ok": true}',
                sizes=(10, 100),
                at=now - 5,
            ),
            line(
                1,
                request_body=b'{"sku": "blue-2"}',
                response_body=b'{"error": "Out of stock"}',
                sizes=(20, 200),
                at=now - 4,
            ),
            line(
                2, request_body=b"", response_body=b'{"ok": true, "note": "red"}', sizes=(30, 300), at=now - 3
            ),
            line(
                3,
                request_body=b"\xff\xfe binary",
                response_body=b"<html>Stock</html>",
                sizes=(40, 400),
                at=now - 2,
            ),
        ],
    )


def test_size_filters(http: httpx.Client, client_id: str) -> None:
    fill(http, client_id)
    assert urls(http, client_id, min_request_size="20") == ["3", "2", "1"]
    assert urls(http, client_id, max_request_size="20") == ["1", "0"]
    assert urls(http, client_id, min_response_size="200", max_response_size="300") == ["2", "1"]
    assert urls(http, client_id, min_request_size="25", max_response_size="350") == ["2"]
    response = http.get(f"/api/{client_id}/dev/requests", params={"min_request_size": "-1"})
    assert response.status_code == 422 and response.json()["detail"][0]["loc"] == [
        "query",
        "min_request_size",
    ]


def test_body_filters(http: httpx.Client, client_id: str) -> None:
    fill(http, client_id)
    assert urls(http, client_id, request_body="red") == ["0"]
    assert urls(http, client_id, response_body="RED") == ["2"]
    assert urls(http, client_id, response_body="stock") == ["3", "1"]
    assert urls(http, client_id, response_body="stock", request_body="sku") == ["1"]
    assert urls(http, client_id, response_body="stock", max_request_size="20") == ["1"]
    assert urls(http, client_id, request_body="binary") == ["3"]
    assert urls(http, client_id, request_body="nowhere") == []
    body = http.get(f"/api/{client_id}/dev/requests", params={"since": "1h", "response_body": "ok"}).json()
    assert body["total"] == 2 and body["body_search_scanned_at_most"] == LOG_BODY_SCAN
    # paged with the cursor, one at a time
    seen, cursor = [], None
    while True:
        params = {"since": "1h", "response_body": "o", "limit": "1", **({"cursor": cursor} if cursor else {})}
        page = http.get(f"/api/{client_id}/dev/requests", params=params).json()
        seen += [item["url"].rsplit("/", 1)[-1] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ["3", "2", "1", "0"]


def test_body_search_reads_only_the_newest_items(http: httpx.Client, client_id: str) -> None:
    now = time.time()
    old = [
        line(i, request_body=b"needle", response_body=b"", sizes=(1, 1), at=now - 600 - i) for i in range(3)
    ]
    new = [
        line(100 + i, request_body=b"hay", response_body=b"", sizes=(1, 1), at=now - 500 + i * 0.01)
        for i in range(LOG_BODY_SCAN)
    ]
    upload(http, client_id, old + new)
    assert urls(http, client_id, request_body="needle") == []  # past the bound
    narrowed = urls(http, client_id, request_body="needle", until="550")
    assert narrowed == ["0", "1", "2"]


def test_the_page_has_the_filters_and_says_the_bound(http: httpx.Client, client_id: str) -> None:
    fill(http, client_id)
    page = http.get(
        f"/apps/{client_id}/dev/requests", params={"response_body": "stock", "min_request_size": "30"}
    )
    assert page.status_code == 200, page.text[:300]
    for label in (
        "Request body contains",
        "Response body contains",
        "Min request bytes",
        "Max response bytes",
    ):
        assert f"<label>{label} <input" in page.text
    assert 'id="body-scan"' in page.text and f"searched the last {LOG_BODY_SCAN:,} requests" in page.text
    assert page.text.count('data-request="') == 1
    assert "response_body=stock" in page.text and "min_request_size=30" in page.text  # the CSV link
    plain = http.get(f"/apps/{client_id}/dev/requests")
    assert 'id="body-scan"' not in plain.text and plain.text.count('data-request="') == 4


def test_client_ip_filter(http: httpx.Client, client_id: str) -> None:
    now = time.time()
    lines = [log_line(url=f"https://host/items/{n}", timestamp=now - 5 + n) for n in range(3)]
    lines[0]["request"]["client_ip"] = "10.0.0.1"
    lines[1]["request"]["client_ip"] = "2001:db8::1"
    del lines[2]["request"]["client_ip"]
    upload(http, client_id, lines)
    assert urls(http, client_id, client_ip="10.0.0.1") == ["0"]
    assert urls(http, client_id, client_ip="2001:0db8:0::1") == ["1"]  # the normal text form
    assert urls(http, client_id, client_ip="10.0.0.2") == []
    bad = http.get(f"/api/{client_id}/dev/requests", params={"since": "1h", "client_ip": "10.0.0.0/33"})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["query", "client_ip"]
    page = http.get(f"/apps/{client_id}/dev/requests", params={"client_ip": "10.0.0.1"})
    assert page.status_code == 200, page.text[:300]
    assert "<label>Client IP <input" in page.text and page.text.count('data-request="') == 1
    assert "client_ip=10.0.0.1" in page.text  # the CSV link
    item_page = http.get(f"/apps/{client_id}/dev/requests/{lines[0]['uuid']}")
    assert item_page.status_code == 200, item_page.text[:300]
    assert "<dt>Client IP</dt>" in item_page.text and "requests?client_ip=10.0.0.1" in item_page.text
    # An item without the field (an older client, the classic 0.x one, or logged before the
    # migration): its page shows a dash.
    without = http.get(f"/apps/{client_id}/dev/requests/{lines[2]['uuid']}")
    assert without.status_code == 200, without.text[:300]
    assert '<dt>Client IP</dt><dd class="mono">\N{EN DASH}</dd>' in without.text
