"""Who may change what (issue 26): writes under ``/api`` are JSON, same-origin and never
authorized by the session cookie alone; tokens have a role (viewer or admin); revoked sessions
stay revoked across restarts and processes; logins back off; channel secrets are masked; lone
surrogates are a 422; the ``--client-id`` allow-list covers the API. Real hubs over loopback."""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from apitally_hub import HubServer
from apitally_hub.config import ConfigError, HubConfig
from apitally_hub.security.tokens import TokenError, read_token_roles
from apitally_hub.web.dashboard.session import SESSION_COOKIE

ADMIN = "admin-token-0123456789abcdef"
VIEWER = "viewer-token-0123456789abcdef"
FAR_FUTURE = 4102444800  # 2100-01-01
SLACK = "https://hooks.slack.com/services/T0000/B0000/SlackSecretPart"
WEBHOOK = "https://hooks.example.com/notify?token=query-secret-1234"
CSRF_HEADER = "X-Apitally-CSRF"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def csrf_of(page: str) -> str:
    match = re.search(r'name="csrf" value="([0-9a-f]{64})"', page)
    assert match is not None
    return match.group(1)


def login(http: httpx.Client, token: str) -> httpx.Response:
    form = http.get("/login")
    return http.post("/login", data={"csrf": csrf_of(form.text), "token": token})


@pytest.fixture(scope="module")
def open_hub() -> Iterator[HubServer]:
    """No token: a loopback-only hub where everything is allowed (as before)."""
    with HubServer() as hub:
        yield hub


@pytest.fixture(scope="module")
def roles_hub() -> Iterator[HubServer]:
    with HubServer(tokens=[ADMIN], viewer_tokens=[VIEWER]) as hub:
        yield hub


@pytest.fixture
def api() -> str:
    return f"/api/{uuid.uuid4()}/prod"


# -- row 2: cross-site writes ---------------------------------------------------------------------


def test_api_writes_need_json_and_the_same_origin(open_hub: HubServer, api: str) -> None:
    body = json.dumps({"minutes": 5}).encode()
    port = int(open_hub.url.rsplit(":", 1)[1])
    other_port = port + 1 if port < 65535 else port - 1
    with httpx.Client(base_url=open_hub.url) as http:
        plain = http.post(
            f"{api}/silences",
            content=body,
            headers={
                "Content-Type": "text/plain",
                "Origin": "http://evil.example",
                "Sec-Fetch-Site": "cross-site",
            },
        )
        assert plain.status_code in (403, 415), plain.text
        assert (
            http.post(f"{api}/silences", content=body, headers={"Content-Type": "text/plain"}).status_code
            == 415
        )
        # a browser's untyped body (a Blob) is refused too; a tool's (no Origin, no Sec-Fetch-*) is JSON
        untyped = http.post(f"{api}/silences", content=body, headers={"Sec-Fetch-Site": "same-origin"})
        assert untyped.status_code == 415
        json_type = {"Content-Type": "application/json"}
        for hostile in (
            {"Origin": "http://evil.example"},
            {"Origin": "null"},
            {"Origin": f"http://127.0.0.1:{other_port}"},  # another port of this host
            {"Sec-Fetch-Site": "cross-site"},
            {"Sec-Fetch-Site": "same-site"},  # another port of the same host
        ):
            refused = http.post(f"{api}/silences", content=body, headers={**json_type, **hostile})
            assert refused.status_code == 403, (hostile, refused.text)
        assert http.get(f"{api}/silences").json()["silences"] == []
        # the same origin, a plain tool and a browser's own page still write
        ok = http.post(f"{api}/silences", content=body, headers={**json_type, "Origin": open_hub.url})
        assert ok.status_code == 201, ok.text
        assert http.post(f"{api}/silences", json={"minutes": 5}).status_code == 201
        same = {
            **json_type,
            "Sec-Fetch-Site": "same-origin",
            "Content-Type": "application/json; charset=utf-8",
        }
        assert http.post(f"{api}/silences", content=body, headers=same).status_code == 201


def test_silence_ends_at_has_the_90_day_cap(open_hub: HubServer, api: str) -> None:
    with httpx.Client(base_url=open_hub.url) as http:
        far = http.post(f"{api}/silences", json={"ends_at": FAR_FUTURE})
        assert far.status_code == 422 and far.json()["detail"][0]["loc"] == ["body", "ends_at"], far.text
        soon = http.post(f"{api}/silences", json={"ends_at": time.time() + 89 * 86400})
        assert soon.status_code == 201, soon.text
        assert len(http.get(f"{api}/silences").json()["silences"]) == 1


def test_a_session_cookie_alone_never_authorizes_an_api_write(roles_hub: HubServer, api: str) -> None:
    with httpx.Client(base_url=roles_hub.url) as http:
        assert login(http, ADMIN).status_code == 303
        assert http.get(f"{api}/silences").status_code == 200  # reads: the cookie is enough
        refused = http.post(f"{api}/silences", json={"minutes": 5})
        assert refused.status_code == 403 and CSRF_HEADER in refused.text
        wrong = http.post(f"{api}/silences", json={"minutes": 5}, headers={CSRF_HEADER: "0" * 64})
        assert wrong.status_code == 403
        page = http.get("/")
        meta = re.search(r'<meta name="apitally-csrf" content="([0-9a-f]{64})">', page.text)
        assert meta is not None
        ok = http.post(f"{api}/silences", json={"minutes": 5}, headers={CSRF_HEADER: meta.group(1)})
        assert ok.status_code == 201, ok.text
    with httpx.Client(base_url=roles_hub.url, headers=bearer(ADMIN)) as tool:  # the CLI's way
        assert tool.post(f"{api}/silences", json={"minutes": 5}).status_code == 201


# -- roles ----------------------------------------------------------------------------------------


def test_a_viewer_reads_but_cannot_write(roles_hub: HubServer, api: str) -> None:
    channel = {"name": "ops", "type": "webhook", "url": "http://127.0.0.1:9/hook"}
    with httpx.Client(base_url=roles_hub.url, headers=bearer(VIEWER)) as viewer:
        assert viewer.get("/api/apps").status_code == 200
        assert viewer.get(f"{api}/channels").status_code == 200
        for method, path, body in (
            ("POST", "channels", channel),
            ("POST", "silences", {"minutes": 5}),
            ("PUT", "health-check", {"url": "http://127.0.0.1:9/health"}),
            ("DELETE", "health-check", None),
            ("POST", "alert-rules", {"name": "r", "metric": "requests", "condition": ">", "threshold": 1}),
        ):
            refused = viewer.request(method, f"{api}/{path}", json=body)
            assert refused.status_code == 403 and "admin" in refused.text, (method, path, refused.text)
        assert viewer.get(f"{api}/channels").json()["channels"] == []
    with httpx.Client(base_url=roles_hub.url, headers=bearer(ADMIN)) as admin:
        assert admin.post(f"{api}/channels", json=channel).status_code == 201


def test_a_viewer_session_sees_no_write_controls_and_its_posts_are_refused(roles_hub: HubServer) -> None:
    client_id = str(uuid.uuid4())
    settings = f"/apps/{client_id}/prod/settings"
    endpoints = f"/apps/{client_id}/prod/endpoints"
    with httpx.Client(base_url=roles_hub.url) as viewer, httpx.Client(base_url=roles_hub.url) as admin:
        assert login(viewer, VIEWER).status_code == 303
        assert login(admin, ADMIN).status_code == 303
        for http in (viewer, admin):
            started = http.post(f"/v2/{client_id}/prod/startup", json=_startup())
            assert started.status_code == 202, started.text
        roles_hub.settle()
        admin_page = admin.get(endpoints)
        assert admin_page.status_code == 200 and 'name="apdex_ms"' in admin_page.text
        viewer_page = viewer.get(endpoints)
        assert viewer_page.status_code == 200 and 'name="apdex_ms"' not in viewer_page.text
        form = {"csrf": csrf_of(viewer_page.text), "apdex_ms": "100"}
        refused = viewer.post(settings, data=form)
        assert refused.status_code == 403
        assert viewer.get(f"/api/{client_id}/prod/settings").json()["settings"] == {"apdex_ms": 500}
        # logging out is not a write
        assert viewer.post("/logout", data={"csrf": form["csrf"]}).status_code == 303


def _startup() -> dict[str, Any]:
    from tests.support.hub_samples import startup

    return startup(str(uuid.uuid4()))


def test_token_file_roles(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    path.write_text(f"# roles\n{ADMIN}\nviewer {VIEWER}\nadmin other-admin-token-0123456\n")
    assert read_token_roles(path) == ([ADMIN, "other-admin-token-0123456"], [VIEWER])
    for bad in (f"{VIEWER} viewer", f"reader {VIEWER}", f"viewer {VIEWER} extra"):
        path.write_text(bad + "\n")
        with pytest.raises(TokenError, match="line 1"):
            read_token_roles(path)
    with pytest.raises(ValueError, match="admin"):
        HubConfig(viewer_tokens=(VIEWER,))  # viewers without an admin: nobody could ever write
    with pytest.raises(ValueError, match="both"):
        HubConfig(tokens=(ADMIN,), viewer_tokens=(ADMIN,))
    from apitally_hub.cli import build_parser
    from apitally_hub.config import load_config

    path.write_text(f"viewer {VIEWER}\n")
    args = build_parser().parse_args(["hub", "--token", ADMIN, "--token-file", str(path)])
    config = load_config(args, {})
    assert (config.tokens, config.viewer_tokens) == ((ADMIN,), (VIEWER,))
    args = build_parser().parse_args(["hub", "--token", ADMIN, "--viewer-token", "short"])
    with pytest.raises(ConfigError, match="shorter"):
        load_config(args, {})


# -- row 6: revoked sessions stay revoked -----------------------------------------------------------


def test_a_revoked_session_stays_revoked_after_a_restart_and_on_other_processes(tmp_path: Path) -> None:
    db = tmp_path / "hub.sqlite"
    with (
        HubServer(db, tokens=[ADMIN]) as first,
        HubServer(db, tokens=[ADMIN]) as second,
        httpx.Client(base_url=first.url) as http,
    ):
        assert login(http, ADMIN).status_code == 303
        cookie = {SESSION_COOKIE: http.cookies[SESSION_COOKIE]}
        page = http.get("/")
        with httpx.Client(base_url=second.url, cookies=cookie) as other:
            assert other.get("/api/apps").status_code == 200
            assert http.post("/logout", data={"csrf": csrf_of(page.text)}).status_code == 303
            with httpx.Client(base_url=first.url, cookies=cookie) as copy:
                assert copy.get("/api/apps").status_code == 401
            deadline = time.monotonic() + 10
            while other.get("/api/apps").status_code != 401:  # the other process learns of it
                assert time.monotonic() < deadline, "the other hub process still accepts the session"
    with (
        HubServer(db, tokens=[ADMIN]) as restarted,
        httpx.Client(base_url=restarted.url, cookies=cookie) as http,
    ):
        assert http.get("/api/apps").status_code == 401


# -- row 7: login backoff ---------------------------------------------------------------------------


def test_wrong_logins_back_off(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    now = [time.time()]
    caplog.set_level(logging.WARNING)
    with (
        HubServer(tmp_path / "hub.sqlite", tokens=[ADMIN], clock=lambda: now[0]) as hub,
        httpx.Client(base_url=hub.url) as http,
    ):
        csrf = csrf_of(http.get("/login").text)
        statuses = [
            http.post("/login", data={"csrf": csrf, "token": f"wrong-token-{i:020d}"}).status_code
            for i in range(40)
        ]
        assert statuses[0] == 401 and statuses[-1] == 429
        assert statuses.count(401) <= 10
        refused = http.post("/login", data={"csrf": csrf, "token": ADMIN})
        assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > 0
        now[0] += 61
        assert http.post("/login", data={"csrf": csrf, "token": ADMIN}).status_code == 303
    warnings = [
        r for r in caplog.records if "login" in r.getMessage().lower() and r.levelno >= logging.WARNING
    ]
    assert 1 <= len(warnings) <= 3, [r.getMessage() for r in warnings]


# -- row 8: channel secrets are masked ----------------------------------------------------------------


def test_channel_secrets_are_masked_and_kept_when_sent_back(open_hub: HubServer, api: str) -> None:
    secrets = (
        "SlackSecretPart",
        "query-secret-1234",
        "header-secret-1234",
        "hmac-secret-1234",
        "smtp-pass-1234",
    )
    with httpx.Client(base_url=open_hub.url) as http:
        slack = http.post(f"{api}/channels", json={"name": "slack", "type": "slack", "url": SLACK})
        hook = http.post(
            f"{api}/channels",
            json={
                "name": "hook",
                "type": "webhook",
                "url": WEBHOOK,
                "secret": "hmac-secret-1234",
                "headers": {"Authorization": "Bearer header-secret-1234"},
            },
        )
        mail = http.post(
            f"{api}/channels",
            json={
                "name": "mail",
                "type": "email",
                "smtp_host": "127.0.0.1",
                "username": "u",
                "password": "smtp-pass-1234",
                "from_address": "hub@example.com",
                "to": ["ops@example.com"],
            },
        )
        for created in (slack, hook, mail):
            assert created.status_code == 201, created.text
        shown = [http.get(f"{api}/channels").text, slack.text, hook.text, mail.text]
        shown += [http.get(f"{api}/channels/{c.json()['id']}").text for c in (slack, hook, mail)]
        for text in shown:
            for secret in secrets:
                assert secret not in text, (secret, text)
        listed = {c["name"]: c for c in http.get(f"{api}/channels").json()["channels"]}
        assert listed["slack"]["url"].startswith("https://hooks.slack.com/")
        assert listed["hook"]["url"].startswith("https://hooks.example.com/")
        assert listed["hook"]["secret_set"] is True and listed["mail"]["password_set"] is True
        # sending the masked view back (PUT) or a part of it (PATCH) keeps the stored secrets
        hook_view = {
            k: v
            for k, v in listed["hook"].items()
            if k not in ("id", "source", "created_at", "updated_at", "secret_set")
        }
        put = http.put(f"{api}/channels/{listed['hook']['id']}", json={**hook_view, "name": "hook2"})
        assert put.status_code == 200, put.text
        patch = http.patch(
            f"{api}/channels/{listed['slack']['id']}", json={"url": listed["slack"]["url"], "name": "s2"}
        )
        assert patch.status_code == 200, patch.text
        store = open_hub.context.store.alerts
        kept_hook = store.channel(listed["hook"]["id"])
        kept_slack = store.channel(listed["slack"]["id"])
        assert kept_hook is not None and kept_slack is not None
        assert kept_hook.config["url"] == WEBHOOK and kept_slack.config["url"] == SLACK
        assert kept_hook.config["headers"] == {"Authorization": "Bearer header-secret-1234"}
        assert kept_hook.config["secret"] == "hmac-secret-1234"
        # and a new value replaces it
        new_url = "https://hooks.slack.com/services/T1/B1/NewSecret"
        assert http.patch(f"{api}/channels/{listed['slack']['id']}", json={"url": new_url}).status_code == 200
        replaced = store.channel(listed["slack"]["id"])
        assert replaced is not None and replaced.config["url"] == new_url
        page = http.get(f"/apps/{api.split('/')[2]}/prod/alerts")
        for secret in secrets:
            assert secret not in page.text


# -- row 9: lone surrogates --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "channels", '{"name": "sur\\ud800", "type": "webhook", "url": "http://127.0.0.1:9/h"}'),
        ("POST", "silences", '{"minutes": 5, "comment": "\\udfff"}'),
        ("PUT", "health-check", '{"url": "http://127.0.0.1:9/\\ud800"}'),
    ],
)
def test_lone_surrogates_are_a_422(open_hub: HubServer, api: str, method: str, path: str, body: str) -> None:
    with httpx.Client(base_url=open_hub.url) as http:
        response = http.request(
            method, f"{api}/{path}", content=body.encode(), headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 422, response.text
        assert "surrogate" in response.text


# -- row 10: the client-id allow-list covers the API ---------------------------------------------------


def test_the_client_id_allow_list_covers_every_api_route() -> None:
    allowed = str(uuid.uuid4())
    other = str(uuid.uuid4())
    with HubServer(client_ids=[allowed]) as hub, httpx.Client(base_url=hub.url) as http:
        refused = http.put(f"/api/{other}/prod/health-check", json={"url": "http://127.0.0.1:9/health"})
        assert refused.status_code == 404, refused.text
        for path in ("overview", "endpoints", "channels", "alert-rules", "silences", "settings"):
            assert http.get(f"/api/{other}/prod/{path}").status_code == 404, path
        assert http.post(f"/api/{other}/prod/silences", json={"minutes": 5}).status_code == 404
        assert http.get(f"/api/{allowed}/prod/channels").status_code == 200
        assert http.post(f"/api/{allowed}/prod/silences", json={"minutes": 5}).status_code == 201
