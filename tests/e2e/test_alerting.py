"""Alerting end to end: an instrumented app under uvicorn in a subprocess (syncing every second),
a real hub evaluating every 0.3 s with one-second rule minutes, a real webhook receiver and a
real SMTP server. Waits are on conditions; the longest is a resolution, which needs the minute
bucket holding the last error to leave the window (the hub aggregates per minute)."""

from __future__ import annotations

import signal
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from apitally_hub import HubServer
from apitally_hub.alerting.config import AlertingConfig
from tests.support.servers import AppProcess, ServerThread, SMTPServer, WebhookReceiver

SETTINGS = AlertingConfig(interval=0.3, minute_seconds=1.0, uptime_min_window=3.0, retry_base_seconds=0.2)


class Setup:
    def __init__(self, hub: HubServer, hook: WebhookReceiver, hook_url: str, smtp: SMTPServer) -> None:
        self.hub, self.hook, self.hook_url, self.smtp = hub, hook, hook_url, smtp
        self.client_id = str(uuid.uuid4())
        self.api = f"{hub.url}/api/{self.client_id}/prod"
        self.http = httpx.Client(timeout=10)
        self.app: AppProcess | None = None

    def env(self) -> dict[str, str]:
        return {
            "APITALLY_CLIENT_ID": self.client_id,
            "APITALLY_ENV": "prod",
            "APITALLY_HUB_BASE_URL": self.hub.url,
            "APITALLY_SYNC_INTERVAL": "1",
        }

    def start_app(self) -> AppProcess:
        self.app = AppProcess("tests.support.apps.alerting_app:app", self.env())
        self.app.wait_ready("/ok")
        return self.app

    def post(self, resource: str, body: dict[str, Any]) -> str:
        response = self.http.post(f"{self.api}/{resource}", json=body)
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    def alerts(self) -> list[dict[str, Any]]:
        return list(self.http.get(f"{self.api}/alerts").json()["alerts"])

    def notices(self, path: str) -> list[dict[str, Any]]:
        return [r.json() for r in self.hook.delivered(path)]


def wait(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    hook = WebhookReceiver()
    with (
        ServerThread(hook.app()) as hook_url,
        SMTPServer() as smtp,
        HubServer(tmp_path / "hub.sqlite", alerting=SETTINGS) as hub,
    ):
        s = Setup(hub, hook, hook_url, smtp)
        try:
            yield s
        finally:
            if s.app is not None:
                s.app.stop()
            s.http.close()


def test_server_errors_fire_while_the_app_fails_and_resolve_after(setup: Setup) -> None:
    hook = setup.post("channels", {"name": "hook", "type": "webhook", "url": setup.hook_url + "/errors"})
    mail = setup.post(
        "channels",
        {
            "name": "mail",
            "type": "email",
            "smtp_host": "127.0.0.1",
            "smtp_port": setup.smtp.port,
            "smtp_security": "none",
            "from_address": "hub@example.com",
            "to": ["ops@example.com"],
        },
    )
    setup.post(
        "alert-rules",
        {
            "name": "Checkout 5xx",
            "metric": "server_errors",
            "condition": ">",
            "threshold": 0,
            "window_minutes": 1,
            "channels": [hook, mail],
        },
    )
    app = setup.start_app()
    with httpx.Client(base_url=app.url, timeout=10) as client:
        assert client.get("/ok").status_code == 200
        time.sleep(1.5)  # a sync without errors: the rule sees 0 and stays normal
        assert setup.notices("/errors") == []
        for _ in range(3):
            assert client.get("/fail").status_code == 500
    [firing] = wait(lambda: setup.notices("/errors"), 15, "the firing notification")
    assert (firing["event"], firing["rule"]["name"], firing["value"]) == ("firing", "Checkout 5xx", 3)
    [message] = setup.smtp.wait_for(1)
    assert "Checkout 5xx" in message["Subject"]
    # the app keeps syncing (no more errors): resolved once the errors' minute leaves the window
    notices = wait(
        lambda: (n := setup.notices("/errors")) and len(n) == 2 and n, 75, "the resolved notification"
    )
    assert [n["event"] for n in notices] == ["firing", "resolved"] and notices[1]["value"] == 0
    assert notices[1]["alert_id"] == firing["alert_id"]
    setup.smtp.wait_for(2)
    assert "Resolved" in setup.smtp.messages[1]["Subject"]


def test_p95_rule_fires_only_after_its_pending_period(setup: Setup) -> None:
    hook = setup.post("channels", {"name": "hook", "type": "webhook", "url": setup.hook_url + "/slow"})
    setup.post(
        "alert-rules",
        {
            "name": "slow",
            "metric": "response_time_p95",
            "condition": ">",
            "threshold": 200,
            "window_minutes": 1,
            "for_minutes": 3,
            "channels": [hook],
            "scope": {"endpoints": [{"method": "GET", "path": "/slow"}]},
        },
    )
    app = setup.start_app()
    with httpx.Client(base_url=app.url, timeout=10) as client:
        assert client.get("/slow", params={"ms": 300}).status_code == 200
        pending = wait(
            lambda: [a for a in setup.alerts() if a["state"] == "pending"], 15, "the pending state"
        )
        assert setup.notices("/slow") == []
        [firing] = wait(lambda: setup.notices("/slow"), 15, "the firing notification")
    fired_at = setup.hook.delivered("/slow")[0].at
    assert fired_at - pending[0]["pending_since"] >= 3.0
    assert firing["value"] >= 300 and firing["labels"] == {}


def test_uptime_rule_fires_when_the_app_is_killed_and_resolves_when_it_is_back(setup: Setup) -> None:
    hook = setup.post("channels", {"name": "hook", "type": "webhook", "url": setup.hook_url + "/up"})
    setup.post(
        "alert-rules",
        {"name": "down", "metric": "uptime", "condition": "<", "threshold": 1, "channels": [hook]},
    )
    app = setup.start_app()
    wait(lambda: setup.alerts() and setup.alerts()[0]["value"] == 1, 15, "the app to be up")
    wait(
        lambda: setup.http.get(f"{setup.api}/uptime").json()["heartbeat"]["sync_interval"] < 5,
        15,
        "the interval",
    )
    app.proc.send_signal(signal.SIGKILL)
    app.proc.wait(10)
    [firing] = wait(lambda: setup.notices("/up"), 20, "the down notification")
    assert (firing["event"], firing["value"]) == ("firing", 0)
    uptime = setup.http.get(f"{setup.api}/uptime").json()
    assert uptime["status"] == "down" and uptime["down_since"] is not None
    app.stop()
    setup.start_app()
    notices = wait(lambda: (n := setup.notices("/up")) and len(n) == 2 and n, 20, "the up notification")
    assert [n["event"] for n in notices] == ["firing", "resolved"] and notices[1]["value"] == 1
