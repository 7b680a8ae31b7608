"""Issue 27's alerting slice in a real browser: an admin creates a webhook channel and a rule in
the dashboard's Alerts page (New channel, New rule, the channel's checkbox), the app env then
reports a server error, and the rule's firing notice reaches a real webhook receiver. The hub
evaluates every 0.3 s with one-second rule minutes."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, expect

from apitally_hub import HubServer
from apitally_hub.alerting.config import AlertingConfig
from tests.support.alerting_helpers import traffic
from tests.support.dashboard import TOKEN, Console, log_in
from tests.support.hub_samples import new_uuid, startup, sync
from tests.support.servers import ServerThread, WebhookReceiver

SETTINGS = AlertingConfig(interval=0.3, minute_seconds=1.0, retry_base_seconds=0.2)


@pytest.fixture(scope="module")
def receiver() -> Iterator[tuple[WebhookReceiver, str]]:
    hook = WebhookReceiver()
    with ServerThread(hook.app()) as url:
        yield hook, url


@pytest.fixture(scope="module")
def hub() -> Iterator[HubServer]:
    with HubServer(tokens=[TOKEN], alerting=SETTINGS) as server:
        yield server


@pytest.fixture
def admin(browser: Browser, hub: HubServer) -> Iterator[BrowserContext]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    log_in(context, hub.url)
    try:
        yield context
    finally:
        context.close()


def test_a_rule_made_in_the_dashboard_fires_to_a_webhook_made_there(
    admin: BrowserContext, hub: HubServer, receiver: tuple[WebhookReceiver, str]
) -> None:
    hook, hook_url = receiver
    client_id = str(uuid.uuid4())
    console = Console()
    page = admin.new_page()
    console.watch(page)
    page.goto(f"{hub.url}/apps/{client_id}/prod/alerts")

    page.get_by_role("link", name="New channel").click()
    page.get_by_label("Name").fill("ops")
    page.get_by_label("Type").select_option("webhook")
    page.get_by_label("URL").fill(f"{hook_url}/ops")
    page.get_by_role("button", name="Create channel").click()
    expect(page.locator("#done")).to_have_text("Channel saved.")
    expect(page.locator('tr[data-channel="ops"]')).to_be_visible()

    page.get_by_role("link", name="New rule").click()
    page.get_by_label("Name").fill("5xx")
    page.get_by_label("Metric").select_option("server_errors")
    page.get_by_label("Threshold").fill("0")
    page.get_by_label("Window (minutes)").fill("1")
    page.get_by_label("ops").check()
    page.get_by_role("button", name="Create rule").click()
    expect(page.locator("#done")).to_have_text("Rule saved.")
    expect(page.locator('tr[data-rule="5xx"]')).to_contain_text("server_errors > 0")

    instance = new_uuid()
    with httpx.Client(base_url=f"{hub.url}/v2/{client_id}/prod", timeout=10) as ingest:
        assert ingest.post("/startup", json=startup(instance)).status_code == 202
        message = sync(
            instance_uuid=instance,
            timestamp=time.time(),
            requests=[traffic(status=500, count=2)],
            validation_errors=[],
            server_errors=[],
            consumers=[],
        )
        assert ingest.post("/sync", json=message).status_code == 202

    [notice] = hook.wait_for(lambda got: len(got) >= 1, timeout=30, path="/ops")
    body = notice.json()
    assert (body["event"], body["test"], body["rule"]["name"], body["value"]) == ("firing", False, "5xx", 2)
    assert body["client_id"] == client_id and body["env"] == "prod"

    page.reload()
    expect(page.locator("#active-alerts")).to_contain_text("firing")
    page.close()
    assert console.errors == []
