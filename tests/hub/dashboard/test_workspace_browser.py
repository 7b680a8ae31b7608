"""Issue 27's workspace slice in a real browser: an admin renames a consumer and moves it to a new
group on its page, and the groups page shows it there with its traffic."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, expect

from apitally_hub import HubServer
from tests.support.dashboard import TOKEN, log_in
from tests.support.hub_samples import REQUEST_ITEM, sync


@pytest.fixture(scope="module")
def hub() -> Iterator[HubServer]:
    with HubServer(tokens=[TOKEN]) as server:
        yield server


@pytest.fixture
def admin(browser: Browser, hub: HubServer) -> Iterator[BrowserContext]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    log_in(context, hub.url)
    try:
        yield context
    finally:
        context.close()


def requests_of(consumer: str, count: int, path: str = REQUEST_ITEM["path"], **times: int) -> dict[str, Any]:
    return {
        **REQUEST_ITEM,
        "consumer": consumer,
        "path": path,
        "request_count": count,
        "request_size_sum": 0,
        "response_size_sum": 0,
        "response_times": times or {"0": count},
        "request_sizes": {"0": count},
        "response_sizes": {"0": count},
    }


def send(hub: HubServer, client_id: str, body: dict[str, Any]) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=hub.url, headers=headers) as http:
        assert http.post(f"/v2/{client_id}/prod/sync", json=body).status_code == 202
    hub.settle()


def test_rename_a_consumer_and_move_it_to_a_new_group(admin: BrowserContext, hub: HubServer) -> None:
    client_id = str(uuid.uuid4())
    consumers = [
        {"identifier": "c-17", "name": "Old name", "group": "Free"},
        {"identifier": "c-18", "name": "Other", "group": "Free"},
    ]
    requests = [requests_of("c-17", 7), requests_of("c-18", 2)]
    send(hub, client_id, sync(requests=requests, consumers=consumers, validation_errors=[], server_errors=[]))

    page = admin.new_page()
    page.goto(f"{hub.url}/apps/{client_id}/prod/consumer?consumer=c-17")
    expect(page.locator("#consumer-name")).to_contain_text("Old name")
    page.get_by_label("Name", exact=True).fill("Acme Robotics")
    page.get_by_label("Group", exact=True).fill("Enterprise")
    page.get_by_role("button", name="Save").click()

    expect(page.locator("#saved")).to_be_visible()
    expect(page.locator("#consumer-name")).to_contain_text("Acme Robotics")
    expect(page.locator("#consumer-group")).to_contain_text("Enterprise")
    expect(page.get_by_role("button", name="Reset")).to_be_visible()

    page.goto(f"{hub.url}/apps/{client_id}/prod/groups")
    enterprise = page.locator('tr[data-group="Enterprise"] td.num')
    expect(enterprise.nth(0)).to_have_text("1")  # consumers
    expect(enterprise.nth(1)).to_have_text("7")  # its requests moved along
    expect(page.locator('tr[data-group="Free"] td.num').nth(1)).to_have_text("2")
    page.locator('tr[data-group="Enterprise"] a').click()
    expect(page.locator("body")).to_contain_text("Acme Robotics")
    page.close()


def test_an_endpoint_apdex_threshold_of_its_own(admin: BrowserContext, hub: HubServer) -> None:
    client_id = str(uuid.uuid4())
    # /slow: 5 requests under 10 ms and 5 at 200-210 ms; /fast: 2 under 10 ms
    requests = [requests_of("c-1", 10, "/slow", **{"0": 5, "200": 5}), requests_of("c-1", 2, "/fast")]
    send(hub, client_id, sync(requests=requests, consumers=[], validation_errors=[], server_errors=[]))

    page = admin.new_page()
    page.goto(f"{hub.url}/apps/{client_id}/prod/endpoint?endpoint=GET+/slow")
    apdex = page.locator('#kpis [data-kpi="apdex"]')
    expect(apdex).to_contain_text("500 ms")
    expect(apdex).to_contain_text("1.00")
    page.get_by_label("Apdex threshold (ms)").fill("100")
    page.get_by_role("button", name="Save").click()

    expect(page.locator("#saved")).to_contain_text("100 ms")
    expect(apdex).to_contain_text("100 ms")
    expect(apdex).to_contain_text("0.75")  # 5 satisfied, 5 tolerating (up to 400 ms)

    page.goto(f"{hub.url}/apps/{client_id}/prod/endpoints")
    expect(page.locator('tr[data-endpoint="GET /slow"]')).to_contain_text("0.75")
    expect(page.locator('tr[data-endpoint="GET /fast"]')).to_contain_text("1.00")

    # excluded: gone from the table, a link shows it again; Include brings it back
    page.goto(f"{hub.url}/apps/{client_id}/prod/endpoint?endpoint=GET+/slow")
    page.get_by_role("button", name="Exclude").click()
    expect(page.locator("#excluded-notice")).to_be_visible()
    page.goto(f"{hub.url}/apps/{client_id}/prod/endpoints")
    expect(page.locator('tr[data-endpoint="GET /slow"]')).to_have_count(0)
    page.get_by_role("link", name="show excluded").click()
    expect(page.locator('tr[data-endpoint="GET /slow"]')).to_contain_text("excluded")
    page.locator('tr[data-endpoint="GET /slow"] a').first.click()
    page.get_by_role("button", name="Include").click()
    expect(page.locator("#excluded-notice")).to_have_count(0)
    page.close()
