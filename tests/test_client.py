"""HubClient status handling, retry queue and bounds (httpx.MockTransport; a fake clock for age)."""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable

import httpx
import pytest

from apitally_otel._client import HubClient, Outcome, classify
from apitally_otel._config import resolve_settings

SETTINGS = resolve_settings(str(uuid.uuid4()), "test", "http://hub.invalid")


class Hub:
    """A scripted hub: answers with the next status of ``script`` (the last one repeats)."""

    def __init__(self, *script: int | Callable[[httpx.Request], httpx.Response]) -> None:
        self.script = list(script)
        self.requests: list[tuple[str, dict[str, object]]] = []
        self.lock = threading.Lock()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        with self.lock:
            step = self.script.pop(0) if len(self.script) > 1 else self.script[0]
            if callable(step):
                return step(request)
            self.requests.append((request.url.path.rsplit("/", 1)[-1], json.loads(request.content)))
            return httpx.Response(step, text="nope" if step >= 300 else "")

    def kinds(self) -> list[str]:
        with self.lock:
            return [k for k, _ in self.requests]


def make_client(hub: Hub, clock: Callable[[], float] = time.time, **kwargs: object) -> HubClient:
    return HubClient(SETTINGS, transport=httpx.MockTransport(hub), clock=clock, **kwargs)  # type: ignore[arg-type]


def sync(n: int, timestamp: float | None = None) -> dict[str, object]:
    return {"message_uuid": f"m{n}", "timestamp": time.time() if timestamp is None else timestamp}


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (200, Outcome.SENT),
        (202, Outcome.SENT),
        (404, Outcome.INVALID_CLIENT),
        (422, Outcome.REJECTED),
        (408, Outcome.RETRY),
        (429, Outcome.RETRY),
        (500, Outcome.RETRY),
        (503, Outcome.RETRY),
        (400, Outcome.DROPPED),
        (401, Outcome.DROPPED),
        (413, Outcome.DROPPED),
    ],
)
def test_classify(status: int, outcome: Outcome) -> None:
    assert classify(status) is outcome


def test_startup_first_then_syncs_in_order() -> None:
    hub = Hub(202)
    client = make_client(hub)
    client.set_startup({"message_uuid": "s"})
    for i in range(3):
        client.enqueue_sync(sync(i))
    assert client.flush(10)
    assert hub.kinds() == ["startup", "sync", "sync", "sync"]
    assert [d["message_uuid"] for _, d in hub.requests[1:]] == ["m0", "m1", "m2"]
    client.shutdown()


def test_transient_errors_keep_messages_with_their_uuid() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    hub = Hub(503, refuse, 500, 202)
    client = make_client(hub)
    client.enqueue_sync(sync(1))
    deadline = time.monotonic() + 20
    while client.sent_count < 1 and time.monotonic() < deadline:
        client.flush(0.5)  # each flush retries at once, ignoring the backoff
    assert [d["message_uuid"] for _, d in hub.requests] == ["m1", "m1", "m1"]
    assert client.sent_count == 1 and client.pending == 0
    client.shutdown()


def test_retry_after_is_honoured() -> None:
    now = [1000.0]
    hub = Hub(lambda r: httpx.Response(429, headers={"Retry-After": "120"}), 202)
    client = make_client(hub, clock=lambda: now[0])
    client.enqueue_sync(sync(1, timestamp=now[0]))
    time.sleep(0.3)
    assert client._retry_at >= now[0] + 120
    assert client.pending == 1
    now[0] += 121
    with client._cond:
        client._cond.notify_all()
    deadline = time.monotonic() + 5
    while client.sent_count < 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert client.sent_count == 1
    client.shutdown()


def test_404_stops_for_good(caplog: pytest.LogCaptureFixture) -> None:
    hub = Hub(404)
    client = make_client(hub)
    with caplog.at_level(logging.ERROR):
        client.set_startup({"message_uuid": "s"})
        client.flush(5)
        assert not client.enqueue_sync(sync(1))
    assert hub.kinds() == ["startup"]
    assert sum("does not know client id" in r.getMessage() for r in caplog.records) == 1
    client.shutdown()


def test_422_is_dropped_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    hub = Hub(422, 202)
    client = make_client(hub)
    with caplog.at_level(logging.WARNING):
        client.enqueue_sync(sync(1))
        client.enqueue_sync(sync(2))
        assert client.flush(10)
    assert [d["message_uuid"] for _, d in hub.requests] == ["m1", "m2"]
    assert any("rejected the sync message (422): nope" in r.getMessage() for r in caplog.records)
    client.shutdown()


def test_messages_older_than_an_hour_are_dropped(caplog: pytest.LogCaptureFixture) -> None:
    now = [10_000.0]
    hub = Hub(202)
    client = make_client(hub, clock=lambda: now[0])
    client._retry_at = float("inf")  # hold delivery while the queue ages
    for i in range(3):
        client.enqueue_sync(sync(i, timestamp=now[0] - 4000 + i * 1000))  # ages 4000, 3000, 2000 s
    client.enqueue_sync(sync(9, timestamp=now[0]))
    with caplog.at_level(logging.WARNING):
        assert client.flush(10)
    assert [d["message_uuid"] for _, d in hub.requests] == ["m1", "m2", "m9"]
    assert any("dropped 1 sync message(s) older than 3600 s" in r.getMessage() for r in caplog.records)
    client.shutdown()


def test_queue_is_bounded_in_count_and_bytes(caplog: pytest.LogCaptureFixture) -> None:
    hub = Hub(202)
    client = make_client(hub, max_queued=5, max_queued_bytes=10_000)
    client._retry_at = float("inf")
    with caplog.at_level(logging.WARNING):
        for i in range(20):
            client.enqueue_sync(sync(i))
        assert len(client._syncs) == 5
        big = {"message_uuid": "big", "timestamp": time.time(), "pad": "x" * 9_000}
        client.enqueue_sync(big)
    assert client._queued_bytes <= 10_000 and client._syncs[-1].body.startswith(b'{"message_uuid":"big"')
    assert any("dropped the" in r.getMessage() for r in caplog.records)
    client._retry_at = 0
    client.shutdown()


def test_shutdown_is_bounded_when_the_hub_hangs() -> None:
    release = threading.Event()

    def hang(request: httpx.Request) -> httpx.Response:
        release.wait(30)
        return httpx.Response(202)

    client = make_client(Hub(hang))
    client.enqueue_sync(sync(1))
    started = time.monotonic()
    client.shutdown(timeout=0.5)
    assert time.monotonic() - started < 3
    release.set()
