"""Reliable delivery, end to end: the app under uvicorn in a subprocess, the local hub (or a faulty
stand-in) on loopback, sync every second. Every request the app served must be counted exactly once
at the hub (it deduplicates resends by ``message_uuid``), unless the hub itself refused it.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
import uuid
from collections import Counter
from typing import Any

import httpx
import pytest

from apitally_hub import HubServer
from apitally_otel._config import resolve_settings
from apitally_otel.metric_exporter import ApitallyMetricExporter
from apitally_otel.metric_reader import ApitallyMetricReader
from tests.support.delivery import (
    Key,
    hub_totals,
    instances,
    ledger,
    serve_app,
    traffic,
    wait_until,
)
from tests.support.servers import RecordingHub, bound_socket, read_http_request


class HangingHub:
    """Accepts connections and never answers (nor reads)."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.connections: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = self.sock.accept()
                self.connections.append(conn)

    def __enter__(self) -> HangingHub:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self.thread.join(5)
        for conn in self.connections:
            conn.close()


class FlakyProxy:
    """A one-request-per-connection HTTP proxy to ``upstream`` that breaks some /sync requests.

    The first ``cut`` sync requests: the connection is closed once the request was read (the hub
    never sees it). The next ``swallow``: forwarded, the hub stores it, and the connection is
    closed before its answer reaches the client (the resend must be deduplicated).
    """

    def __init__(self, upstream: str, *, cut: int, swallow: int) -> None:
        host, port = upstream.removeprefix("http://").split(":")
        self.upstream = (host, int(port))
        self.budget = {"cut": cut, "swallow": swallow}
        self.applied: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.handlers: list[threading.Thread] = []

    def __enter__(self) -> FlakyProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self.thread.join(5)
        for handler in self.handlers:
            handler.join(5)

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = self.sock.accept()
                handler = threading.Thread(target=self._handle, args=(conn,), daemon=True)
                self.handlers.append(handler)
                handler.start()

    def _mode(self, head: bytes) -> str:
        if b"/sync " not in head.split(b"\r\n", 1)[0]:
            return "pass"
        with self.lock:
            for mode in ("cut", "swallow"):
                if self.budget[mode] > 0:
                    self.budget[mode] -= 1
                    self.applied[mode] += 1
                    return mode
        return "pass"

    def _handle(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            conn.settimeout(10)
            request = _read_request(conn)
            if request is None:
                return
            mode = self._mode(request)
            if mode == "cut":
                return
            with socket.create_connection(self.upstream, timeout=10) as upstream:
                upstream.sendall(request)
                response = b""
                while chunk := upstream.recv(65536):
                    response += chunk
            if mode == "pass":
                conn.sendall(response)


def _read_request(conn: socket.socket) -> bytes | None:
    request = read_http_request(conn)
    if request is None:
        return None
    lines, body = request
    kept = [h for h in lines[1:] if h.partition(b":")[0].strip().lower() != b"connection"]
    return b"\r\n".join([lines[0], *kept, b"Connection: close"]) + b"\r\n\r\n" + body


# -- the fault runs ------------------------------------------------------------------------------
def test_hub_down_at_first_then_up() -> None:
    client_id = str(uuid.uuid4())
    reserved = bound_socket()  # bound, not listening: every connection is refused
    port = reserved.getsockname()[1]
    served: Counter[Key] = Counter()
    with serve_app(client_id, f"http://127.0.0.1:{port}") as app:
        traffic(app.url, 20, served)
        time.sleep(2.5)  # two or three syncs (and the startup) fail and are kept
        traffic(app.url, 10, served)
        reserved.close()
        with HubServer(port=port) as hub:
            traffic(app.url, 10, served)
            output = app.stop()  # the backlog and the last interval go out in the final flush
            counted = hub_totals(hub, client_id)
            (instance,) = instances(hub, client_id)
    ledger("hub down then up", served, counted)
    assert counted == served, output
    assert instance["startup_at"] is not None
    assert "hub unavailable (ConnectError" in output and "not delivered" not in output


def test_hub_errors_and_rate_limits_are_retried() -> None:
    client_id = str(uuid.uuid4())
    served: Counter[Key] = Counter()
    with HubServer() as hub:
        hub.faults.add("startup", 503, times=2)
        hub.faults.add("sync", 500, times=2)
        hub.faults.add("sync", 429, times=1, headers={"Retry-After": "1"})
        hub.faults.add("sync", 503, times=1)
        hub.faults.add("sync", 408, times=1)
        with serve_app(client_id, hub.url) as app:
            for _ in range(4):
                traffic(app.url, 10, served)
                time.sleep(0.5)
            wait_until(lambda: hub_totals(hub, client_id) == served, what="every request counted")
            output = app.stop()
        counted = hub_totals(hub, client_id)
        assert len(instances(hub, client_id)) == 1
    ledger("500/503/429/408", served, counted)
    assert counted == served, output


def test_a_hanging_hub_never_slows_the_app() -> None:
    client_id = str(uuid.uuid4())
    served: Counter[Key] = Counter()
    with HangingHub() as hub, serve_app(client_id, hub.url, APITALLY_SHUTDOWN_TIMEOUT="1") as app:
        deadline = time.monotonic() + 2.5  # covers two sync intervals: both stuck behind the hub
        while time.monotonic() < deadline:
            traffic(app.url, 20, served)  # every request completes (asserted inside)
        stopping = time.monotonic()
        output = app.stop()
        stop_time = time.monotonic() - stopping
        assert hub.connections  # the client did try
    ledger("hanging hub", served, Counter(), undelivered="all (the hub never answered)")
    assert app.proc.returncode in (0, -15), output  # uvicorn re-raises SIGTERM
    # Bounded by APITALLY_SHUTDOWN_TIMEOUT (1 s) plus the server's own graceful shutdown.
    assert stop_time < 4, output
    assert output.count("not delivered to the hub") == 1, output


def test_connections_closed_mid_request_are_retried_without_double_counting() -> None:
    client_id = str(uuid.uuid4())
    served: Counter[Key] = Counter()
    with HubServer() as hub, FlakyProxy(hub.url, cut=2, swallow=2) as proxy:
        with serve_app(client_id, proxy.url) as app:
            for _ in range(4):
                traffic(app.url, 10, served)
                time.sleep(0.5)
            wait_until(lambda: proxy.applied == {"cut": 2, "swallow": 2}, what="all faults applied")
            output = app.stop()
        counted = hub_totals(hub, client_id)
    ledger("connections closed", served, counted, **proxy.applied)
    assert counted == served, output


def test_404_stops_the_client_and_not_the_app(recording_hub: tuple[RecordingHub, str]) -> None:
    hub, url = recording_hub
    hub.status_code = 404
    served: Counter[Key] = Counter()
    with serve_app(str(uuid.uuid4()), url) as app:
        deadline = time.monotonic() + 2.5  # two sync intervals after the 404
        while time.monotonic() < deadline:
            traffic(app.url, 10, served)
            time.sleep(0.2)
        output = app.stop()
    ledger("404", served, Counter(), dropped="all (unknown client id)")
    assert [kind for kind, _ in hub.messages] == ["startup"]  # nothing after the 404
    assert output.count("does not know client id") == 1, output
    assert app.proc.returncode in (0, -15) and "Traceback" not in output


def test_422_is_dropped_and_warned_once() -> None:
    client_id = str(uuid.uuid4())
    served_before: Counter[Key] = Counter()
    served_after: Counter[Key] = Counter()
    answer = {"detail": [{"loc": ["body", "requests"], "msg": "not today", "type": "value_error"}]}
    with HubServer() as hub:
        hub.faults.add("sync", 422, times=3, body=answer)
        with serve_app(client_id, hub.url) as app:
            traffic(app.url, 10, served_before)
            # The three rejected syncs are behind us once the hub has accepted one.
            wait_until(lambda: any(i["syncs"] for i in instances(hub, client_id)), what="an accepted sync")
            traffic(app.url, 5, served_after)
            output = app.stop()
        counted = hub_totals(hub, client_id)
    ledger("422", served_before + served_after, counted, rejected=sum(served_before.values()))
    assert counted == served_after, output
    assert output.count("rejected a sync message (422)") == 1, output
    assert "not today" in output


def test_the_flaky_proxy_reads_whole_requests() -> None:
    left, right = socket.socketpair()
    with left, right:
        right.sendall(b"POST /v2/x/y/sync HTTP/1.1\r\nHost: h\r\nConnection: keep-alive\r\n")
        right.sendall(b"Content-Length: 4\r\n\r\nab")
        right.sendall(b"cd")
        request = _read_request(left)
    assert request is not None and request.endswith(b"Connection: close\r\n\r\nabcd")
    assert b"keep-alive" not in request


# -- the exporter's deadlines and connection options ---------------------------------------------
def exporter(**kwargs: Any) -> ApitallyMetricExporter:
    settings = resolve_settings(str(uuid.uuid4()), "test", "http://hub.invalid")
    return ApitallyMetricExporter(settings=settings, **kwargs)


def test_shutdown_timeout_resolution(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    assert exporter().shutdown_timeout == 5.0
    assert exporter(shutdown_timeout=0.5).shutdown_timeout == 0.5
    monkeypatch.setenv("OTEL_APITALLY_SHUTDOWN_TIMEOUT", "3")  # the opentelemetry-instrument alias
    assert exporter().shutdown_timeout == 3.0
    monkeypatch.setenv("APITALLY_SHUTDOWN_TIMEOUT", "2.5")
    assert exporter().shutdown_timeout == 2.5
    with caplog.at_level(logging.WARNING):
        monkeypatch.setenv("APITALLY_SHUTDOWN_TIMEOUT", "soon")
        assert exporter().shutdown_timeout == 5.0
    assert "invalid shutdown timeout 'soon'" in caplog.text


def test_proxy_option(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    given = exporter(proxy="http://proxy.internal:3128")
    assert given.client is not None and given.client._proxy == "http://proxy.internal:3128"
    monkeypatch.setenv("APITALLY_PROXY", "http://env-proxy:8080")
    from_env = exporter()
    assert from_env.client is not None and from_env.client._proxy == "http://env-proxy:8080"
    with caplog.at_level(logging.ERROR):
        broken = exporter(proxy="ftp://nope")
    assert broken.client is None and not broken.enabled
    assert "apitally-otel disabled: invalid proxy 'ftp://nope'" in caplog.text


def test_flush_and_shutdown_together_stay_within_the_deadline(caplog: pytest.LogCaptureFixture) -> None:
    release = threading.Event()

    def hang(request: httpx.Request) -> httpx.Response:
        release.wait(30)
        return httpx.Response(202)

    hub_exporter = exporter(shutdown_timeout=0.3, _transport=httpx.MockTransport(hang))
    reader = ApitallyMetricReader(hub_exporter, sync_interval=3600)
    started = time.monotonic()
    with caplog.at_level(logging.WARNING):
        reader.force_flush(timeout_millis=10_000)  # lifespan shutdown: capped at 0.3 s
        reader.shutdown(timeout_millis=30_000)  # interpreter exit: the hanging request is not awaited
    assert time.monotonic() - started < 1.5
    assert "not delivered to the hub yet (kept for retry)" in caplog.text
    assert "not delivered to the hub before shutdown" in caplog.text
    release.set()
    client = hub_exporter.client
    assert client is not None and client._thread is not None
    client._thread.join(5)
