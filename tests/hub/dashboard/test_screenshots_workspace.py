"""Screenshots of the dashboard's newer pages, logged in as an admin (so that their write
controls show), on the demo hub of the browser tests: the new-app form, an app's setup
instructions, the Alerts page (with a channel and a rule made in its forms) and its New rule /
New channel forms, the consumer page's Name/Group form, the endpoint page's Apdex threshold and
Exclude controls, and the request log's filter form with its Download CSV link.

Without ``APITALLY_DASHBOARD_SCREENSHOTS`` the images go to a temporary folder: the test still
loads each page (status 200, its form shown, no console error — see the ``page`` fixture).
A module of its own: it changes the hub (a channel and a rule), which the other browser tests'
demo hub must not see."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import pytest
from playwright.sync_api import Locator, Page, expect

from tests.support.dashboard import Demo

CONSUMER = "ak_live_acme_7f3a"
ENDPOINT = "GET /api/items/{item_id}"


def open_page(page: Page, url: str) -> Page:
    response = page.goto(url)
    assert response is not None and response.status == 200, url
    page.wait_for_load_state("networkidle")
    assert "/login" not in page.url, url  # logged in, not sent to the login form
    return page


def shoot(target: Page | Locator, path: Path) -> None:
    if isinstance(target, Page):
        target.screenshot(path=str(path), full_page=True)
    else:
        target.screenshot(path=str(path))
    assert path.stat().st_size > 1000, path


def test_screenshots_of_the_workspace_pages(
    page: Page, demo: Demo, screenshots: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Written to the folder printed here (``APITALLY_DASHBOARD_SCREENSHOTS=docs/screenshots``
    regenerates the docs' ``app-new.png``, ``app-setup.png``, ``alerts.png``,
    ``alert-rule-new.png``, ``alert-channel-new.png``, ``consumer-settings.png``,
    ``endpoint-settings.png`` and ``requests-filters.png``)."""
    alerts = f"{demo.url}{demo.app_path}/alerts"

    # the new-app form
    open_page(page, f"{demo.url}/apps/new")
    expect(page.locator("#new-app-form")).to_be_visible()
    shoot(page, screenshots / "app-new.png")

    # the demo app's setup instructions (its snippets, its envs' data), once named on that page
    open_page(page, f"{demo.url}/apps/{demo.client_id}")
    form = page.locator("#edit-app-form")
    expect(form).to_be_visible()
    form.get_by_label("Name").fill("Demo shop")
    form.get_by_label("Framework").select_option("fastapi")
    form.get_by_role("button", name="Save").click()
    page.wait_for_url(f"{demo.url}/apps/{demo.client_id}?saved=1")
    open_page(page, f"{demo.url}/apps/{demo.client_id}")
    expect(page.locator("h1")).to_contain_text("Demo shop")
    assert demo.client_id in page.locator("body").inner_text()
    expect(page.get_by_text("instrument_app(app, client_id=").first).to_be_visible()
    shoot(page, screenshots / "app-setup.png")

    # the New channel form (filled in), then the New rule form with that channel's checkbox
    open_page(page, alerts)
    page.get_by_role("link", name="New channel").click()
    page.wait_for_load_state("networkidle")
    expect(page.locator("#channel-form")).to_be_visible()
    page.get_by_label("Name").fill("ops")
    page.get_by_label("Type").select_option("webhook")
    page.get_by_label("URL").fill("https://hooks.example.com/apitally/ops")
    shoot(page, screenshots / "alert-channel-new.png")
    page.get_by_role("button", name="Create channel").click()
    expect(page.locator("#done")).to_have_text("Channel saved.")

    page.get_by_role("link", name="New rule").click()
    page.wait_for_load_state("networkidle")
    expect(page.locator("#rule-form")).to_be_visible()
    page.get_by_label("Name").fill("error rate")
    page.get_by_label("Metric").select_option("error_rate")
    page.get_by_label("Threshold").fill("0.5")
    page.get_by_label("Window (minutes)").fill("5")
    page.get_by_label("ops").check()
    shoot(page, screenshots / "alert-rule-new.png")
    page.get_by_role("button", name="Create rule").click()
    expect(page.locator("#done")).to_have_text("Rule saved.")

    # the Alerts page with its admin controls, the channel and the rule
    open_page(page, alerts)
    expect(page.locator('tr[data-channel="ops"]')).to_be_visible()
    expect(page.locator('tr[data-rule="error rate"]')).to_be_visible()
    expect(page.get_by_role("link", name="New rule")).to_be_visible()
    shoot(page, screenshots / "alerts.png")

    # a consumer's Name/Group form
    open_page(page, f"{demo.url}{demo.app_path}/consumer?consumer={CONSUMER}")
    form = page.locator("#consumer-form")
    expect(form).to_be_visible()
    shoot(page.locator(".card", has=form), screenshots / "consumer-settings.png")

    # an endpoint's Apdex threshold and Exclude
    open_page(page, f"{demo.url}{demo.app_path}/endpoint?endpoint={quote(ENDPOINT)}")
    expect(page.locator("#endpoint-settings-form")).to_be_visible()
    expect(page.locator("#endpoint-settings").get_by_role("button", name="Exclude")).to_be_visible()
    shoot(page.locator("#endpoint-settings"), screenshots / "endpoint-settings.png")

    # the request log, filtered, with its Download CSV link
    open_page(page, f"{demo.url}{demo.app_path}/requests?status=5xx")
    expect(page.locator("form.filters")).to_be_visible()
    rows = page.locator("#requests-table tbody tr[data-request]")
    assert rows.count() > 0
    expect(page.locator("#csv-requests")).to_be_visible()
    shoot(page, screenshots / "requests-filters.png")

    with capsys.disabled():
        print(f"\ndashboard screenshots: {screenshots}")
