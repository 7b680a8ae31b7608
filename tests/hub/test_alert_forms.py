"""Issue 27's alerting slice over HTTP: the Alerts page's forms create, edit, enable, disable,
test and delete rules and channels, create and end silences, set and turn off the health check;
their errors are the JSON API's, shown next to the field (422); channel secrets never reach the
page; viewers get no controls and a 403; entries of the alerts file are read-only. Real hubs over
loopback, deliveries to a real webhook receiver."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from apitally_hub import HubServer
from apitally_hub.alerting.config import AlertingConfig
from tests.support.servers import ServerThread, WebhookReceiver

ADMIN = "admin-token-0123456789abcdef"
VIEWER = "viewer-token-0123456789abcdef"
SLACK = "https://hooks.slack.com/services/T0000/B0000/SlackSecretPart"
QUIET = AlertingConfig(interval=3600)
"""Alerting running (tests and deliveries work) without evaluating during a test."""


def csrf_of(page: str) -> str:
    match = re.search(r'name="csrf" value="([0-9a-f]{64})"', page)
    assert match is not None
    return match.group(1)


def ids_in(page: str, kind: str) -> list[str]:
    return re.findall(rf"/alerts/{kind}/([0-9a-f-]{{36}})/", page)


class Forms:
    """An admin's browser, over HTTP: pages and their forms for one app env."""

    def __init__(self, hub: HubServer, http: httpx.Client, client_id: str) -> None:
        self.hub, self.http, self.client_id = hub, http, client_id
        self.base = f"/apps/{client_id}/prod/alerts"
        self.api = f"/api/{client_id}/prod"

    def page(self, path: str = "") -> str:
        response = self.http.get(self.base + path)
        assert response.status_code == 200, response.text
        return response.text

    def post(self, path: str, form: dict[str, Any], expect: int = 303) -> httpx.Response:
        csrf = csrf_of(self.page())
        response = self.http.post(self.base + path, data={"csrf": csrf, **form})
        assert response.status_code == expect, response.text
        if expect == 303:
            assert response.headers["location"].startswith(self.base + "?done=")
        return response

    def get(self, resource: str) -> Any:
        response = self.http.get(f"{self.api}/{resource}")
        assert response.status_code == 200, response.text
        return response.json()


@pytest.fixture(scope="module")
def receiver() -> Iterator[tuple[WebhookReceiver, str]]:
    hook = WebhookReceiver()
    with ServerThread(hook.app()) as url:
        yield hook, url


@pytest.fixture(scope="module")
def open_hub() -> Iterator[HubServer]:
    with HubServer(alerting=QUIET) as hub:
        yield hub


@pytest.fixture
def forms(open_hub: HubServer) -> Iterator[Forms]:
    with httpx.Client(base_url=open_hub.url, timeout=10) as http:
        yield Forms(open_hub, http, str(uuid.uuid4()))


RULE = {
    "name": "5xx",
    "metric": "server_errors",
    "condition": ">",
    "threshold": "0",
    "window_minutes": "1",
    "enabled": "on",
}


def test_the_alerts_page_links_every_form_with_labels(forms: Forms) -> None:
    page = forms.page()
    for text in ("New rule", "New channel", "New silence"):
        assert f">{text}</a>" in page
    assert ">URL</label>" in page and "Enabled</label>" in page and ">Save</button>" in page
    rule_form = forms.page("/rules/new")
    for label in ("Name", "Metric", "Threshold", "Window (minutes)", "Condition", "For (minutes)"):
        assert f">{label}</label>" in rule_form, label
    assert ">Create rule</button>" in rule_form
    channel_form = forms.page("/channels/new")
    for label in ("Name", "Type", "URL", "Secret", "Headers", "SMTP host", "Recipients"):
        assert f">{label}</label>" in channel_form, label
    assert ">Create channel</button>" in channel_form
    assert ">Create silence</button>" in forms.page("/silences/new")


def test_channels_created_edited_tested_and_deleted_with_secrets_masked(
    forms: Forms, receiver: tuple[WebhookReceiver, str]
) -> None:
    hook, hook_url = receiver
    path = f"/{uuid.uuid4()}"
    secret_url = f"{hook_url}{path}?token=query-secret-1234"
    bad = forms.post(
        "/channels/new", {"name": "ops", "type": "webhook", "url": "ftp://x", "headers": "Host: x"}, 422
    )
    assert 'id="url-error"' in bad.text and 'id="headers-error"' in bad.text and "Host" in bad.text
    assert forms.get("channels")["channels"] == []
    forms.post(
        "/channels/new",
        {
            "name": "ops",
            "type": "webhook",
            "url": secret_url,
            "secret": "hmac-secret-1234",
            "headers": "Authorization: Bearer header-secret-1234",
            "smtp_host": "ignored for a webhook",
        },
    )
    taken = forms.post("/channels/new", {"name": "ops", "type": "slack", "url": SLACK}, 409)
    assert 'id="name-error"' in taken.text and "has this name" in taken.text
    [channel] = forms.get("channels")["channels"]
    assert channel["secret_set"] is True and channel["headers"] == {"Authorization": "********"}
    page = forms.page()
    assert 'data-channel="ops"' in page
    edit = forms.page(f"/channels/{channel['id']}")
    for text in (page, edit):
        for secret in ("query-secret-1234", "hmac-secret-1234", "header-secret-1234", path):
            assert secret not in text
    assert 'value="********"' in edit and "Authorization: ********" in edit

    # sending the edit form back as shown (masked) keeps every secret; the name changes
    form = {
        "name": "ops-hook",
        "type": "webhook",
        "url": shown_url(edit),
        "secret": "********",
        "headers": "Authorization: ********",
    }
    forms.post(f"/channels/{channel['id']}", form)
    store = forms_store(forms)
    kept = store.channel(channel["id"])
    assert kept is not None and kept.name == "ops-hook"
    assert kept.config == {
        "url": secret_url,
        "secret": "hmac-secret-1234",
        "headers": {"Authorization": "Bearer header-secret-1234"},
    }
    # the test notice goes to the stored (unmasked) URL, signed with the stored secret
    forms.post(f"/channels/{channel['id']}/action", {"action": "test"})
    [notice] = hook.wait_for(lambda got: len(got) >= 1, path=path)
    assert notice.json()["test"] is True and notice.headers["authorization"] == "Bearer header-secret-1234"
    assert notice.headers["x-apitally-signature"].startswith("sha256=")
    # an emptied secret removes it, a new header value replaces the stored one
    forms.post(f"/channels/{channel['id']}", {**form, "secret": "", "headers": "Authorization: Bearer new"})
    changed = store.channel(channel["id"])
    assert changed is not None and "secret" not in changed.config
    assert changed.config["headers"] == {"Authorization": "Bearer new"}

    # delete asks first, and refuses while a rule uses the channel
    forms.post("/rules/new", {**RULE, "channels": channel["id"]})
    asked = forms.post(f"/channels/{channel['id']}/action", {"action": "delete"}, 200)
    assert "Delete the channel" in asked.text and 'name="confirm" value="yes"' in asked.text
    used = forms.post(f"/channels/{channel['id']}/action", {"action": "delete", "confirm": "yes"}, 409)
    assert "5xx" in used.text
    [rule] = forms.get("alert-rules")["rules"]
    forms.post(f"/rules/{rule['id']}/action", {"action": "delete", "confirm": "yes"})
    forms.post(f"/channels/{channel['id']}/action", {"action": "delete", "confirm": "yes"})
    assert forms.get("channels")["channels"] == []


def shown_url(page: str) -> str:
    match = re.search(r'id="channel-url" name="url" value="([^"]*)"', page)
    assert match is not None
    return match.group(1)


def forms_store(forms: Forms) -> Any:
    return forms.hub.context.store.alerts


def test_email_channel_form(forms: Forms) -> None:
    bad = forms.post(
        "/channels/new",
        {"name": "mail", "type": "email", "smtp_port": "x", "from_address": "nope", "to": "a@example.com, b"},
        422,
    )
    for field in ("smtp_host", "smtp_port", "from_address", "to"):
        assert f'id="{field}-error"' in bad.text, field
    forms.post(
        "/channels/new",
        {
            "name": "mail",
            "type": "email",
            "smtp_host": "127.0.0.1",
            "smtp_port": "2525",
            "smtp_security": "none",
            "username": "u",
            "password": "smtp-pass-1234",
            "from_address": "hub@example.com",
            "to": "a@example.com, b@example.com",
        },
    )
    [mail] = forms.get("channels")["channels"]
    assert (mail["smtp_port"], mail["to"], mail["password_set"]) == (
        2525,
        ["a@example.com", "b@example.com"],
        True,
    )
    edit = forms.page(f"/channels/{mail['id']}")
    assert "smtp-pass-1234" not in edit
    values = {
        "name": "mail",
        "type": "email",
        "smtp_host": "127.0.0.1",
        "smtp_port": "2525",
        "smtp_security": "none",
        "username": "u",
        "password": "********",
        "from_address": "hub@example.com",
        "to": "ops@example.com",
    }
    forms.post(f"/channels/{mail['id']}", values)
    kept = forms_store(forms).channel(mail["id"])
    assert kept.config["password"] == "smtp-pass-1234" and kept.config["to"] == ["ops@example.com"]


def test_rules_created_edited_enabled_tested_and_deleted(
    forms: Forms, receiver: tuple[WebhookReceiver, str]
) -> None:
    hook, hook_url = receiver
    path = f"/{uuid.uuid4()}"
    forms.post("/channels/new", {"name": "ops", "type": "webhook", "url": hook_url + path})
    forms.post("/channels/new", {"name": "other", "type": "webhook", "url": hook_url + "/other"})
    channels = {c["name"]: c["id"] for c in forms.get("channels")["channels"]}
    form = forms.page("/rules/new")
    assert f'value="{channels["ops"]}"' in form and ">ops</label>" in form

    bad = forms.post(
        "/rules/new",
        {
            **RULE,
            "name": "",
            "threshold": "lots",
            "window_minutes": "90",
            "for_each": "consumer",
            "consumer": "a",
        },
        422,
    )
    for field in ("name", "threshold", "window_minutes", "for_each"):
        assert f'id="{field}-error"' in bad.text, field
    assert "Should be a finite number" in bad.text and 'value="lots"' in bad.text
    assert forms.get("alert-rules")["rules"] == []

    forms.post("/rules/new", {**RULE, "channels": channels["ops"], "path_pattern": "/api/*"})
    # both channels: two values of one field
    csrf = csrf_of(forms.page())
    both = forms.http.post(
        f"{forms.base}/rules/new",
        data={"csrf": csrf, **RULE, "name": "both", "channels": [channels["ops"], channels["other"]]},
    )
    assert both.status_code == 303, both.text
    rules = {r["name"]: r for r in forms.get("alert-rules")["rules"]}
    assert rules["5xx"]["channels"] == [channels["ops"]] and rules["5xx"]["scope"] == {
        "path_pattern": "/api/*"
    }
    assert rules["5xx"]["window_minutes"] == 1 and rules["5xx"]["enabled"] is True
    assert sorted(rules["both"]["channels"]) == sorted(channels.values())
    taken = forms.post("/rules/new", {**RULE, "channels": channels["ops"]}, 409)
    assert 'id="name-error"' in taken.text

    rule_id = rules["5xx"]["id"]
    edit = forms.page(f"/rules/{rule_id}")
    assert 'value="5xx"' in edit and 'value="/api/*"' in edit and ">Save rule</button>" in edit
    forms.post(
        f"/rules/{rule_id}", {**RULE, "threshold": "3", "for_minutes": "2", "channels": channels["other"]}
    )
    rule = forms.get(f"alert-rules/{rule_id}")
    assert (rule["threshold"], rule["for_minutes"], rule["channels"], rule["scope"]) == (
        3,
        2,
        [channels["other"]],
        {},
    )
    forms.post(f"/rules/{rule_id}/action", {"action": "disable"})
    assert forms.get(f"alert-rules/{rule_id}")["enabled"] is False
    assert "Enable</button>" in forms.page()
    forms.post(f"/rules/{rule_id}/action", {"action": "enable"})
    assert forms.get(f"alert-rules/{rule_id}")["enabled"] is True

    forms.post(f"/rules/{rules['both']['id']}/action", {"action": "test"})
    hook.wait_for(lambda got: any(r.json()["rule"]["name"] == "both" for r in got), path=path)
    forms.post(f"/rules/{rule_id}/action", {"action": "delete", "confirm": "yes"})
    assert [r["name"] for r in forms.get("alert-rules")["rules"]] == ["both"]


def test_silences_and_the_health_check(forms: Forms) -> None:
    forms.post("/rules/new", RULE)
    [rule] = forms.get("alert-rules")["rules"]
    form = forms.page("/silences/new")
    assert f'<option value="{rule["id"]}">5xx</option>' in form
    bad = forms.post("/silences/new", {"minutes": "200000", "comment": "x"}, 422)
    assert 'id="minutes-error"' in bad.text
    forms.post("/silences/new", {"rule_id": rule["id"], "minutes": "30", "comment": "deploy"})
    [silence] = forms.get("silences")["silences"]
    assert silence["rule_id"] == rule["id"] and silence["active"] and silence["comment"] == "deploy"
    assert ">End</button>" in forms.page()
    no_token = forms.http.post(f"{forms.base}/silences/{silence['id']}/end", data={"csrf": "0" * 64})
    assert no_token.status_code == 403 and len(forms.get("silences")["silences"]) == 1
    forms.post(f"/silences/{silence['id']}/end", {})
    assert forms.get("silences")["silences"] == []

    bad_check = forms.post(
        "/health-check", {"action": "save", "url": "http://u:p@127.0.0.1:9/h", "enabled": "on"}, 422
    )
    assert 'id="url-error"' in bad_check.text and "Health check" in bad_check.text
    forms.post("/health-check", {"action": "save", "url": "http://127.0.0.1:9/health", "enabled": "on"})
    check = forms.get("health-check")
    assert (check["url"], check["enabled"], check["accepted_status_codes"]) == (
        "http://127.0.0.1:9/health",
        True,
        ["2xx"],
    )
    page = forms.page()
    assert ">Turn off</button>" in page and 'value="http://127.0.0.1:9/health"' in page
    forms.post(
        "/health-check",
        {"action": "save", "url": "http://127.0.0.1:9/health", "accepted_status_codes": "2xx 301"},
    )
    check = forms.get("health-check")
    assert check["enabled"] is False and check["accepted_status_codes"] == ["2xx", "301"]
    forms.post("/health-check", {"action": "off", "url": ""})
    assert forms.http.get(f"{forms.api}/health-check").status_code == 404


def test_viewers_see_no_controls_and_are_refused() -> None:
    client_id = str(uuid.uuid4())
    with (
        HubServer(tokens=[ADMIN], viewer_tokens=[VIEWER], alerting=QUIET) as hub,
        httpx.Client(base_url=hub.url, headers={"Authorization": f"Bearer {ADMIN}"}) as admin,
        httpx.Client(base_url=hub.url) as viewer,
    ):
        api = f"/api/{client_id}/prod"
        channel = admin.post(
            f"{api}/channels", json={"name": "ops", "type": "webhook", "url": "http://127.0.0.1:9/h"}
        )
        rule = admin.post(
            f"{api}/alert-rules",
            json={
                "name": "5xx",
                "metric": "server_errors",
                "condition": ">",
                "threshold": 0,
                "window_minutes": 1,
            },
        )
        silence = admin.post(f"{api}/silences", json={"minutes": 5})
        for created in (channel, rule, silence):
            assert created.status_code == 201, created.text
        admin_page = admin.get(f"/apps/{client_id}/prod/alerts").text
        assert "New rule" in admin_page and ">Delete</button>" in admin_page and ">End</button>" in admin_page

        login = viewer.get("/login")
        assert viewer.post("/login", data={"csrf": csrf_of(login.text), "token": VIEWER}).status_code == 303
        base = f"/apps/{client_id}/prod/alerts"
        page = viewer.get(base).text
        assert "5xx" in page and "ops" in page
        for control in (
            "New rule",
            "New channel",
            "New silence",
            ">Edit<",
            ">Delete<",
            ">Test<",
            ">End<",
            ">Disable<",
            'id="health-check-form"',
        ):
            assert control not in page, control
        assert 'id="rule-form"' not in viewer.get(f"{base}/rules/new").text
        csrf = csrf_of(page)
        rule_id, channel_id, silence_id = rule.json()["id"], channel.json()["id"], silence.json()["id"]
        for path, form in (
            ("/rules/new", {**RULE, "name": "viewer"}),
            (f"/rules/{rule_id}/action", {"action": "delete", "confirm": "yes"}),
            (f"/rules/{rule_id}/action", {"action": "disable"}),
            (f"/channels/{channel_id}/action", {"action": "test"}),
            ("/channels/new", {"name": "x", "type": "webhook", "url": "http://127.0.0.1:9/x"}),
            (f"/silences/{silence_id}/end", {}),
            ("/health-check", {"action": "save", "url": "http://127.0.0.1:9/h", "enabled": "on"}),
        ):
            refused = viewer.post(base + path, data={"csrf": csrf, **form})
            assert refused.status_code == 403, (path, refused.text)
        assert [r["name"] for r in admin.get(f"{api}/alert-rules").json()["rules"]] == ["5xx"]
        assert admin.get(f"{api}/alert-rules/{rule_id}").json()["enabled"] is True
        assert len(admin.get(f"{api}/silences").json()["silences"]) == 1


def test_entries_of_the_alerts_file_are_read_only(tmp_path: Path) -> None:
    client_id = str(uuid.uuid4())
    rules = tmp_path / "rules.toml"
    rules.write_text(
        f'client_id = "{client_id}"\nenv = "prod"\n\n'
        '[[channels]]\nname = "ops"\ntype = "webhook"\nurl = "http://127.0.0.1:9/hook"\n\n'
        '[[rules]]\nname = "5xx"\nmetric = "server_errors"\ncondition = ">"\nthreshold = 0\n'
        'window_minutes = 5\nchannels = ["ops"]\n\n'
        '[[health_checks]]\nurl = "http://127.0.0.1:9/health"\n'
    )
    settings = AlertingConfig(interval=3600, rules_file=rules)
    with HubServer(tmp_path / "hub.sqlite", alerting=settings) as hub, httpx.Client(base_url=hub.url) as http:
        forms = Forms(hub, http, client_id)
        [rule] = forms.get("alert-rules")["rules"]
        [channel] = forms.get("channels")["channels"]
        page = forms.page()
        rules_table = page.split('id="rules"')[1].split("</table>")[0]
        assert "alerts file" in rules_table and ">Edit<" not in rules_table and ">Delete<" not in rules_table
        assert ">Disable<" not in rules_table and ">Test<" in rules_table
        channels_table = page.split('id="channels"')[1].split("</table>")[0]
        assert ">Edit<" not in channels_table and ">Delete<" not in channels_table
        assert 'id="health-check-form"' not in page and 'id="health-check-file"' in page
        assert http.get(f"{forms.base}/rules/{rule['id']}").status_code == 409
        assert http.get(f"{forms.base}/channels/{channel['id']}").status_code == 409
        for path, form in (
            (f"/rules/{rule['id']}", {**RULE, "threshold": "5"}),
            (f"/rules/{rule['id']}/action", {"action": "disable"}),
            (f"/rules/{rule['id']}/action", {"action": "delete", "confirm": "yes"}),
            (f"/channels/{channel['id']}", {"name": "ops", "type": "webhook", "url": "http://127.0.0.1:9/x"}),
            (f"/channels/{channel['id']}/action", {"action": "delete", "confirm": "yes"}),
            ("/health-check", {"action": "off"}),
        ):
            refused = forms.post(path, form, 409)
            assert "alerts file" in refused.text, path
        assert forms.get(f"alert-rules/{rule['id']}")["threshold"] == 0
        assert forms.get("health-check")["source"] == "file"
