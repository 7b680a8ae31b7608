"""The hub's outgoing calls under hostile targets (issue 26): a response that never ends, one that
drips a byte at a time, one that never comes. Each attempt reads at most 64 kB and ends at its one
deadline; a slow target never holds up the other apps' health checks; and a hub stops in bounded
time in the middle of a slow delivery and a slow health check. Real servers on loopback."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from apitally_hub import HubServer
from apitally_hub.alerting.config import AlertingConfig
from tests.support.alerting_helpers import DrivenHub, RealClock, driven_hub
from tests.support.drip_server import DripServer
from tests.support.hostile_hubs import HostileHub
from tests.support.servers import ServerThread


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.02)


class Counter:
    """A healthy app: answers 200 to every GET and counts them."""

    def __init__(self) -> None:
        self.count = 0
        self.lock = threading.Lock()

    def app(self) -> Starlette:
        async def health(request: Request) -> Response:
            with self.lock:
                self.count += 1
            return Response("ok")

        return Starlette(routes=[Route("/health", health)])


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[DrivenHub]:
    settings = {"health_check_timeout": 1.0, "delivery_timeout": 1.0}
    with driven_hub(tmp_path / "hub.sqlite", str(uuid.uuid4()), **settings) as driven:
        yield driven


def put_health_check(hub: DrivenHub, url: str, client_id: str | None = None) -> None:
    api = f"/api/{client_id}/prod" if client_id else hub.api
    response = hub.http.put(f"{api}/health-check", json={"url": url})
    assert response.status_code == 200, response.text


def test_the_transport_is_the_pinned_httpx_one() -> None:
    """outgoing.transport() replaces httpx's pool with one on a deadline-aware backend."""
    from apitally_hub.alerting import outgoing  # here: the rest of the file also runs on older hubs

    transport = outgoing.transport()
    assert isinstance(transport._pool._network_backend, outgoing._Backend)
    transport.close()


def test_a_health_check_reads_at_most_64_kb_of_a_huge_answer(hub: DrivenHub) -> None:
    alerting = hub.server.context.alerting
    assert alerting is not None
    with HostileHub("big-200") as target:
        put_health_check(hub, target.url + "/health")
        started = time.monotonic()
        alerting.health.run_once()
        assert time.monotonic() - started < 2.5
        wait_until(lambda: all(c.ended is not None for c in target.snapshot()), 5, "the hub hung up")
        [connection] = target.snapshot()
        assert connection.client_left and not connection.answered  # 50 MB offered, not read
    check = hub.get("health-check")
    assert (check["status"], check["status_code"]) == ("up", 200)


def test_a_webhook_reads_at_most_64_kb_of_a_huge_answer(hub: DrivenHub) -> None:
    with HostileHub("big-200") as target:
        channel = hub.post("channels", {"name": "big", "type": "webhook", "url": target.url + "/hook"})
        [notification] = hub.post(f"channels/{channel['id']}/test", None, expect=202)["notification_ids"]
        hub.deliver()
        wait_until(lambda: all(c.ended is not None for c in target.snapshot()), 5, "the hub hung up")
        [connection] = target.snapshot()
        assert connection.client_left and not connection.answered
    assert hub.get(f"notifications/{notification}")["status"] == "sent"


def test_a_dripping_health_check_ends_at_its_deadline(hub: DrivenHub) -> None:
    alerting = hub.server.context.alerting
    assert alerting is not None
    with HostileHub("trickle", byte_interval=0.2) as target:  # its ~70-byte answer: 14 s
        put_health_check(hub, target.url + "/health")
        started = time.monotonic()
        alerting.health.run_once()
        elapsed = time.monotonic() - started
    assert elapsed < 2 * 1.0 + 1.0, elapsed  # two attempts of 1 s
    check = hub.get("health-check")
    assert (check["status"], check["error"]) == ("down", "timed out after 1 s")


def test_a_dripping_webhook_attempt_ends_at_its_deadline(hub: DrivenHub) -> None:
    with HostileHub("trickle", byte_interval=0.2) as target:
        channel = hub.post("channels", {"name": "drip", "type": "webhook", "url": target.url + "/hook"})
        [notification] = hub.post(f"channels/{channel['id']}/test", None, expect=202)["notification_ids"]
        started = time.monotonic()
        hub.deliver()
        elapsed = time.monotonic() - started
    assert elapsed < 2.0, elapsed
    status = hub.get(f"notifications/{notification}")
    assert (status["status"], status["last_error"]) == ("pending", "attempt 1: timed out after 1 s")


def test_a_slow_target_never_holds_up_the_other_apps_checks(tmp_path: Path) -> None:
    settings = {
        "enabled": True,
        "interval": 3600.0,
        "health_check_interval": 0.3,
        "health_check_timeout": 1.0,
    }
    healthy = Counter()
    with (
        driven_hub(tmp_path / "hub.sqlite", str(uuid.uuid4()), RealClock(), **settings) as hub,
        HostileHub("trickle", byte_interval=0.2) as slow,
        ServerThread(healthy.app()) as url,
    ):
        put_health_check(hub, slow.url + "/health")
        other = str(uuid.uuid4())
        put_health_check(hub, url + "/health", other)
        wait_until(lambda: slow.attempts() >= 1, 5, "the slow app is being checked")
        before = healthy.count
        # while the slow app's checks drip (each would take 14 s), the other app is checked on time
        wait_until(lambda: healthy.count >= before + 5, 4, "five more checks of the healthy app")
        response = hub.http.get(f"/api/{other}/prod/health-check")
        assert response.json()["status"] == "up"


def test_a_hub_stops_in_bounded_time_mid_delivery_and_mid_health_check(tmp_path: Path) -> None:
    """Stop a hub while a webhook attempt and a health check wait on targets that never answer
    (and whose own timeouts are 30 s): the hub's thread ends within the alerting stop's bound."""
    config = AlertingConfig(
        interval=3600.0, health_check_interval=0.2, health_check_timeout=30.0, delivery_timeout=30.0
    )
    client_id = str(uuid.uuid4())
    with HostileHub("silent") as hook_target, HostileHub("silent") as check_target:
        server = HubServer(tmp_path / "hub.sqlite", alerting=config).start()
        try:
            http = httpx.Client(base_url=server.url, timeout=10)
            api = f"/api/{client_id}/prod"
            channel = http.post(
                f"{api}/channels", json={"name": "h", "type": "webhook", "url": hook_target.url}
            )
            assert channel.status_code == 201, channel.text
            assert http.post(f"{api}/channels/{channel.json()['id']}/test").status_code == 202
            assert http.put(f"{api}/health-check", json={"url": check_target.url}).status_code == 200
            http.close()
            wait_until(lambda: hook_target.attempts() >= 1, 10, "the webhook attempt is in flight")
            wait_until(lambda: check_target.attempts() >= 1, 10, "the health check is in flight")
            thread = server._thread
            assert thread is not None
            started = time.monotonic()
        finally:
            server.stop(timeout=15)
        elapsed = time.monotonic() - started
        assert not thread.is_alive() and elapsed < 9.0, elapsed


def test_a_dripping_smtp_server_is_cut_at_the_email_channels_deadline(hub: DrivenHub) -> None:
    greeting = b"".join(b"220-hello %d\r\n" % i for i in range(10)) + b"220 ready\r\n"  # ~150 bytes
    with DripServer(greeting, 0.2) as smtp:  # 30 s to greet, a byte well within each 1 s read
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
                "timeout_seconds": 1,
            },
        )
        [notification] = hub.post(f"channels/{channel['id']}/test", None, expect=202)["notification_ids"]
        started = time.monotonic()
        hub.deliver()
        elapsed = time.monotonic() - started
        assert elapsed < 2.0, elapsed
        wait_until(lambda: len(smtp.stays) == 1, 5, "the hub hung up")
    assert smtp.stays[0] < 2.5, smtp.stays
    status = hub.get(f"notifications/{notification}")
    assert (status["status"], status["last_error"]) == ("pending", "attempt 1: timed out after 1 s")
