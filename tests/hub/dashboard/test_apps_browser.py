"""Issue 27's first slice in a real browser: an admin creates an app in the dashboard (New app:
name, framework, two envs), reads its client id on the setup page, and a real instrumented app
run with it shows up under the app's name on the apps list."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, expect

from apitally_hub import HubServer
from tests.support.dashboard import TOKEN, log_in
from tests.support.servers import app_process


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


def test_create_an_app_then_see_its_traffic_under_its_name(admin: BrowserContext, hub: HubServer) -> None:
    page = admin.new_page()
    page.goto(f"{hub.url}/")
    page.get_by_role("link", name="New app").click()
    page.get_by_label("Name").fill("Checkout API")
    page.get_by_label("Framework").select_option("starlette")
    page.get_by_label("Environments").fill("prod, dev")
    page.get_by_role("button", name="Create app").click()

    expect(page.get_by_role("heading", level=1)).to_contain_text("Checkout API")
    client_id = page.locator("#client-id").inner_text().strip()
    assert uuid.UUID(client_id).version == 4
    assert page.locator("#hub-url").inner_text() == hub.url
    assert (
        f"APITALLY_CLIENT_ID={client_id} APITALLY_ENV=prod" in page.locator("#snippet-zero-code").inner_text()
    )
    expect(page.locator("#envs-table tbody tr")).to_have_count(2)
    expect(page.locator("tr[data-env=dev] .env-data")).to_have_text("Waiting for data")

    env = {
        "APITALLY_CLIENT_ID": client_id,
        "APITALLY_ENV": "dev",
        "APITALLY_HUB_BASE_URL": hub.url,
        "APITALLY_SYNC_INTERVAL": "1",
    }
    with app_process("tests.support.apps.delivery_app:app", env) as app, httpx.Client() as http:
        app.wait_ready("/pid")
        for n in range(7):
            assert http.get(f"{app.url}/hit/{n}").status_code == 200
    hub.settle()  # the app has stopped: its final sync is in

    page.reload()
    expect(page.locator("tr[data-env=dev] .env-data")).to_have_text("Data arrived")
    expect(page.locator("tr[data-env=prod] .env-data")).to_have_text("Waiting for data")
    page.goto(f"{hub.url}/")
    row = page.locator(f'tr[data-app="{client_id}/dev"]')
    expect(row.locator("td.app-name")).to_have_text("Checkout API")
    expect(row.locator("td.num").nth(1)).to_have_text("8")  # the 7 hits and the readiness probe
    expect(page.locator(f'tr[data-app="{client_id}/prod"] td.app-name')).to_have_text("Checkout API")
    page.close()


def test_create_list_and_revoke_write_tokens(admin: BrowserContext, hub: HubServer) -> None:
    page = admin.new_page()
    page.goto(f"{hub.url}/apps/new")
    page.get_by_label("Name").fill("Ingest API")
    page.get_by_label("Environments").fill("prod")
    page.get_by_role("button", name="Create app").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Ingest API")

    rows = page.locator("#write-tokens-table tbody tr")
    expect(rows).to_have_count(1)  # the app's first write token
    first = rows.first.locator("code").inner_text()
    assert re.fullmatch(r"apt_[a-zA-Z0-9]{24}", first)
    expect(rows.first.locator(".token-status")).to_have_text("Active")
    assert f"APITALLY_WRITE_TOKEN={first}" in page.locator("#snippet-otlp-apitally").inner_text()

    page.get_by_role("button", name="Create write token").click()
    expect(page.locator("#token-notice")).to_have_text("Write token created.")
    expect(rows).to_have_count(2)
    second = rows.nth(1).locator("code").inner_text()
    assert re.fullmatch(r"apt_[a-zA-Z0-9]{24}", second) and second != first
    expect(page.locator("#snippet-otlp-sdk")).to_contain_text(
        f"Authorization=Bearer%20{second},Apitally-Env=prod"
    )

    page.locator(f'tr[data-token="{second}"]').get_by_role("button", name="Revoke").click()
    expect(page.locator("#token-notice")).to_have_text("Write token revoked.")
    revoked = page.locator(f'tr[data-token="{second}"]')
    expect(revoked.locator(".token-status")).to_contain_text("Revoked")
    expect(revoked.get_by_role("button", name="Revoke")).to_have_count(0)
    expect(page.locator(f'tr[data-token="{first}"] .token-status')).to_have_text("Active")
    assert hub.context.store.app_for_write_token(second) is None
    assert hub.context.store.app_for_write_token(first) is not None
    page.close()
