"""Fixtures of the browser tests: one hub (with a read token) filled by the demo app's real
traffic (see :mod:`dashboard_support`), and one headless Debian chromium driven by Playwright,
for the browser tests' module. Module-scoped, not session-scoped: Playwright's sync API keeps an
event loop running in the main thread while it lives, which the tests of other modules (that
call ``asyncio.run``) must not find."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

from apitally_hub import HubServer
from apitally_hub.demo.run import DemoApp
from apitally_hub.demo.traffic import generate_traffic
from tests.support.dashboard import SCREENSHOTS_ENV, TOKEN, Console, Demo, backfill, log_in

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",  # the tests run as root in CI
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",  # the machine has no network: no connections to refuse
    "--disable-component-update",
    "--disable-sync",
]


MIN_CLIENT_ERRORS = 120
"""4xx requests the demo traffic must make: more than two pages of the request log."""


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    """The hub after the demo app's traffic: an hour of history, then a few seconds of the demo
    app (request logging on), stopped so that its final sync is in; nothing changes afterwards."""
    workdir = tmp_path_factory.mktemp("dashboard-demo")
    client_id = str(uuid.uuid4())
    with HubServer(workdir / "hub.sqlite", tokens=[TOKEN]) as hub:
        backfill(hub.url, client_id)
        app = DemoApp(hub.url, client_id, workdir)
        try:
            app.wait_ready()
            # on a thread of its own: Playwright's sync API may already run an event loop here
            # at least MIN_CLIENT_ERRORS 4xx requests (the request log's pages need them): a
            # loaded machine (parallel test workers) sends fewer in the same time
            failures: list[str] = []
            client_errors = 0
            with ThreadPoolExecutor(1) as pool:
                for attempt in range(6):
                    duration = 6.0 if attempt == 0 else 3.0
                    sent = pool.submit(generate_traffic, app.url, duration, seed=14 + attempt).result()
                    failures += sent.failures
                    client_errors += sent.status_classes()["4xx"]
                    if client_errors >= MIN_CLIENT_ERRORS:
                        break
        finally:
            assert app.stop(), "the demo app did not stop"
        assert not failures, failures
        hub.settle()
        headers = {"Authorization": f"Bearer {TOKEN}"}
        with httpx.Client(base_url=hub.url, headers=headers, timeout=10) as api:
            yield Demo(hub, client_id, api)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(
            f"{CHROMIUM} is missing: scripts/test installs Debian's chromium (apt-get install chromium)"
        )
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture(scope="module")
def session_context(browser: Browser, demo: Demo) -> Iterator[BrowserContext]:
    """A browser context logged in once (its session cookie serves every test)."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    log_in(context, demo.url)
    try:
        yield context
    finally:
        context.close()


@pytest.fixture
def console() -> Console:
    return Console()


@pytest.fixture
def page(session_context: BrowserContext, console: Console) -> Iterator[Page]:
    opened = session_context.new_page()
    console.watch(opened)
    try:
        yield opened
    finally:
        opened.close()
    assert console.errors == []


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = os.environ.get(SCREENSHOTS_ENV)
    path = Path(folder) if folder else tmp_path_factory.mktemp("dashboard-screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path
