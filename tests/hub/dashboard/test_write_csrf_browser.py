"""Issue 26, row 2 in a real browser: a page on another port of the same host (the same *site*, so
``SameSite=Strict`` cookies go along) cannot make a logged-in dashboard session write to the hub's
JSON API — neither with a form nor with ``fetch`` — while the dashboard's own page can, with its
CSRF header."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

from apitally_hub import HubServer
from tests.support.dashboard import TOKEN, log_in
from tests.support.servers import ServerThread

ENV = "prod"


def attacker_page(target: str) -> str:
    """Two attempts at a cross-site write with the victim's cookie: a no-cors ``fetch`` (a simple
    text/plain request, no preflight) and an auto-submitted text/plain form (its body is JSON)."""
    return f"""<!doctype html><title>loading</title>
<form id="f" method="post" enctype="text/plain" action="{target}/channels">
<input type="hidden" name='{{"name":"evil","type":"webhook","url":"http://127.0.0.1:9/x","pad":"' value='"}}'>
</form>
<script>
fetch("{target}/silences", {{
  method: "POST", mode: "no-cors", credentials: "include",
  headers: {{"Content-Type": "text/plain"}}, body: JSON.stringify({{minutes: 60}})
}}).then(() => {{ document.title = "fetched"; }}, () => {{ document.title = "fetched"; }});
</script>"""


@pytest.fixture(scope="module")
def hub() -> Iterator[HubServer]:
    with HubServer(tokens=[TOKEN]) as server:
        yield server


@pytest.fixture
def victim(browser: Browser, hub: HubServer) -> Iterator[BrowserContext]:
    context = browser.new_context()
    log_in(context, hub.url)
    try:
        yield context
    finally:
        context.close()


def test_another_port_cannot_write_with_the_dashboard_session(victim: BrowserContext, hub: HubServer) -> None:
    client_id = str(uuid.uuid4())
    target = f"{hub.url}/api/{client_id}/{ENV}"

    async def evil(request: Request) -> HTMLResponse:
        return HTMLResponse(attacker_page(target))

    with (
        ServerThread(Starlette(routes=[Route("/", evil)])) as evil_url,
        httpx.Client(base_url=target, headers={"Authorization": f"Bearer {TOKEN}"}) as api,
    ):
        assert evil_url.rsplit(":", 1)[0] == hub.url.rsplit(":", 1)[0]  # same host, another port
        page = victim.new_page()
        with page.expect_response(lambda r: r.url.endswith("/silences")) as fetched:
            page.goto(evil_url)
        assert fetched.value.status in (403, 415)
        page.wait_for_function("document.title === 'fetched'")
        with page.expect_navigation(url=f"{target}/channels"):
            page.evaluate("document.getElementById('f').submit()")
        assert page.context.cookies(hub.url), "the session cookie is still there"
        assert api.get("/silences").json()["silences"] == []
        assert api.get("/channels").json()["channels"] == []
        # the dashboard's own page may write with its session and CSRF header (same origin)
        page.goto(f"{hub.url}/")
        status = page.evaluate(
            """async (url) => {
                const csrf = document.querySelector('meta[name="apitally-csrf"]').content;
                const response = await fetch(url, {method: "POST", headers: {
                    "Content-Type": "application/json", "X-Apitally-CSRF": csrf},
                    body: JSON.stringify({minutes: 60})});
                return response.status;
            }""",
            f"{target}/silences",
        )
        assert status == 201
        assert len(api.get("/silences").json()["silences"]) == 1
        page.close()
