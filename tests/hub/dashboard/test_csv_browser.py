"""Download CSV in a real browser (Debian chromium via Playwright): a logged-in user clicks
**Download CSV** under a table, and the file's rows are the JSON API's for the same view."""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext

from apitally_hub import HubServer
from apitally_hub.web.csv_export import TABLES, cell
from tests.hub.test_csv_export import fill
from tests.support.dashboard import TOKEN, log_in


@pytest.fixture(scope="module")
def hub() -> Iterator[HubServer]:
    with HubServer(tokens=[TOKEN]) as server:
        yield server


@pytest.fixture(scope="module")
def client_id(hub: HubServer) -> str:
    found = str(uuid.uuid4())
    with httpx.Client(base_url=hub.url, headers={"Authorization": f"Bearer {TOKEN}"}) as http:
        fill(http, found, log_lines=30)
    hub.settle()
    return found


@pytest.fixture
def user(browser: Browser, hub: HubServer) -> Iterator[BrowserContext]:
    context = browser.new_context(viewport={"width": 1400, "height": 900}, accept_downloads=True)
    log_in(context, hub.url)
    try:
        yield context
    finally:
        context.close()


def api_rows(hub: HubServer, client_id: str, table: str, params: dict[str, str]) -> list[list[str]]:
    with httpx.Client(base_url=hub.url, headers={"Authorization": f"Bearer {TOKEN}"}) as http:
        body: dict[str, Any] = http.get(
            f"/api/{client_id}/dev/{table}", params={**params, "limit": "1000"}
        ).json()
    spec = TABLES[table]
    return [[cell(c, row.get(c)) for c in spec.columns] for row in body[spec.rows_key]]


@pytest.mark.parametrize(
    ("page_path", "link", "table", "params"),
    [
        ("requests?status=4xx", "#csv-requests", "requests", {"status": "4xx"}),
        ("consumers?sort=requests", "#csv-consumers", "consumers", {"sort": "requests"}),
        ("errors", "#csv-server-errors", "server-errors", {}),
    ],
)
def test_download_csv_matches_the_api(
    user: BrowserContext,
    hub: HubServer,
    client_id: str,
    page_path: str,
    link: str,
    table: str,
    params: dict[str, str],
) -> None:
    page = user.new_page()
    page.goto(f"{hub.url}/apps/{client_id}/dev/{page_path}")
    button = page.locator(link)
    assert button.inner_text() == "Download CSV"
    with page.expect_download() as info:
        button.click()
    download = info.value
    assert download.suggested_filename.startswith(f"{client_id}-dev-{TABLES[table].name}-")
    assert download.suggested_filename.endswith(".csv")
    path = download.path()
    rows = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8"), newline="")))
    assert rows[0] == list(TABLES[table].columns)
    assert rows[1:] and rows[1:] == api_rows(hub, client_id, table, {"since": "1h", **params})
