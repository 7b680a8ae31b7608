"""HubClient: status handling, retry queue, bounds, shutdown, proxies and TLS.

httpx.MockTransport hubs for the status matrix; a fake clock for message age; real loopback
servers for proxies and TLS. Backoffs are shortened through the constructor, never slept out.
"""

from __future__ import annotations

import email.utils
import itertools
import json
import logging
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from apitally_otel._config import resolve_settings
from apitally_otel._hub.client import SEND_SPACING, HubClient
from apitally_otel._hub.status import Outcome, classify, parse_retry_after
from tests.support.servers import ServerThread

SETTINGS = resolve_settings(str(uuid.uuid4()), "test", "http://hub.invalid")
FAST = {"min_backoff": 0.01, "max_backoff": 0.02}
Step = int | Callable[[httpx.Request], httpx.Response]


class Hub:
    """A scripted hub: answers with the next step of ``script`` (the last one repeats)."""

    def __init__(self, *script: Step) -> None:
        self.script = list(script)
        self.requests: list[tuple[str, dict[str, Any], float]] = []
        self.lock = threading.Lock()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        with self.lock:
            step = self.script.pop(0) if len(self.script) > 1 else self.script[0]
            self.requests.append(
                (request.url.path.rsplit("/", 1)[-1], json.loads(request.content), time.monotonic())
            )
        if callable(step):
            return step(request)
        return httpx.Response(step, text="nope" if step >= 300 else "")

    def kinds(self) -> list[str]:
        with self.lock:
            return [k for k, _, _ in self.requests]

    def uuids(self) -> list[str]:
        with self.lock:
            return [str(d["message_uuid"]) for _, d, _ in self.requests]


def refuse(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("connection refused", request=request)


def time_out(request: httpx.Request) -> httpx.Response:
    raise httpx.ReadTimeout("timed out", request=request)


@pytest.fixture
def clients() -> Iterator[Callable[..., HubClient]]:
    """Builds clients on a mock transport; each is shut down and its thread joined afterwards."""
    made: list[HubClient] = []

    def make(hub: Hub, **kwargs: Any) -> HubClient:
        client = HubClient(SETTINGS, transport=httpx.MockTransport(hub), **kwargs)
        made.append(client)
        return client

    yield make
    for client in made:
        client.shutdown(0)
        if client._thread is not None:
            client._thread.join(5)


def sync(n: int | str, timestamp: float | None = None, **extra: object) -> dict[str, object]:
    return {"message_uuid": f"m{n}", "timestamp": time.time() if timestamp is None else timestamp, **extra}


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.005)


def messages(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if text in r.getMessage()]


# -- classification ---------------------------------------------------------------------------
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
        (599, Outcome.RETRY),
        (301, Outcome.DROPPED),
        (400, Outcome.DROPPED),
        (401, Outcome.DROPPED),
        (413, Outcome.DROPPED),
    ],
)
def test_classify(status: int, outcome: Outcome) -> None:
    assert classify(status) is outcome


def test_parse_retry_after() -> None:
    now = 1_700_000_000.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("12") == 12.0
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after("-3") == 0.0
    assert parse_retry_after("999999") == 3600.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after("nan") is None
    date = email.utils.formatdate(now + 30, usegmt=True)
    assert parse_retry_after(date, now=lambda: now) == pytest.approx(30, abs=1)


# -- delivery ---------------------------------------------------------------------------------
def test_startup_first_then_syncs_in_order(clients: Callable[..., HubClient]) -> None:
    hub = Hub(202)
    client = clients(hub)
    for i in range(3):
        client.enqueue_sync(sync(i))
    client.set_startup({"message_uuid": "s"})
    assert client.flush(5)
    kinds = hub.kinds()
    # The thread may have taken m0 before the startup arrived; after that, startup goes first.
    assert kinds.count("startup") == 1 and sorted(hub.uuids()) == ["m0", "m1", "m2", "s"]
    assert [u for u in hub.uuids() if u != "s"] == ["m0", "m1", "m2"]
    assert client.sent_count == 4 and client.pending == 0


def test_transient_failures_keep_messages_with_their_uuid(
    clients: Callable[..., HubClient], caplog: pytest.LogCaptureFixture
) -> None:
    hub = Hub(503, refuse, 500, time_out, 408, 429, 202)
    client = clients(hub, **FAST)
    with caplog.at_level(logging.DEBUG, logger="apitally_otel"):
        client.enqueue_sync(sync(1))
        wait_until(lambda: client.sent_count == 1)
    assert hub.uuids() == ["m1"] * 7
    assert client.pending == 0 and client.dropped_count == 0
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "HTTP 503" in warnings[0].getMessage()  # one per outage
    assert messages(caplog, "answers again after 6 failed attempt(s)")


def test_backoff_grows_and_is_capped(clients: Callable[..., HubClient]) -> None:
    hub = Hub(refuse)
    client = clients(hub, min_backoff=0.02, max_backoff=0.08)
    client.enqueue_sync(sync(1))
    wait_until(lambda: len(hub.requests) >= 8)
    times = [t for _, _, t in hub.requests]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    # 0.02, 0.04, 0.08, 0.08, ... times 0.5-1 jitter (uncapped, the 7th would be 0.64-1.28 s)
    assert gaps[0] >= 0.01 and gaps[2] >= 0.04
    assert max(gaps) < 0.5


def test_retry_after_is_honoured_even_by_flush(clients: Callable[..., HubClient]) -> None:
    hub = Hub(lambda r: httpx.Response(429, headers={"Retry-After": "0.6"}), 202)
    client = clients(hub, **FAST)
    client.enqueue_sync(sync(1))
    wait_until(lambda: len(hub.requests) == 1)
    assert not client.flush(0.2)  # the hub said not before 0.6 s: a flush does not knock earlier
    assert len(hub.requests) == 1
    wait_until(lambda: client.sent_count == 1)
    first, second = (t for _, _, t in hub.requests)
    assert second - first >= 0.55


def test_backlog_is_sent_with_spacing(clients: Callable[..., HubClient]) -> None:
    assert SEND_SPACING == (0.1, 0.5)
    hub = Hub(503, 202)
    client = clients(hub, send_spacing=(0.05, 0.06), **FAST)
    for i in range(3):
        client.enqueue_sync(sync(i))
    wait_until(lambda: client.sent_count == 3)
    assert hub.uuids() == ["m0", "m0", "m1", "m2"]
    times = [t for _, _, t in hub.requests[1:]]
    assert all(b - a >= 0.045 for a, b in itertools.pairwise(times))


def test_404_stops_for_the_life_of_the_client(
    clients: Callable[..., HubClient], caplog: pytest.LogCaptureFixture
) -> None:
    hub = Hub(404)
    client = clients(hub)
    with caplog.at_level(logging.ERROR):
        client.set_startup({"message_uuid": "s"})
        client.enqueue_sync(sync(1))
        client.flush(5)
        assert client.stopped
        assert not client.enqueue_sync(sync(2))
        assert client.flush(1) is False or client.pending == 0
    assert hub.kinds() == ["startup"]
    assert len(messages(caplog, "does not know client id")) == 1
    assert client._thread is not None
    client._thread.join(2)
    assert not client._thread.is_alive()


def test_422_is_dropped_and_each_answer_warned_once(
    clients: Callable[..., HubClient], caplog: pytest.LogCaptureFixture
) -> None:
    hub = Hub(422, 422, lambda r: httpx.Response(422, text="other"), 400, 202)
    client = clients(hub)
    with caplog.at_level(logging.WARNING):
        for i in range(5):
            client.enqueue_sync(sync(i))
        assert client.flush(5)
    assert hub.uuids() == ["m0", "m1", "m2", "m3", "m4"]  # none retried
    assert messages(caplog, "rejected a sync message (422), dropped it: nope") == [
        "apitally-otel: the hub rejected a sync message (422), dropped it: nope"
    ]
    assert len(messages(caplog, "(422), dropped it: other")) == 1
    assert len(messages(caplog, "(400), dropped it: nope")) == 1
    assert client.dropped == {"rejected": 3, "refused": 1}


def test_messages_older_than_an_hour_are_dropped_with_one_warning(
    clients: Callable[..., HubClient], caplog: pytest.LogCaptureFixture
) -> None:
    now = [10_000.0]
    up = threading.Event()

    def hub_step(request: httpx.Request) -> httpx.Response:
        return httpx.Response(202) if up.is_set() else refuse(request)

    hub = Hub(hub_step)
    client = clients(hub, clock=lambda: now[0], min_backoff=60, max_backoff=60)
    for i, age in enumerate((3000, 2900, 2800, 100)):
        client.enqueue_sync(sync(i, timestamp=now[0] - age))
    # The hub is down: all four wait (once the failed attempt is handled, not just started, so
    # that the flush below does not see it as its own first failure).
    wait_until(lambda: len(hub.requests) == 1 and bool(messages(caplog, "hub unavailable")))
    now[0] += 900  # three of them are now more than an hour old
    up.set()
    with caplog.at_level(logging.WARNING):
        assert client.flush(5)
    assert hub.uuids() == ["m0", "m3"]
    assert messages(caplog, "older than") == [
        "apitally-otel: dropped 3 sync message(s) older than 3600 s that the hub did not accept"
    ]
    assert client.dropped == {"expired": 3}


def test_expired_on_arrival_is_not_queued(clients: Callable[..., HubClient]) -> None:
    now = [10_000.0]
    client = clients(Hub(refuse), clock=lambda: now[0], min_backoff=60, max_backoff=60)
    client.enqueue_sync(sync(1, timestamp=now[0] - 3601))
    assert client.pending == 0 and client.dropped == {"expired": 1}


def test_queue_is_bounded_in_count_and_bytes_with_one_warning_per_outage(
    clients: Callable[..., HubClient], caplog: pytest.LogCaptureFixture
) -> None:
    up = threading.Event()

    def hub_step(request: httpx.Request) -> httpx.Response:
        return httpx.Response(202) if up.is_set() else refuse(request)

    hub = Hub(hub_step)
    client = clients(hub, max_queued=5, max_queued_bytes=10_000, min_backoff=60, max_backoff=60)
    with caplog.at_level(logging.WARNING):
        client.enqueue_sync(sync(0))
        wait_until(lambda: len(hub.requests) == 1)  # the hub is down
        for i in range(1, 20):
            client.enqueue_sync(sync(i))
        assert client.pending == 5
        big = sync("big", pad="x" * 9_000)
        client.enqueue_sync(big)
        assert client._queued_bytes <= 10_000 or client.pending == 1
        assert client._syncs[-1].body.startswith(b'{"message_uuid":"mbig"')
        overflow = messages(caplog, "send queue full")
        assert overflow == [
            "apitally-otel: send queue full, dropped the 1 oldest sync message(s)"
            " (bounds: 5 messages, 10000 bytes)"
        ]
        up.set()
        assert client.flush(5)
    dropped = client.dropped["overflow"]
    assert dropped + client.sent_count == 21, hub.uuids()
    assert messages(caplog, f"in all, {dropped - 1} more sync message(s) dropped (overflow)"), caplog.text


def test_a_hanging_hub_does_not_block_producers_or_grow_the_queue(
    clients: Callable[..., HubClient],
) -> None:
    release = threading.Event()

    def hang(request: httpx.Request) -> httpx.Response:
        release.wait(30)
        return httpx.Response(202)

    hub = Hub(hang, 202)
    client = clients(hub, max_queued=10)
    client.enqueue_sync(sync(0))
    wait_until(lambda: client._in_flight is not None)
    started = time.monotonic()
    for i in range(1, 2001):
        assert client.enqueue_sync(sync(i))
    assert time.monotonic() - started < 2  # enqueueing never waits on the hub
    assert client.pending == 10 and client._syncs[0].body.startswith(b'{"message_uuid":"m0"')

    started = time.monotonic()
    assert not client.flush(0.3)  # times out: the request in flight is stalled
    assert not client.flush(5)  # not waited for again
    client.shutdown(5)
    assert time.monotonic() - started < 1.5
    release.set()


def test_flush_makes_one_attempt_when_the_hub_is_down(
    clients: Callable[..., HubClient], caplog: pytest.LogCaptureFixture
) -> None:
    hub = Hub(refuse)
    client = clients(hub, min_backoff=60, max_backoff=60)
    client.enqueue_sync(sync(1))
    # The first attempt handled, not just started: else the flush would take it for its own.
    wait_until(lambda: len(hub.requests) == 1 and bool(messages(caplog, "hub unavailable")))
    started = time.monotonic()
    assert not client.flush(5)
    assert time.monotonic() - started < 1 and len(hub.requests) == 2


def test_shutdown_reports_what_was_not_delivered(
    clients: Callable[..., HubClient], caplog: pytest.LogCaptureFixture
) -> None:
    client = clients(Hub(refuse), min_backoff=60, max_backoff=60)
    client.enqueue_sync(sync(1))
    client.enqueue_sync(sync(2))
    with caplog.at_level(logging.WARNING):
        assert not client.shutdown(1)
        assert client.shutdown(1) is False  # idempotent
    assert messages(caplog, "2 message(s) not delivered to the hub before shutdown")
    assert not client.enqueue_sync(sync(3))


def test_a_broken_transport_drops_the_message_and_keeps_the_thread(
    clients: Callable[..., HubClient], caplog: pytest.LogCaptureFixture
) -> None:
    def broken(request: httpx.Request) -> httpx.Response:
        raise RuntimeError("bug")

    hub = Hub(broken, 202)
    client = clients(hub)
    with caplog.at_level(logging.ERROR):
        client.enqueue_sync(sync(1))
        client.enqueue_sync(sync(2))
        assert client.flush(5)
    assert hub.uuids() == ["m1", "m2"] and client.sent_count == 1
    assert messages(caplog, "failed to send a sync message")


# -- proxies and TLS ---------------------------------------------------------------------------
class ProxyRecorder:
    """An ASGI app standing in for an HTTP proxy: records (Host, path) and answers 202."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        while (await receive()).get("more_body"):
            pass
        headers = dict(scope["headers"])
        self.seen.append((headers[b"host"].decode(), scope["path"]))
        await send({"type": "http.response.start", "status": 202, "headers": []})
        await send({"type": "http.response.body", "body": b""})


@pytest.mark.parametrize("how", ["argument", "environment"])
def test_proxy(how: str, monkeypatch: pytest.MonkeyPatch) -> None:
    recorder = ProxyRecorder()
    with ServerThread(recorder) as proxy_url:
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        if how == "environment":
            monkeypatch.setenv("HTTP_PROXY", proxy_url)
        client = HubClient(SETTINGS, proxy=proxy_url if how == "argument" else None)
        client.enqueue_sync(sync(1))
        assert client.flush(5)
        client.shutdown(1)
    (host, path), *_ = recorder.seen
    assert host == "hub.invalid" and path.endswith(f"/v2/{SETTINGS.client_id}/test/sync")


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed")
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            *(openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"),
            *("-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def test_tls_is_verified_and_a_custom_ca_bundle_is_honoured(
    certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    cert, key = certificate
    recorder = ProxyRecorder()
    with ServerThread(recorder, ssl_certfile=str(cert), ssl_keyfile=str(key)) as url:
        settings = resolve_settings(SETTINGS.client_id, "test", url.replace("http://", "https://"))
        untrusted = HubClient(settings, min_backoff=60, max_backoff=60)
        with caplog.at_level(logging.WARNING):
            untrusted.enqueue_sync(sync(1))
            assert not untrusted.flush(5)  # a self-signed certificate is refused...
            untrusted.shutdown(0)
        assert messages(caplog, "CERTIFICATE_VERIFY_FAILED") and recorder.seen == []

        monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # ...unless it is in the CA bundle given
        trusted = HubClient(settings)
        trusted.enqueue_sync(sync(2))
        assert trusted.flush(5)
        trusted.shutdown(1)
    assert recorder.seen == [("127.0.0.1:" + url.rsplit(":", 1)[1], f"/v2/{settings.client_id}/test/sync")]
    for client in (untrusted, trusted):
        if client._thread is not None:
            client._thread.join(5)
