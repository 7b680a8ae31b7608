"""What the hub sends out, against hostile input (issue 26): names, consumers and paths that try
to mention everyone or plant links in Slack and Teams, bursts of alerts, poison notifications,
smuggled webhook headers and credentials in URLs. Real receivers on loopback (a webhook endpoint,
an SMTP server); evaluation and delivery driven by hand."""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.alerting_helpers import DrivenHub, driven_hub, traffic
from tests.support.servers import ServerThread, SMTPServer, WebhookReceiver

HOSTILE = (
    "<!channel> <http://evil.example/reset|API key expired: click to renew> [renew](http://evil.example/t)"
)
HOSTILE_PATH = "/v1/<!here>/[click](http://evil.example/x)"


@pytest.fixture
def receiver() -> Iterator[tuple[WebhookReceiver, str]]:
    hook = WebhookReceiver()
    with ServerThread(hook.app()) as url:
        yield hook, url


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[DrivenHub]:
    with driven_hub(tmp_path / "hub.sqlite", str(uuid.uuid4())) as driven:
        yield driven


def channels(hub: DrivenHub, url: str) -> list[str]:
    return [
        str(hub.post("channels", {"name": kind, "type": kind, "url": f"{url}/{kind}"})["id"])
        for kind in ("slack", "teams", "webhook")
    ]


def client_errors_rule(hub: DrivenHub, channel_ids: list[str], for_each: str) -> str:
    body = {
        "name": "4xx",
        "metric": "client_errors",
        "condition": ">",
        "threshold": 0,
        "window_minutes": 1,
        "scope": {"for_each": for_each},
        "channels": channel_ids,
    }
    return str(hub.post("alert-rules", body)["id"])


def consumer_traffic(consumer: str, path: str = "/items") -> dict[str, Any]:
    return {**traffic(path=path, status=404), "consumer": consumer}


def texts_of(value: Any) -> Iterator[str]:
    """Every string in a JSON document."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from texts_of(item)
    elif isinstance(value, list):
        for item in value:
            yield from texts_of(item)


def slack_markup(post: dict[str, Any]) -> list[str]:
    """What Slack parses as markup: ``text`` and every ``mrkdwn`` text."""
    found = [post["text"]]
    for block in post["blocks"]:
        for part in [block.get("text") or {}, *(block.get("fields") or [])]:
            if part.get("type") == "mrkdwn":
                found.append(part["text"])
    return found


def teams_markdown(post: dict[str, Any]) -> list[str]:
    """What Teams renders as markdown: TextBlock texts and FactSet values."""
    [attachment] = post["attachments"]
    found = []
    for element in attachment["content"]["body"]:
        if element["type"] == "TextBlock":
            found.append(element["text"])
        if element["type"] == "FactSet":
            found += [fact["value"] for fact in element["facts"]]
    return found


@pytest.mark.parametrize(
    ("for_each", "consumer", "path"), [("consumer", HOSTILE, "/items"), ("endpoint", None, HOSTILE_PATH)]
)
def test_slack_and_teams_get_hostile_names_as_text(
    hub: DrivenHub,
    receiver: tuple[WebhookReceiver, str],
    for_each: str,
    consumer: str | None,
    path: str,
) -> None:
    hook, url = receiver
    client_errors_rule(hub, channels(hub, url), for_each)
    hub.sync({**traffic(path=path, status=404), "consumer": consumer})
    hub.evaluate()
    [slack] = [r.json() for r in hook.delivered("/slack")]
    [teams] = [r.json() for r in hook.delivered("/teams")]
    [webhook] = [r.json() for r in hook.delivered("/webhook")]
    for text in slack_markup(slack):
        assert "<!" not in text and "<http" not in text, text
    assert any("&lt;!" in text for text in slack_markup(slack))
    for text in teams_markdown(teams):
        assert "](" not in text.replace("\\](", "") and "[click]" not in text and "[renew]" not in text, text
    # the webhook's JSON carries the labels as they are: the receiver decides how to show them
    hostile = consumer if for_each == "consumer" else path
    assert hostile in webhook["summary"] and hostile in texts_of(webhook["labels"])
    # the Teams summary is a text run: shown as it is, never parsed
    runs = [t for t in texts_of(teams) if hostile in t]
    assert runs, teams


def test_a_burst_of_alerts_is_one_grouped_notice_per_channel(
    hub: DrivenHub, receiver: tuple[WebhookReceiver, str]
) -> None:
    hook, url = receiver
    rule_id = client_errors_rule(hub, channels(hub, url), "consumer")
    hub.sync(*[consumer_traffic(f"{HOSTILE} #{index:03}") for index in range(300)])
    hub.evaluate()
    assert len(hub.alerts()) == 300 and {a["state"] for a in hub.alerts()} == {"firing"}
    assert [len(hook.delivered(f"/{kind}")) for kind in ("slack", "teams", "webhook")] == [1, 1, 1]
    [doc] = [r.json() for r in hook.delivered("/webhook")]
    assert doc["event"] == "firing" and doc["rule"]["id"] == rule_id
    assert doc["grouped"]["count"] == 300 and len(doc["grouped"]["alerts"]) == 5
    first = doc["grouped"]["alerts"][0]
    assert first["labels"] == {"consumer": f"{HOSTILE} #000"} and first["value"] == 1 and first["alert_id"]
    assert (doc["alert_id"], doc["labels"], doc["value"]) == (None, {}, None)
    assert "300 alerts" in doc["summary"] and "and 295 more" in doc["summary"]
    [slack] = [r.json() for r in hook.delivered("/slack")]
    assert "300 alerts" in slack["text"] and all("<!" not in t for t in slack_markup(slack))
    # resolved together: one grouped resolved notice each
    hub.clock.advance(150)
    hub.evaluate()
    assert [len(hook.delivered(f"/{kind}")) for kind in ("slack", "teams", "webhook")] == [2, 2, 2]
    resolved = hook.delivered("/webhook")[1].json()
    assert resolved["event"] == "resolved" and resolved["grouped"]["count"] == 300
    # a small round keeps its single notices, without "grouped"
    hub.sync(consumer_traffic("one"))
    hub.evaluate()
    single = hook.delivered("/webhook")[2].json()
    assert "grouped" not in single and single["labels"] == {"consumer": "one"} and single["value"] == 1


def test_a_poison_notification_fails_once_with_its_error_and_never_blocks_the_channel(
    hub: DrivenHub,
) -> None:
    with SMTPServer() as smtp:
        channel = hub.post(
            "channels",
            {
                "name": "mail",
                "type": "email",
                "smtp_host": "127.0.0.1",
                "smtp_port": smtp.port,
                "smtp_security": "none",
                "from_address": "hub@example.com",
                "to": ["ops@example.com"],
            },
        )
        alerting = hub.server.context.alerting
        assert alerting is not None
        app = hub.server.context.store.alerts.channel(channel["id"]).app  # type: ignore[union-attr]
        # stored before the hub checked names (or broken): a document that cannot be formatted,
        # and a rule name with a line separator trying to add a Bcc header
        [broken] = alerting.enqueue(app, None, "test", {"event": "firing"}, [channel["id"]])
        poison = json.loads(json.dumps(_test_document(hub, channel["id"])))
        poison["rule"]["name"] = "poison\u2028Bcc: evil@example.com"
        [injected] = alerting.enqueue(app, None, "test", poison, [channel["id"]])
        [normal] = hub.post(f"channels/{channel['id']}/test", None, expect=202)["notification_ids"]
        hub.deliver()
        first = hub.get(f"notifications/{broken}")
        assert (first["status"], first["attempts"]) == ("failed", 1)
        assert first["last_error"].startswith("attempt 1: could not send: KeyError")
        messages = smtp.wait_for(3)  # the test that made the document, then the two behind it
        subjects = [m["Subject"] for m in messages]
        assert any("poison Bcc: evil@example.com" in s for s in subjects), subjects
        assert all(m["Bcc"] is None and "\u2028" not in m["Subject"] for m in messages)
        assert [hub.get(f"notifications/{n}")["status"] for n in (injected, normal)] == ["sent", "sent"]


def _test_document(hub: DrivenHub, channel_id: str) -> dict[str, Any]:
    """The document of a channel test, as the hub makes it."""
    alerting = hub.server.context.alerting
    assert alerting is not None
    [notification_id] = hub.post(f"channels/{channel_id}/test", None, expect=202)["notification_ids"]
    hub.deliver()
    outbox = hub.server.context.store.alerts.notification(notification_id)
    assert outbox is not None
    return dict(json.loads(outbox.payload))


def test_an_expired_notification_is_not_attempted_again(
    hub: DrivenHub, receiver: tuple[WebhookReceiver, str]
) -> None:
    hook, url = receiver
    hook.fail_first = 100
    channel = hub.post("channels", {"name": "hook", "type": "webhook", "url": url + "/hook"})
    [notification_id] = hub.post(f"channels/{channel['id']}/test", None, expect=202)["notification_ids"]
    hub.deliver()
    assert hub.get(f"notifications/{notification_id}")["status"] == "pending"
    hub.clock.advance(3601)  # past its expiry (an hour)
    hub.deliver()
    status = hub.get(f"notifications/{notification_id}")
    assert status["status"] == "failed" and status["last_error"].startswith("expired after 1 attempts")
    assert len(hook.received) == 1


def test_deleting_a_rule_with_a_burst_of_alerts_sends_one_grouped_resolved_notice(
    hub: DrivenHub, receiver: tuple[WebhookReceiver, str]
) -> None:
    hook, url = receiver
    rule_id = client_errors_rule(hub, channels(hub, url), "consumer")
    hub.sync(*[consumer_traffic(f"c{index}") for index in range(50)])
    hub.evaluate()
    assert hub.http.delete(f"{hub.api}/alert-rules/{rule_id}").status_code == 204
    hub.deliver()
    assert [len(hook.delivered(f"/{kind}")) for kind in ("slack", "teams", "webhook")] == [2, 2, 2]
    resolved = hook.delivered("/webhook")[1].json()
    assert (resolved["event"], resolved["grouped"]["count"]) == ("resolved", 50)
    assert resolved["summary"].endswith("(the rule was deleted)")


@pytest.mark.parametrize(
    "name",
    [
        "poison\u2028Bcc: evil@example.com",
        "a\u2029b",
        "line\nbreak",
        "carriage\rreturn",
        "bell\x07",
        "del\x7fnext",
        "c1\x85next",
    ],
)
def test_names_with_line_separators_are_refused(hub: DrivenHub, name: str) -> None:
    rule = {"name": name, "metric": "server_errors", "condition": ">", "threshold": 0, "window_minutes": 1}
    response = hub.http.post(f"{hub.api}/alert-rules", json=rule)
    assert response.status_code == 422, response.text
    assert [e["loc"] for e in response.json()["detail"]] == [["body", "name"]]
    channel = {"name": name, "type": "webhook", "url": "http://127.0.0.1:9/hook"}
    response = hub.http.post(f"{hub.api}/channels", json=channel)
    assert response.status_code == 422 and [e["loc"] for e in response.json()["detail"]] == [["body", "name"]]


@pytest.mark.parametrize(
    ("headers", "loc"),
    [
        ({"Host": "internal.example"}, "Host"),
        ({"Content-Length": "5"}, "Content-Length"),
        ({"transfer-encoding": "chunked"}, "transfer-encoding"),
        ({"Connection": "close"}, "Connection"),
        ({"Keep-Alive": "timeout=5"}, "Keep-Alive"),
        ({"Upgrade": "h2c"}, "Upgrade"),
        ({"TE": "trailers"}, "TE"),
        ({"Proxy-Authorization": "Basic eA=="}, "Proxy-Authorization"),
        ({"X-Apitally-Signature": "sha256=0"}, "X-Apitally-Signature"),
        ({"X-Apitally-Timestamp": "1"}, "X-Apitally-Timestamp"),
        ({"x-apitally-notification-id": "1"}, "x-apitally-notification-id"),
        ({"X-A": "é"}, "X-A"),
        ({"X-A": "a\r\nX-Injected: 1"}, "X-A"),
        ({"X-A": "a\nb"}, "X-A"),
        ({"X-A": ""}, "X-A"),
        ({"X A": "b"}, "X A"),
        ({"X-A:": "b"}, "X-A:"),
        ({"X-É": "b"}, "X-É"),
    ],
)
def test_webhook_headers_that_would_change_the_request_are_refused(
    hub: DrivenHub, headers: dict[str, str], loc: str
) -> None:
    body = {"name": "hook", "type": "webhook", "url": "http://127.0.0.1:9/hook", "headers": headers}
    response = hub.http.post(f"{hub.api}/channels", json=body)
    assert response.status_code == 422, response.text
    assert [e["loc"] for e in response.json()["detail"]] == [["body", "headers", loc]]


def test_a_webhook_sends_its_own_headers_and_the_allowed_extra_ones(
    hub: DrivenHub, receiver: tuple[WebhookReceiver, str]
) -> None:
    hook, url = receiver
    headers = {"Authorization": "Bearer t0ken", "X-Team": "ops; region=eu", "X_Under.score~": "x"}
    channel = hub.post(
        "channels", {"name": "hook", "type": "webhook", "url": url + "/hook", "headers": headers}
    )
    hub.post(f"channels/{channel['id']}/test", None, expect=202)
    hub.deliver()
    [received] = hook.delivered("/hook")
    assert (
        received.headers["authorization"] == "Bearer t0ken" and received.headers["x-team"] == "ops; region=eu"
    )
    assert received.headers["content-length"] == str(len(received.body))
    assert "transfer-encoding" not in received.headers


def test_a_stored_unsafe_header_fails_the_attempt_for_good(
    hub: DrivenHub, receiver: tuple[WebhookReceiver, str]
) -> None:
    """A channel stored before the hub checked headers: refused at send time, not retried."""
    hook, url = receiver
    channel = hub.post("channels", {"name": "hook", "type": "webhook", "url": url + "/hook"})
    store = hub.server.context.store
    record = store.alerts.channel(channel["id"])
    assert record is not None
    config = {**record.config, "headers": {"Content-Length": "5", "Transfer-Encoding": "chunked"}}
    store.alerts.put_channel(dataclasses.replace(record, config=config))
    [notification_id] = hub.post(f"channels/{channel['id']}/test", None, expect=202)["notification_ids"]
    hub.deliver()
    status = hub.get(f"notifications/{notification_id}")
    assert (status["status"], status["attempts"]) == ("failed", 1)
    assert "Content-Length" in status["last_error"] and hook.received == []


@pytest.mark.parametrize(
    "url",
    [
        "http://user:pw@127.0.0.1:9/creds",
        "http://user@127.0.0.1:9/creds",
        "https://:pw@example.com/",
        "http://@127.0.0.1:9/",
    ],
)
def test_credentials_in_urls_are_refused(hub: DrivenHub, url: str) -> None:
    response = hub.http.put(f"{hub.api}/health-check", json={"url": url})
    assert response.status_code == 422, response.text
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", "url"] and "credentials" in error["msg"]
    for kind in ("webhook", "slack", "teams"):
        response = hub.http.post(f"{hub.api}/channels", json={"name": "c", "type": kind, "url": url})
        assert response.status_code == 422, response.text
        assert [e["loc"] for e in response.json()["detail"]] == [["body", "url"]]
