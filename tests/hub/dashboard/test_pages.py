"""The dashboard over HTTP (no browser): every page renders from the query layer, client data is
escaped, and login, sessions and CSRF work as :mod:`apitally_hub.web.dashboard.session` says.

The browser tests (tests/hub/dashboard/) check what a person sees; these check the server's side.
"""

from __future__ import annotations

import base64
import html
import re
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest

from apitally_hub import HubServer
from apitally_hub.config import Transport
from apitally_hub.web.dashboard.session import CSRF_COOKIE, SESSION_COOKIE
from tests.support.hub_samples import (
    REQUEST_ITEM,
    gzip_lines,
    log_line,
    new_uuid,
    settling_client,
    startup,
    sync,
)

TOKEN = "dashboard-token-0123456789"
OTHER = "other-token-abcdefghijklmn"

HOSTILE = '<script>alert("x")</script>\'"><img src=x onerror=alert(1)>'
CONTROL = "\x1b[31mred\x1b[0m\u202eevil"
HOSTILE_PATH = f"/api/{HOSTILE}/{{id}}"
HOSTILE_CONSUMER = f"c-{HOSTILE}"


def pages(client_id: str, env: str = "dev", request_uuid: str | None = None) -> list[str]:
    app = f"/apps/{client_id}/{env}"
    found = [
        "/",
        app,
        f"{app}/endpoints",
        f"{app}/endpoint?endpoint=GET+/api/items/{{item_id}}",
        f"{app}/errors",
        f"{app}/consumers",
        f"{app}/consumer?consumer=acme",
        f"{app}/requests",
        f"{app}/instances",
        f"{app}/alerts",
    ]
    if request_uuid:
        found.append(f"{app}/requests/{request_uuid}")
    return found


def fill(http: httpx.Client, client_id: str) -> str:
    """The protocol's example data in an app; returns a logged request's uuid."""
    assert http.post(f"/v2/{client_id}/dev/startup", json=startup()).status_code == 202
    assert http.post(f"/v2/{client_id}/dev/sync", json=sync(requests=[REQUEST_ITEM])).status_code == 202
    line = log_line()
    response = http.post(f"/v2/{client_id}/dev/log", params={"uuid": new_uuid()}, content=gzip_lines([line]))
    assert response.status_code == 202
    return str(line["uuid"])


def test_every_page_renders_with_security_headers(hub: HubServer, http: httpx.Client, client_id: str) -> None:
    request_uuid = fill(http, client_id)
    for path in pages(client_id, request_uuid=request_uuid):
        response = http.get(path)
        assert response.status_code == 200, (path, response.text[:500])
        assert response.headers["content-type"].startswith("text/html")
        csp = response.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["cache-control"] == "no-store"
        assert re.fullmatch(r"app;dur=[0-9.]+", response.headers["server-timing"])
        assert "<script>" not in response.text  # scripts come from /static/ only (the CSP says so)


def test_static_files_and_the_vendored_chart_library(http: httpx.Client) -> None:
    for path, kind in (
        ("/static/dashboard.js", "javascript"),
        ("/static/dashboard.css", "css"),
        ("/static/vendor/uplot/uPlot.iife.min.js", "javascript"),
    ):
        response = http.get(path)
        assert response.status_code == 200 and kind in response.headers["content-type"]
    assert "uPlot (v1.6.32)" in http.get("/static/vendor/uplot/uPlot.iife.min.js").text[:200]
    assert http.get("/static/../app.py").status_code == 404


def test_numbers_on_the_pages_are_the_query_apis(http: httpx.Client, client_id: str) -> None:
    fill(http, client_id)
    page = http.get(f"/apps/{client_id}/dev/endpoints", params={"since": "2h", "until": "0"}).text
    [since, until] = re.findall(r'data-(?:since|until)="([^"]+)"', page)[:2]
    api = http.get(
        f"/api/{client_id}/dev/endpoints", params={"since": since, "until": until, "include_idle": "true"}
    ).json()
    [endpoint] = api["endpoints"]
    row = re.search(r'<tr data-endpoint="GET /api/items/\{item_id\}">(.*?)</tr>', page, re.S)
    assert row is not None
    values = re.findall(r'data-value="([^"]*)"', row.group(1))
    keys = ["requests", "client_errors", "server_errors", "error_rate", "p50_ms", "p75_ms", "p95_ms"]
    keys += ["p99_ms", "apdex", "request_bytes", "response_bytes"]
    expected = [endpoint[key] for key in keys]
    assert values == [str(v) for v in expected]


def test_client_data_is_escaped_everywhere(http: httpx.Client, client_id: str) -> None:
    """Paths, consumer names, messages, tracebacks, URLs, headers and bodies come from clients:
    none of it reaches a page as markup, and control or bidi characters are shown as escapes."""
    hostile_item = {**REQUEST_ITEM, "path": HOSTILE_PATH, "consumer": HOSTILE_CONSUMER}
    validation = {
        "consumer": HOSTILE_CONSUMER,
        "method": "POST",
        "path": HOSTILE_PATH,
        "loc": ["body", HOSTILE],
        "msg": HOSTILE + CONTROL,
        "type": HOSTILE,
        "error_count": 2,
    }
    server_error = {
        "consumer": None,
        "method": "GET",
        "path": HOSTILE_PATH,
        "type": HOSTILE,
        "msg": HOSTILE,
        "traceback": f'Traceback (most recent call last):\n  File "{HOSTILE}", line 1\n{CONTROL}',
        "sentry_event_id": None,
        "error_count": 1,
    }
    short = '"><script>alert(1)</script>'  # names and groups have at most 64 characters
    consumer = {"identifier": HOSTILE_CONSUMER, "name": short + CONTROL, "group": short}
    message = sync(
        requests=[hostile_item],
        validation_errors=[validation],
        server_errors=[server_error],
        consumers=[consumer],
    )
    assert http.post(f"/v2/{client_id}/dev/sync", json=message).status_code == 202
    line = log_line(
        path=HOSTILE_PATH, url="http://host/x?q=" + HOSTILE.replace(" ", "/"), consumer=HOSTILE_CONSUMER
    )
    line["request"]["headers"] = [["x-evil", HOSTILE + CONTROL]]
    line["request"]["body"] = base64.b64encode(f'{{"a": "{HOSTILE}</script>"}}'.encode()).decode()
    line["response"]["body"] = base64.b64encode((HOSTILE + CONTROL).encode()).decode()
    line["exception"] = {"type": HOSTILE, "message": HOSTILE, "traceback": HOSTILE}
    line["logs"][0]["message"] = HOSTILE + CONTROL
    line["spans"][0]["name"] = HOSTILE
    line["spans"][0]["attributes"] = {HOSTILE: HOSTILE}
    response = http.post(f"/v2/{client_id}/dev/log", params={"uuid": new_uuid()}, content=gzip_lines([line]))
    assert response.status_code == 202

    app = f"/apps/{client_id}/dev"
    endpoint = f"GET {HOSTILE_PATH}"
    checked = [
        *(p for p in pages(client_id, request_uuid=line["uuid"]) if "consumer=acme" not in p),
        f"{app}?endpoint={endpoint}",
        f"{app}/endpoint?endpoint={endpoint}",
        f"{app}/errors?consumer={HOSTILE_CONSUMER}",
        f"{app}/consumer?consumer={HOSTILE_CONSUMER}",
        f"{app}/consumers?group={short}",
        f"{app}/requests?q={HOSTILE}&consumer={HOSTILE_CONSUMER}",
    ]
    seen = 0
    for path in checked:
        response = http.get(path)
        assert response.status_code == 200, (path, response.text[:300])
        text = response.text
        for needle in ("<script>alert", "<img src=x", "onerror=alert(1)>", "\x1b", "\u202e"):
            assert needle not in text, (path, needle)
        seen += text.count(html.escape(HOSTILE, quote=True)) + text.count("&lt;script&gt;alert")
    assert seen > 20  # the hostile strings are shown (escaped), not dropped
    item = http.get(f"{app}/requests/{line['uuid']}").text
    assert "\\x1b[31mred\\x1b[0m\\u202eevil" in item  # control characters made visible
    assert "&lt;/script&gt;" in item  # the JSON body, pretty-printed, as text


def test_bad_parameters_are_an_html_error_page(http: httpx.Client, client_id: str) -> None:
    app = f"/apps/{client_id}/dev"
    for path in (
        f"{app}?range=2y",
        f"{app}?since=yesterday",
        f"{app}/endpoints?sort=nope",
        f"{app}/endpoint",
        f"{app}/requests?status=6xx",
        f"{app}/requests?min_ms=-1",
        f"{app}/consumer",
        f"/apps/{client_id}/b%20d",
    ):
        response = http.get(path)
        assert response.status_code in (400, 422), path
        assert response.headers["content-type"].startswith("text/html"), path
        assert 'id="error-message"' in response.text
    assert http.get(f"{app}/requests/{new_uuid()}").status_code == 404
    assert http.get(f"{app}/consumer?consumer=nobody").status_code == 404
    assert http.get("/apps/not-a-uuid/dev").status_code == 404


def test_the_env_picker_keeps_the_view(http: httpx.Client, client_id: str) -> None:
    for env in ("dev", "prod"):
        assert http.post(f"/v2/{client_id}/{env}/sync", json=sync()).status_code == 202
    page = http.get(f"/apps/{client_id}/dev/endpoints").text
    assert '<option value="prod">' in page
    response = http.get(
        f"/apps/{client_id}/dev/endpoints", params={"env": "prod", "range": "6h", "sort": "p95"}
    )
    assert response.status_code == 303
    target = urlsplit(response.headers["location"])
    assert target.path == f"/apps/{client_id}/prod/endpoints"
    assert parse_qs(target.query) == {"range": ["6h"], "sort": ["p95"]}


# -- the Apdex setting: a form with CSRF ---------------------------------------------------------


def csrf_of(page: str) -> str:
    match = re.search(r'name="csrf" value="([0-9a-f]{64})"', page)
    assert match is not None
    return match.group(1)


def test_apdex_threshold_is_set_with_a_csrf_checked_form(hub: HubServer, client_id: str) -> None:
    with settling_client(hub) as http:
        fill(http, client_id)
        endpoints = f"/apps/{client_id}/dev/endpoints"
        page = http.get(endpoints)
        assert CSRF_COOKIE in page.cookies
        token = csrf_of(page.text)
        settings = f"/apps/{client_id}/dev/settings"
        form = {"csrf": token, "apdex_ms": "100", "back": endpoints}
        assert http.post(settings, data={**form, "csrf": "0" * 64}).status_code == 403
        assert http.post(settings, data=form, headers={"Origin": "http://evil.example"}).status_code == 403
        assert http.post(settings, data=form, headers={"Sec-Fetch-Site": "cross-site"}).status_code == 403
        assert (
            http.post(
                settings, content=b'{"apdex_ms": 1}', headers={"content-type": "application/json"}
            ).status_code
            == 415
        )
        with httpx.Client(base_url=hub.url) as stranger:  # no CSRF cookie: its token is worthless
            assert stranger.post(settings, data=form).status_code == 403
        bad = http.post(settings, data={**form, "apdex_ms": "0"})
        assert bad.status_code == 400 and "from 1 to 60000" in bad.text
        assert http.get(f"/api/{client_id}/dev/settings").json()["settings"] == {"apdex_ms": 500}
        saved = http.post(settings, data=form, headers={"Origin": hub.url})
        assert saved.status_code == 303 and saved.headers["location"] == f"{endpoints}?saved=apdex"
        assert http.get(f"/api/{client_id}/dev/settings").json()["settings"] == {"apdex_ms": 100}
        page = http.get(saved.headers["location"]).text
        assert 'id="saved"' in page and "threshold of 100 ms" in page
        api = http.get(f"/api/{client_id}/dev/endpoints").json()
        assert api["apdex_ms"] == 100
        assert http.post(settings, data={**form, "back": "https://evil.example/"}).headers["location"] == (
            f"{endpoints}?saved=apdex"
        )


# -- login ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def guarded() -> Iterator[HubServer]:
    with HubServer(tokens=[TOKEN, OTHER]) as hub:
        yield hub


def login(http: httpx.Client, token: str, next_path: str = "/") -> httpx.Response:
    form = http.get("/login", params={"next": next_path})
    assert form.status_code == 200 and 'id="login-form"' in form.text
    return http.post("/login", data={"csrf": csrf_of(form.text), "token": token, "next": next_path})


def test_pages_need_a_login_and_the_session_cookie_is_safe(guarded: HubServer) -> None:
    client_id = new_uuid()
    with httpx.Client(base_url=guarded.url) as http:
        fill(http, client_id)
        page = f"/apps/{client_id}/dev/endpoints?range=6h"
        refused = http.get(page)
        assert refused.status_code == 303
        assert refused.headers["location"] == "/login?" + urlencode({"next": page})
        assert client_id not in refused.text
        wrong = login(http, "not-the-token-0123456789", page)
        assert wrong.status_code == 401 and 'id="login-error"' in wrong.text
        assert SESSION_COOKIE not in http.cookies
        ok = login(http, TOKEN, page)
        assert ok.status_code == 303 and ok.headers["location"] == page
        cookie = ok.headers["set-cookie"]
        assert cookie.startswith(f"{SESSION_COOKIE}=") and "HttpOnly" in cookie
        assert "SameSite=strict" in cookie and "Path=/" in cookie and "Secure" not in cookie  # plain http
        value = http.cookies[SESSION_COOKIE]
        assert TOKEN not in value and base64.b64encode(TOKEN.encode()).decode() not in value
        shown = http.get(page)
        assert shown.status_code == 200 and 'data-endpoint="GET /api/items/{item_id}"' in shown.text
        assert "Log out" in shown.text
        # the session is a credential of the query API too (the same gate)
        assert http.get(f"/api/{client_id}/dev/endpoints").status_code == 200
        # a forged or altered cookie is no session
        for forged in (value[:-1] + ("0" if value[-1] != "0" else "1"), "v1.9999999999.abc.def", "x" * 300):
            with httpx.Client(base_url=guarded.url, cookies={SESSION_COOKIE: forged}) as other:
                assert other.get(page).status_code == 303
        # logging out ends the session, also for a copy of the cookie
        logout = http.post("/logout", data={"csrf": csrf_of(shown.text)})
        assert logout.status_code == 303 and logout.headers["location"] == "/login"
        assert SESSION_COOKIE not in http.cookies
        with httpx.Client(base_url=guarded.url, cookies={SESSION_COOKIE: value}) as copy:
            assert copy.get(page).status_code == 303
        # the other token logs in too; the login form refuses a foreign next
        assert login(http, OTHER, "//evil.example/x").headers["location"] == "/"


def test_login_form_needs_its_csrf_token(guarded: HubServer) -> None:
    with httpx.Client(base_url=guarded.url) as http:
        http.get("/login")
        assert http.post("/login", data={"csrf": "", "token": TOKEN}).status_code == 403
        assert http.post("/login", data={"csrf": "a" * 64, "token": TOKEN}).status_code == 403
        assert SESSION_COOKIE not in http.cookies
        assert http.post("/logout").status_code == 401  # not logged in: the gate refuses


def test_a_bearer_token_reads_pages_too(guarded: HubServer) -> None:
    response = httpx.get(f"{guarded.url}/", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200 and "Apps" in response.text


def test_without_a_token_there_is_no_login(http: httpx.Client) -> None:
    response = http.get("/login", params={"next": "/apps"})
    assert response.status_code == 303 and response.headers["location"] == "/apps"
    assert "Log out" not in http.get("/").text


def test_sessions_survive_a_restart_and_end_with_their_token(tmp_path: Any) -> None:
    db = tmp_path / "hub.sqlite"
    with HubServer(db, tokens=[TOKEN, OTHER]) as hub, httpx.Client(base_url=hub.url) as http:
        assert login(http, TOKEN).status_code == 303
        value = http.cookies[SESSION_COOKIE]
    cookies = {SESSION_COOKIE: value}
    with HubServer(db, tokens=[TOKEN]) as hub, httpx.Client(base_url=hub.url, cookies=cookies) as http:
        assert http.get("/").status_code == 200
    with HubServer(db, tokens=[OTHER]) as hub, httpx.Client(base_url=hub.url, cookies=cookies) as http:
        assert http.get("/").status_code == 303  # its token is gone


def test_the_cookie_is_secure_when_served_over_https() -> None:
    """Behind a TLS-terminating proxy that the hub trusts (``X-Forwarded-Proto: https``)."""
    https = {"X-Forwarded-Proto": "https"}
    with (
        HubServer(tokens=[TOKEN], transport=Transport(forwarded_allow_ips="127.0.0.1")) as hub,
        httpx.Client(base_url=hub.url, headers=https) as http,
    ):
        form = http.get("/login")
        assert "Secure" in form.headers["set-cookie"]
        # this client reaches the hub over plain http, so its jar keeps the Secure cookie to itself
        http.cookies.set(CSRF_COOKIE, form.cookies[CSRF_COOKIE])
        response = http.post("/login", data={"csrf": csrf_of(form.text), "token": TOKEN})
        assert response.status_code == 303, response.text
        assert "Secure" in response.headers["set-cookie"] and "HttpOnly" in response.headers["set-cookie"]


def test_an_expired_session_sends_the_browser_back_to_the_login(tmp_path: Any) -> None:
    now = [time.time()]
    with (
        HubServer(tmp_path / "hub.sqlite", tokens=[TOKEN], clock=lambda: now[0]) as hub,
        httpx.Client(base_url=hub.url) as http,
    ):
        assert login(http, TOKEN).status_code == 303
        assert http.get("/").status_code == 200
        now[0] += 12 * 3600 + 1
        assert http.get("/").status_code == 303
