"""Custom request attributes in a real browser: the request log's Attribute field filters by
``key:value`` (a bad one is said next to the field), and the request's page lists its attributes."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from apitally_hub import HubServer
from tests.support.dashboard import TOKEN, log_in
from tests.support.hub_samples import gzip_lines, log_line, new_uuid


@pytest.fixture(scope="module")
def hub() -> Iterator[HubServer]:
    with HubServer(tokens=[TOKEN]) as server:
        yield server


@pytest.fixture
def context(browser: Browser, hub: HubServer) -> Iterator[BrowserContext]:
    opened = browser.new_context(viewport={"width": 1400, "height": 900})
    log_in(opened, hub.url)
    try:
        yield opened
    finally:
        opened.close()


def upload(hub: HubServer, client_id: str) -> list[dict[str, Any]]:
    now = time.time()
    lines = []
    for n, attributes in enumerate(
        [
            {"tenant": "acme", "plan": "pro"},
            {"tenant": "globex"},
            {"tenant": "acme", "note": "<i>not markup</i>"},
            None,
        ]
    ):
        line = log_line(url=f"https://host/orders/{n}", timestamp=now - 10 + n)
        if attributes is not None:
            line["request"]["attributes"] = attributes
        lines.append(line)
    with httpx.Client(base_url=hub.url, headers={"Authorization": f"Bearer {TOKEN}"}) as http:
        response = http.post(
            f"/v2/{client_id}/prod/log", params={"uuid": new_uuid()}, content=gzip_lines(lines)
        )
        assert response.status_code == 202, response.text
    hub.settle()
    return lines


def test_filter_by_attribute_and_see_them_on_the_request_page(
    context: BrowserContext, hub: HubServer
) -> None:
    client_id = str(uuid.uuid4())
    lines = upload(hub, client_id)
    page = context.new_page()
    page.goto(f"{hub.url}/apps/{client_id}/prod/requests")
    rows = page.locator("#requests-table tr[data-request]")
    expect(rows).to_have_count(4)

    field = page.get_by_label("Attribute")
    field.fill("tenant:acme")
    apply(page)
    expect(rows).to_have_count(2)
    expect(page.locator(f'tr[data-request="{lines[0]["uuid"]}"]')).to_be_visible()
    expect(page.locator(f'tr[data-request="{lines[2]["uuid"]}"]')).to_be_visible()
    expect(page.locator("#attribute-scan")).to_contain_text("searched the last 5,000 requests")
    expect(page.get_by_label("Attribute")).to_have_value("tenant:acme")
    csv_href = page.locator("#csv-requests").get_attribute("href") or ""
    assert "attribute=tenant%3Aacme" in csv_href  # the CSV download follows the filter

    # The request's page: its attributes in a labelled table, text shown as text.
    page.locator(f'tr[data-request="{lines[2]["uuid"]}"] td.path a').click()
    table = page.get_by_role("table", name="Custom attributes")
    expect(table).to_be_visible()
    expect(table.locator('tr[data-attribute="tenant"] td').nth(1)).to_have_text("acme")
    expect(table.locator('tr[data-attribute="note"] td').nth(1)).to_have_text("<i>not markup</i>")
    expect(table.locator("i")).to_have_count(0)
    # Its link goes back to the requests with that value.
    table.locator('tr[data-attribute="tenant"] a').click()
    expect(page.get_by_label("Attribute")).to_have_value("tenant:acme")
    expect(rows).to_have_count(2)

    # A bad filter: said next to the field, nothing listed.
    page.get_by_label("Attribute").fill("tenant acme")
    apply(page)
    error = page.locator("#attribute-error")
    expect(error).to_have_text("Should be key:value")
    expect(page.locator('input[name="attribute"]')).to_have_attribute("aria-invalid", "true")
    expect(rows).to_have_count(0)
    page.get_by_label("Attribute").fill("tenant:globex")
    apply(page)
    expect(error).to_have_count(0)
    expect(rows).to_have_count(1)
    page.close()


def apply(page: Page) -> None:
    """Submit the filter form (its Apply button)."""
    page.locator("form.filters button[type=submit]").click()
