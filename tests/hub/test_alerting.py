"""Alerting in a real hub, rounds driven by the test (a fake clock, evaluation and delivery run by
hand), notifications to a real webhook receiver and a real SMTP server: firing and resolved,
per-endpoint instances, reminders, silences, the uptime rule, no duplicates across a restart,
one evaluator among several hub processes, and the payload formats."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from apitally_hub.alerting.notifiers.formats import sign
from tests.support.alerting_helpers import DrivenHub, FakeClock, RealClock, driven_hub, traffic
from tests.support.servers import ServerThread, SMTPServer, WebhookReceiver


@pytest.fixture
def receiver() -> Iterator[tuple[WebhookReceiver, str]]:
    hook = WebhookReceiver()
    with ServerThread(hook.app()) as url:
        yield hook, url


@pytest.fixture
def client_id() -> str:
    return str(uuid.uuid4())


@pytest.fixture
def hub(tmp_path: Path, client_id: str, hub_db: str | Path) -> Iterator[DrivenHub]:
    with driven_hub(hub_db, client_id) as driven:
        yield driven


def webhook(hub: DrivenHub, url: str, **extra: Any) -> str:
    return str(
        hub.post(
            "channels", {"name": f"hook-{uuid.uuid4().hex[:6]}", "type": "webhook", "url": url, **extra}
        )["id"]
    )


def rule(hub: DrivenHub, channels: list[str], **fields: Any) -> str:
    body = {"name": "5xx", "metric": "server_errors", "condition": ">", "threshold": 0, "window_minutes": 1}
    return str(hub.post("alert-rules", {**body, "channels": channels, **fields})["id"])


def events(hook: WebhookReceiver, path: str = "/hook") -> list[tuple[str, Any]]:
    return [(r.json()["event"], r.json()["value"]) for r in hook.delivered(path)]


def test_server_errors_fire_then_resolve_with_a_signed_webhook(
    hub: DrivenHub, receiver: tuple[WebhookReceiver, str], client_id: str
) -> None:
    hook, url = receiver
    channel = webhook(hub, url + "/hook", secret="s3cret")
    rule_id = rule(hub, [channel])
    hub.startup()
    hub.sync(traffic(status=200, count=5))
    hub.evaluate()
    [instance] = hub.alerts()
    assert (instance["state"], instance["value"], instance["rule_name"]) == ("normal", 0, "5xx")
    hub.sync(traffic(status=500, count=3))
    hub.evaluate()
    [firing] = hook.delivered("/hook")
    doc = firing.json()
    assert doc["event"] == "firing" and doc["value"] == 3 and doc["threshold"] == 0
    assert doc["rule"] == {**doc["rule"], "id": rule_id, "name": "5xx"}
    assert (doc["client_id"], doc["env"], doc["state"], doc["reminder"]) == (
        client_id,
        "prod",
        "firing",
        False,
    )
    assert firing.headers["x-apitally-notification-id"] == doc["id"]
    timestamp = firing.headers["x-apitally-timestamp"]
    assert firing.headers["x-apitally-signature"] == "sha256=" + sign("s3cret", timestamp, firing.body)
    assert [a["state"] for a in hub.alerts()] == ["firing"]
    hub.evaluate()  # still firing: nothing new
    assert len(hook.delivered()) == 1
    hub.clock.advance(150)  # the minute with the errors left the 1-minute window
    hub.evaluate()
    assert events(hook) == [("firing", 3), ("resolved", 0)]
    resolved = hook.delivered()[1].json()
    assert resolved["alert_id"] == doc["alert_id"] and resolved["resolved_at"] is not None
    history = hub.get("alerts/history")["history"]
    assert [(h["from"], h["to"]) for h in history] == [("firing", "normal"), ("normal", "firing")]
    notifications = hub.get("notifications")["notifications"]
    assert [(n["event"], n["status"], n["attempts"]) for n in notifications] == [
        ("resolved", "sent", 1),
        ("firing", "sent", 1),
    ]


def test_for_each_endpoint_and_a_pending_period(
    hub: DrivenHub, receiver: tuple[WebhookReceiver, str]
) -> None:
    hook, url = receiver
    channel = webhook(hub, url + "/hook")
    rule(
        hub,
        [channel],
        name="slow",
        metric="response_time_p95",
        threshold=200,
        for_minutes=2,
        scope={"path_pattern": "/api/*", "for_each": "endpoint"},
    )
    hub.sync(traffic(path="/api/a", ms=500), traffic(path="/api/b", ms=50), traffic(path="/other", ms=900))
    hub.evaluate()
    assert [(a["labels"], a["state"]) for a in hub.alerts()] == [
        ({"method": "GET", "path": "/api/a"}, "pending")
    ]
    for _ in range(2):
        hub.clock.advance(60)
        hub.sync(traffic(path="/api/a", ms=500), traffic(path="/api/b", ms=50))
        hub.evaluate()
    [notice] = hook.delivered()
    assert notice.json()["labels"] == {"method": "GET", "path": "/api/a"} and notice.json()["value"] == 500
    assert "GET /api/a" in notice.json()["summary"]


def test_reminders_and_silences(hub: DrivenHub, receiver: tuple[WebhookReceiver, str]) -> None:
    hook, url = receiver
    channel = webhook(hub, url + "/hook")
    rule_id = rule(hub, [channel], repeat_minutes=2)
    silence = hub.post("silences", {"rule_id": rule_id, "minutes": 2, "comment": "deploy"})
    assert silence["active"] is True
    hub.sync(traffic(status=500))
    hub.evaluate()
    assert hook.delivered() == [] and hub.alerts()[0]["silenced"] is True
    hub.clock.advance(121)  # the silence is over, still failing: the firing notice goes out now
    hub.sync(traffic(status=500))
    hub.evaluate()
    assert events(hook) == [("firing", 1)]
    hub.clock.advance(60)
    hub.sync(traffic(status=500))
    hub.evaluate()
    hub.clock.advance(60)
    hub.sync(traffic(status=500))
    hub.evaluate()
    assert [r.json()["reminder"] for r in hook.delivered()] == [False, True]
    assert hub.http.delete(f"{hub.api}/silences/{silence['id']}").status_code == 204
    assert hub.get("silences")["silences"] == []


def test_app_wide_silence_and_bad_silences(hub: DrivenHub) -> None:
    silence = hub.post("silences", {"minutes": 30})
    assert silence["rule_id"] is None
    for body, loc in [
        ({}, ["body", "minutes"]),
        ({"minutes": -1}, ["body", "minutes"]),
        ({"minutes": 5, "rule_id": "nope"}, ["body", "rule_id"]),
        ({"ends_at": 1}, ["body", "ends_at"]),
    ]:
        response = hub.http.post(f"{hub.api}/silences", json=body)
        assert response.status_code == 422, body
        assert response.json()["detail"][0]["loc"] == loc


def test_uptime_rule_fires_when_syncs_stop(hub: DrivenHub, receiver: tuple[WebhookReceiver, str]) -> None:
    hook, url = receiver
    channel = webhook(hub, url + "/hook")
    rule(hub, [channel], name="down", metric="uptime", condition="<", threshold=1)
    hub.evaluate()
    assert hub.alerts()[0]["value"] is None  # never seen: no data
    hub.startup()
    hub.sync()
    hub.clock.advance(60)
    hub.sync()  # the store infers a 60 s interval: down after 180 s without a sync
    hub.evaluate()
    assert hub.alerts()[0]["value"] == 1
    hub.clock.advance(170)
    hub.evaluate()
    assert hook.delivered() == []
    hub.clock.advance(20)
    hub.evaluate()
    assert events(hook) == [("firing", 0)]
    status = hub.get("uptime", since="1h")
    assert status["status"] == "down" and status["heartbeat"]["window"] == 180
    hub.sync()
    hub.evaluate()
    assert events(hook) == [("firing", 0), ("resolved", 1)]


def test_no_duplicate_notification_across_a_restart(
    tmp_path: Path, client_id: str, receiver: tuple[WebhookReceiver, str], hub_db: str | Path
) -> None:
    hook, url = receiver
    clock = FakeClock()
    db = hub_db
    with driven_hub(db, client_id, clock) as first:
        rule(first, [webhook(first, url + "/hook")])
        first.sync(traffic(status=500))
        first.evaluate()
        assert events(hook) == [("firing", 1)]
    with driven_hub(db, client_id, clock) as second:
        second.sync(traffic(status=500))
        for _ in range(3):
            clock.advance(20)
            assert second.evaluate()
        assert events(hook) == [("firing", 1)]
        assert second.alerts()[0]["state"] == "firing"
        clock.advance(150)
        second.evaluate()
    assert events(hook) == [("firing", 1), ("resolved", 0)]


def test_an_undelivered_notification_survives_a_restart(
    tmp_path: Path, client_id: str, receiver: tuple[WebhookReceiver, str], hub_db: str | Path
) -> None:
    hook, url = receiver
    clock = FakeClock()
    db = hub_db
    with driven_hub(db, client_id, clock) as first:
        rule(first, [webhook(first, url + "/hook")])
        first.sync(traffic(status=500))
        alerting = first.server.context.alerting
        assert alerting is not None and alerting.evaluator.evaluate_all()  # queued, not yet sent
    assert hook.delivered() == []
    with driven_hub(db, client_id, clock) as second:
        second.deliver()
        second.evaluate()
    assert events(hook) == [("firing", 1)]


def test_one_evaluator_among_several_hub_processes(
    tmp_path: Path, client_id: str, receiver: tuple[WebhookReceiver, str], hub_db: str | Path
) -> None:
    hook, url = receiver
    clock = FakeClock()
    db = hub_db
    with (
        driven_hub(db, client_id, clock, lease_seconds=30) as a,
        driven_hub(db, client_id, clock, lease_seconds=30) as b,
    ):
        rule(a, [webhook(a, url + "/hook")])
        a.sync(traffic(status=500))
        assert a.evaluate() is True
        assert b.evaluate() is False  # a holds the lease
        assert events(hook) == [("firing", 1)]
        clock.advance(31)  # a stops renewing: b takes over, finds the alert firing, sends nothing new
        b.sync(traffic(status=500))
        assert b.evaluate() is True and a.evaluate() is False
        assert events(hook) == [("firing", 1)]
        clock.advance(150)
        b.evaluate()
        a.evaluate()
    assert events(hook) == [("firing", 1), ("resolved", 0)]


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")
def test_email_slack_and_teams(hub: DrivenHub, receiver: tuple[WebhookReceiver, str]) -> None:
    hook, url = receiver
    with SMTPServer(login=("alerts", "pw")) as smtp:
        email = hub.post(
            "channels",
            {
                "name": "mail",
                "type": "email",
                "smtp_host": "127.0.0.1",
                "smtp_port": smtp.port,
                "smtp_security": "none",
                "username": "alerts",
                "password": "pw",
                "from_address": "hub@example.com",
                "to": ["ops@example.com", "dev@example.com"],
            },
        )
        assert "password" not in email and email["password_set"] is True
        slack = hub.post("channels", {"name": "slack", "type": "slack", "url": url + "/slack"})
        teams = hub.post("channels", {"name": "teams", "type": "teams", "url": url + "/teams"})
        rule(hub, [email["id"], slack["id"], teams["id"]], name="Checkout 5xx")
        hub.sync(traffic(status=500, count=2))
        hub.evaluate()
        [message] = smtp.wait_for(1)
        assert "Checkout 5xx" in message["Subject"] and "Firing" in message["Subject"]
        assert message["To"] == "ops@example.com, dev@example.com" and smtp.logins == ["alerts"]
        assert "server_errors > 0" in message.get_content()
    [slack_post] = hook.delivered("/slack")
    body = slack_post.json()
    assert "Checkout 5xx" in body["text"] and body["blocks"][0]["type"] == "header"
    assert {"type": "mrkdwn", "text": "*Value*\n2"} in body["blocks"][2]["fields"]
    [teams_post] = hook.delivered("/teams")
    card = teams_post.json()
    assert card["type"] == "message"
    [attachment] = card["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    content = attachment["content"]
    assert content["type"] == "AdaptiveCard" and "Checkout 5xx" in content["body"][0]["text"]
    assert {"title": "Value", "value": "2"} in content["body"][2]["facts"]


def test_test_notifications_and_a_failing_webhook_retried(
    tmp_path: Path, client_id: str, receiver: tuple[WebhookReceiver, str], hub_db: str | Path
) -> None:
    hook, url = receiver
    hook.fail_first = 2
    settings = {"enabled": True, "interval": 3600, "retry_base_seconds": 0.1, "retry_max_seconds": 0.2}
    with driven_hub(hub_db, client_id, RealClock(), **settings) as hub:
        channel = webhook(hub, url + "/hook")
        [notification_id] = hub.post(f"channels/{channel}/test", None, expect=202)["notification_ids"]
        [delivered] = hook.wait_for(lambda d: len(d) == 1, timeout=20)
        assert [r.status_code for r in hook.received] == [503, 503, 200]
        assert {json.loads(r.body)["id"] for r in hook.received} == {notification_id}
        doc = delivered.json()
        assert doc["test"] is True and doc["event"] == "firing" and doc["summary"].startswith("[TEST]")
        hub.server.context.alerting.delivery.wait_idle()  # type: ignore[union-attr]
        status = hub.get(f"notifications/{notification_id}")
        assert (status["status"], status["attempts"]) == ("sent", 3)
        assert status["last_error"] == "attempt 2: HTTP 503"
