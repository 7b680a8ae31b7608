"""HTTP to the hub (``_hub.http``, ``_hub.net``): one client for every sender, bounded answers, one deadline
per request through every stage (name resolution, connect, TLS, send, answer) and every route
(direct, a proxy given, a proxy from the environment). Real servers on loopback."""

from __future__ import annotations

import contextlib
import gzip
import socket
import threading
import time
import uuid
from typing import Any

import httpcore
import httpx
import pytest

from apitally_otel._config import resolve_settings
from apitally_otel._hub.client import HubClient
from apitally_otel._hub.http import MAX_ANSWER_BYTES, USER_AGENT, HubUnreachable, for_log, new_client, post
from apitally_otel._hub.net import MAX_LOOKUPS, resolve
from apitally_otel._request_log.logger import RequestLogger
from apitally_otel.request_logging import RequestLoggingConfig
from apitally_otel.version import __version__
from tests.support.hostile_hubs import HostileHub, StalledDns
from tests.support.log_items import item

SETTINGS = resolve_settings(str(uuid.uuid4()), "test", "http://hub.invalid")


def test_for_log_escapes_control_characters_and_cuts_short() -> None:
    assert for_log("plain text") == "plain text"
    assert for_log("a\nb\r\x1b[31mred\x00\u202e\u2028\\") == "a\\nb\\r\\x1b[31mred\\x00\\u202e\\u2028\\\\"
    long = for_log("x" * 10_000)
    assert long == "x" * 200 + "…"
    assert len(for_log("\x00" * 1000)) < 210  # cut after escaping: ~200 characters in the log


def test_every_sender_says_who_it_is_and_asks_for_an_uncompressed_answer() -> None:
    seen: list[httpx.Headers] = []

    def hub(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers)
        return httpx.Response(202)

    client = HubClient(SETTINGS, transport=httpx.MockTransport(hub))
    client.enqueue_sync({"message_uuid": "m1", "timestamp": time.time()})
    assert client.flush(5)
    client.shutdown(1)
    config = RequestLoggingConfig(enabled=True)
    uploader = RequestLogger(config, SETTINGS, upload_interval=0.1, transport=httpx.MockTransport(hub))
    uploader.submit(item(1))
    assert uploader.flush(5)
    uploader.shutdown(1)
    assert len(seen) == 2  # a sync and a log file
    for headers in seen:
        assert headers["user-agent"] == USER_AGENT == f"apitally-otel/{__version__}"
        assert headers["accept-encoding"] == "identity"


def test_an_endless_answer_is_read_up_to_64_kb_and_the_connection_closed() -> None:
    with HostileHub("endless-200") as hub, new_client(hub.url, timeout=5) as client:
        answer = post(client, "/sync", b"{}", timeout=5)
        assert answer.status_code == 200 and len(answer.body) == MAX_ANSWER_BYTES
        again = post(client, "/sync", b"{}", timeout=5)  # a new connection: the last one was closed
        assert again.status_code == 200
        wait_for(lambda: hub.abandoned() == 2)
    assert len(hub.snapshot()) == 2


def test_a_gzip_bomb_is_never_inflated() -> None:
    bomb = gzip.compress(b"\0" * 50_000_000)  # 50 MB from ~50 kB

    def hub(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503, content=bomb, headers={"Content-Encoding": "gzip"})

    with new_client("http://hub.invalid", timeout=5, transport=httpx.MockTransport(hub)) as client:
        answer = post(client, "/sync", b"{}", timeout=5)
    assert answer.status_code == 503 and len(answer.body) <= MAX_ANSWER_BYTES


@pytest.mark.parametrize("route", ["direct", "proxy argument", "proxy from the environment"])
def test_a_trickle_is_cut_at_the_deadline_on_every_route(route: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    with HostileHub("trickle", byte_interval=0.2) as trickle:  # the whole answer would take 16 s
        proxy = None
        base = trickle.url if route == "direct" else "http://hub.invalid"  # via a proxy: not resolved here
        if route == "proxy argument":
            proxy = trickle.url
        elif route == "proxy from the environment":
            monkeypatch.setenv("HTTP_PROXY", trickle.url)
        with new_client(base, timeout=1, proxy=proxy) as client, pytest.raises(HubUnreachable) as failure:
            post(client, "/sync", b"{}", timeout=1)
        wait_for(lambda: trickle.abandoned() == 1)
    assert "no answer within the 1 s deadline, reading the answer" in str(failure.value)


def test_a_tls_handshake_that_never_completes_is_cut_at_the_deadline() -> None:
    with (
        HostileHub("silent") as silent,  # takes the ClientHello, never answers it
        new_client(silent.url.replace("http:", "https:"), timeout=1) as client,
        pytest.raises(HubUnreachable) as failure,
    ):
        post(client, "/sync", b"{}", timeout=1)
    assert "no answer within the 1 s deadline, in the TLS handshake" in str(failure.value)


def test_a_hub_that_reads_slowly_cannot_stretch_a_request() -> None:
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    server.bind(("127.0.0.1", 0))
    server.listen()
    stop = threading.Event()

    def read_slowly() -> None:
        conn, _ = server.accept()
        with conn, contextlib.suppress(OSError):
            while not stop.is_set() and conn.recv(1024):
                time.sleep(0.05)  # 20 kB/s: 8 MB would take 400 s

    reader = threading.Thread(target=read_slowly, daemon=True)
    reader.start()
    try:
        with (
            new_client(f"http://127.0.0.1:{server.getsockname()[1]}", timeout=1) as client,
            pytest.raises(HubUnreachable, match="no answer within the 1 s deadline"),
        ):
            post(client, "/log", b"x" * 8_000_000, timeout=1)
    finally:
        stop.set()
        server.close()
        reader.join(5)


# -- name resolution --------------------------------------------------------------------------------
def test_hanging_lookups_are_bounded_in_time_and_threads(stalled_dns: StalledDns) -> None:
    names = [f"h{n}.apitally-otel.test" for n in range(MAX_LOOKUPS)]
    for name in names:
        with pytest.raises(httpcore.ConnectTimeout, match="took longer than the deadline"):
            resolve(name, 443, 0.05)
    with pytest.raises(httpcore.ConnectError, match=f"{MAX_LOOKUPS} name lookups still pending"):
        resolve("one-more.apitally-otel.test", 443, 5)  # refused at once, no new thread
    with pytest.raises(httpcore.ConnectTimeout, match="took longer than the deadline"):
        resolve(names[0], 443, 0.05)  # joins the lookup already running
    assert sum(t.name == "apitally-otel-resolve" for t in threading.enumerate()) == MAX_LOOKUPS
    assert resolve("127.0.0.1", 443, 0.05) == ["127.0.0.1"]  # an address needs no lookup
    assert resolve("::1", 443, 0.05) == ["::1"]


def wait_for(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)
