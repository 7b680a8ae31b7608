"""CSV downloads (``?format=csv`` on the query API's tables): the same rows as the JSON answer with
the same filters, cells safe from spreadsheet formulas, streamed page by page, readable by a
viewer. A real hub over loopback, on each backend."""

from __future__ import annotations

import csv
import html
import io
import re
from collections.abc import Iterator
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from apitally_hub import HubServer
from apitally_hub.web.csv_export import CSV_PAGE_ROWS, TABLES, cell
from tests.support.hub_samples import (
    CONSUMER_ITEM,
    REQUEST_ITEM,
    SERVER_ERROR_ITEM,
    VALIDATION_ERROR_ITEM,
    gzip_lines,
    log_line,
    new_uuid,
    startup,
    sync,
)

FORMULA = '=HYPERLINK("http://evil","x")'
PLUS = "+1+2"
VIEWER = "csv-viewer-token-0123456789"
ADMIN = "csv-admin-token-0123456789ab"


def fill(http: httpx.Client, client_id: str, log_lines: int = 3) -> None:
    base = f"/v2/{client_id}/dev"
    assert http.post(f"{base}/startup", json=startup()).status_code == 202
    requests = [
        REQUEST_ITEM,
        {**REQUEST_ITEM, "consumer": FORMULA, "status_code": 404, "path": "/api/other"},
        {**REQUEST_ITEM, "consumer": "-beta", "method": "POST", "status_code": 500},
    ]
    consumers = [CONSUMER_ITEM, {"identifier": FORMULA, "name": PLUS, "group": "@team"}]
    body = sync(
        requests=requests,
        consumers=consumers,
        validation_errors=[VALIDATION_ERROR_ITEM, {**VALIDATION_ERROR_ITEM, "msg": "-1 is too small"}],
        server_errors=[SERVER_ERROR_ITEM, {**SERVER_ERROR_ITEM, "msg": "=1+1", "type": "\tTab"}],
    )
    assert http.post(f"{base}/sync", json=body).status_code == 202
    lines = []
    for i in range(log_lines):
        consumer = [FORMULA, "acme", "-beta"][i % 3]
        lines.append(
            log_line(consumer=consumer, status_code=[200, 404, 500][i % 3], url=f"https://host/a/{i}")
        )
    for start in range(0, len(lines), 1000):
        chunk = gzip_lines(lines[start : start + 1000])
        response = http.post(f"{base}/log", params={"uuid": new_uuid()}, content=chunk)
        assert response.status_code == 202, response.text


def json_rows(http: httpx.Client, url: str, params: dict[str, str], table: str) -> list[dict[str, Any]]:
    spec = TABLES[table]
    rows: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = {**params, "limit": "1000", **({"cursor": cursor} if cursor else {})}
        response = http.get(f"{url}/{table}", params=page)
        assert response.status_code == 200, response.text
        body = response.json()
        rows += body[spec.rows_key]
        cursor = body.get("next_cursor")
        if not cursor:
            return rows


def csv_rows(http: httpx.Client, url: str, params: dict[str, str], table: str) -> list[list[str]]:
    response = http.get(f"{url}/{table}", params={**params, "format": "csv"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    disposition = response.headers["content-disposition"]
    assert disposition.startswith('attachment; filename="') and f"-dev-{TABLES[table].name}-" in disposition
    rows = list(csv.reader(io.StringIO(response.text)))
    assert rows[0] == list(TABLES[table].columns)
    return rows[1:]


CASES = [
    ("endpoints", {"include_idle": "true", "sort": "requests"}),
    ("endpoints", {"method": "GET"}),
    ("validation-errors", {}),
    ("server-errors", {"path": "/api/baz"}),
    ("consumers", {"sort": "requests"}),
    ("consumers", {"group": "@team"}),
    ("consumer-groups", {}),
    ("requests", {}),
    ("requests", {"status": "4xx", "q": "/a/"}),
    ("requests", {"consumer": FORMULA}),
]


@pytest.mark.parametrize(("table", "params"), CASES)
def test_csv_equals_the_json_api(
    http: httpx.Client, client_id: str, table: str, params: dict[str, str]
) -> None:
    fill(http, client_id)
    url = f"/api/{client_id}/dev"
    window = {"since": "1h", **params}
    expected = json_rows(http, url, window, table)
    got = csv_rows(http, url, window, table)
    assert expected, "the case should have rows"
    columns = TABLES[table].columns
    assert got == [[cell(c, row.get(c)) for c in columns] for row in expected]


def test_cells_are_machine_friendly_and_formula_safe(http: httpx.Client, client_id: str) -> None:
    fill(http, client_id)
    url = f"/api/{client_id}/dev"
    consumers = {r[0]: r for r in csv_rows(http, url, {"since": "1h"}, "consumers")}
    assert "'" + FORMULA in consumers  # the identifier a client sent
    formula_row = consumers["'" + FORMULA]
    assert formula_row[1] == "'" + PLUS and formula_row[2] == "'@team"
    last_seen = formula_row[TABLES["consumers"].columns.index("last_seen")]
    assert datetime.fromisoformat(last_seen).utcoffset() is not None
    assert "'-beta" in {r[6] for r in csv_rows(http, url, {"since": "1h"}, "requests")}
    errors = csv_rows(http, url, {"since": "1h"}, "server-errors")
    assert {r[3] for r in errors} == {"builtins.ValueError", "'\tTab"}
    assert "'=1+1" in {r[4] for r in errors}
    endpoints = csv_rows(
        http, url, {"since": "1h", "method": "GET", "path": "/api/items/{item_id}"}, "endpoints"
    )
    assert endpoints[0][2] == "42" and endpoints[0][5] == "0.0"  # numbers unformatted
    assert cell("n", -3) == "-3" and cell("t", "-3") == "'-3" and cell("t", "\r") == "'\r"


def test_a_large_request_log_streams_page_by_page(http: httpx.Client, client_id: str) -> None:
    count = 2 * CSV_PAGE_ROWS + 500
    fill(http, client_id, log_lines=count)
    url = f"/api/{client_id}/dev/requests"
    chunks = []
    with http.stream("GET", url, params={"since": "1h", "format": "csv"}) as response:
        assert response.status_code == 200
        assert "content-length" not in response.headers
        for chunk in response.iter_raw():
            chunks.append(chunk)
    text = b"".join(chunks).decode()
    rows = list(csv.reader(io.StringIO(text)))[1:]
    assert len(rows) == count
    assert len({r[TABLES["requests"].columns.index("uuid")] for r in rows}) == count
    timestamps = [r[0] for r in rows]
    assert timestamps == sorted(timestamps, reverse=True)
    assert len(chunks) >= 3  # the header and one chunk per page of the store


def test_bad_parameters_are_422_before_streaming(http: httpx.Client, client_id: str) -> None:
    url = f"/api/{client_id}/dev"
    response = http.get(f"{url}/requests", params={"format": "csv", "status": "abc"})
    assert response.status_code == 422 and response.json()["detail"][0]["loc"] == ["query", "status"]
    response = http.get(f"{url}/overview", params={"format": "csv"})
    assert response.status_code == 422 and response.json()["detail"][0]["loc"] == ["query", "format"]
    assert http.get(f"{url}/endpoints", params={"format": "xml"}).status_code == 422


@pytest.fixture(scope="module")
def roles_hub() -> Iterator[HubServer]:
    with HubServer(tokens=[ADMIN], viewer_tokens=[VIEWER]) as hub:
        yield hub


def test_a_viewer_can_download(roles_hub: HubServer) -> None:
    client_id = new_uuid()
    with httpx.Client(base_url=roles_hub.url, headers={"Authorization": f"Bearer {ADMIN}"}) as admin:
        fill(admin, client_id)
    roles_hub.settle()
    with httpx.Client(base_url=roles_hub.url) as anonymous:
        refused = anonymous.get(f"/api/{client_id}/dev/consumers", params={"format": "csv"})
        assert refused.status_code == 401
    with httpx.Client(base_url=roles_hub.url, headers={"Authorization": f"Bearer {VIEWER}"}) as viewer:
        assert len(csv_rows(viewer, f"/api/{client_id}/dev", {"since": "1h"}, "consumers")) == 3
        page = viewer.get(f"/apps/{client_id}/dev/consumers")
        assert page.status_code == 200 and ">Download CSV</a>" in page.text


def test_every_table_page_links_its_download(http: httpx.Client, client_id: str) -> None:
    fill(http, client_id)
    app = f"/apps/{client_id}/dev"
    expected = {
        "endpoints?sort=requests": ["endpoints"],
        "errors?endpoint=POST+/api/baz": ["validation-errors", "server-errors"],
        "consumers?group=@team": ["consumers"],
        "groups": ["consumer-groups"],
        "requests?status=5xx&min_response_size=1": ["requests"],
    }
    for page, tables in expected.items():
        text = http.get(f"{app}/{page}").text
        links = [
            html.unescape(h)
            for h in re.findall(
                r'<a class="download" id="[^"]+" href="([^"]+)" download>Download CSV</a>', text
            )
        ]
        assert [urlsplit(link).path.rsplit("/", 1)[-1] for link in links] == tables, page
        for link in links:
            response = http.get(link)
            assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv"), (
                link
            )
            query = parse_qs(urlsplit(link).query)
            assert query["format"] == ["csv"] and "since" in query and "until" in query
    links = re.findall(
        r'href="([^"]+)" download>', http.get(f"{app}/requests?status=5xx&min_response_size=1").text
    )
    query = parse_qs(urlsplit(html.unescape(links[0])).query)
    assert query["status"] == ["5xx"] and query["min_response_size"] == ["1"]
    rows = list(csv.reader(io.StringIO(http.get(html.unescape(links[0])).text)))[1:]
    assert rows and {r[4] for r in rows} == {"500"}
