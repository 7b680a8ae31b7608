"""A hostile hub, proxy or middlebox never hurts the app, and delivery resumes once a healthy hub
is back: the app under uvicorn in a subprocess (sync every second, request logging on), a hostile
hub on loopback (``hostile_hubs``), then the local hub on the same port.

What the app's memory does and how long each stalled request lasts are measured by
``benchmarks/client/hostile_hub.py``; here, conditions only: the client keeps abandoning what the hub
sends (never stuck), the app keeps serving, and every request is counted once — by the hostile
hub when it answered 200 (the client rightly took that as delivered), else by the healthy hub.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import Counter
from typing import Any

import pytest

from apitally_hub import HubServer
from apitally_otel._config import resolve_settings
from apitally_otel._hub.client import HubClient
from apitally_otel._hub.net import MAX_LOOKUPS
from tests.support.delivery import Key, hub_totals, ledger, serve_app, traffic, wait_until
from tests.support.hostile_hubs import MODES, HostileHub, StalledDns
from tests.support.servers import RecordingHub, ServerThread

OPTIONS = {
    "APITALLY_HUB_TIMEOUT": "2",  # so that a stalled request is abandoned quickly
    "APITALLY_SHUTDOWN_TIMEOUT": "3",
    "APITALLY_REQUEST_LOGGING_ENABLED": "true",
}


def counted_by(syncs: list[dict[str, Any]]) -> Counter[Key]:
    total: Counter[Key] = Counter()
    for payload in syncs:
        for item in payload["requests"]:
            total[(item["method"], item["path"])] += item["request_count"]
    return total


def logged(hub: HubServer, client_id: str) -> int:
    total: int = hub.query(client_id, "dev", "requests", since="1h")["total"]
    return total


@pytest.mark.parametrize("mode", list(MODES))
def test_delivery_resumes_after_a_hostile_hub(mode: str) -> None:
    client_id = str(uuid.uuid4())
    served: Counter[Key] = Counter()
    hostile = HostileHub(mode).__enter__()
    try:
        with serve_app(client_id, hostile.url, **OPTIONS) as app:
            traffic(app.url, 20, served)
            # The client gives up on answer after answer (bounded read, or the deadline): never stuck.
            # (A garbage answer of 1 MB fits in the socket buffers: it is sent in full.)
            progress = hostile.attempts if mode == "garbage" else hostile.abandoned
            wait_until(lambda: progress() >= 3, timeout=30, what=f"3 answers abandoned or read ({mode})")
            traffic(app.url, 20, served)  # the app serves all along
            hostile.stop()
            with HubServer(port=hostile.port) as hub:
                traffic(app.url, 10, served)
                early = counted_by(hostile.accepted_syncs())
                wait_until(
                    lambda: early + hub_totals(hub, client_id) == served,
                    timeout=30,
                    what="every request counted",
                )
                early_logs = hostile.accepted_log_lines()
                wait_until(
                    lambda: early_logs + logged(hub, client_id) == sum(served.values()),
                    timeout=30,
                    what="every request logged",
                )
                output = app.stop()
                counted = hub_totals(hub, client_id)
    finally:
        hostile.stop()
    ledger(f"hostile hub {mode}", served, early + counted, abandoned=hostile.abandoned())
    assert early + counted == served, output
    assert app.proc.returncode in (0, -15) and "Traceback" not in output, output
    assert "dropped" not in output and "not delivered" not in output, output
    if mode.endswith("-200"):
        # 200 means delivered: no answer of the hostile hub makes the hub "unavailable". (The gap
        # between stopping it and the real hub listening on its port may refuse a connection.)
        unavailable = [line for line in output.splitlines() if "hub unavailable" in line]
        assert early and all("Connection refused" in line for line in unavailable), output
    else:
        assert not early
        assert output.count("hub unavailable") == 1, output  # one warning for the whole outage
        assert output.count("request log upload failed") == 1, output
    if mode in ("trickle", "silent"):
        assert "no answer within the 2 s deadline, reading the answer" in output, output
    if mode == "garbage":
        (line,) = [line for line in output.splitlines() if "hub unavailable" in line]
        assert "\\x1b[31;1mRED ALERT" in line and "\x1b" not in output and "\x00" not in output
        assert "\nERROR apitally_otel forged" not in output  # the hub's newline is escaped
        assert len(line) < 400, line  # the hub's text is cut short


def test_a_hub_name_that_does_not_resolve() -> None:
    # .invalid never resolves (RFC 6761). Whether the resolver says so at once or, without a
    # network, only after its own timeouts, each attempt ends by its deadline: nothing is timed here.
    served: Counter[Key] = Counter()
    with serve_app(str(uuid.uuid4()), "http://apitally-hub.invalid", **OPTIONS) as app:
        deadline = time.monotonic() + 4  # a few sync intervals
        while time.monotonic() < deadline:
            traffic(app.url, 10, served)
        output = app.stop()
    ledger("hub name does not resolve", served, Counter(), undelivered="all (kept until shutdown)")
    assert app.proc.returncode in (0, -15) and "Traceback" not in output, output
    assert output.count("hub unavailable") == 1, output
    assert "'apitally-hub.invalid'" in output, output  # the warning names what failed
    assert "not delivered to the hub" in output and "dropped" not in output, output


# -- name resolution that hangs, in-process ---------------------------------------------------------
NAME = "hub.apitally-otel.test"


def resolver_threads() -> int:
    return sum(1 for t in threading.enumerate() if t.name == "apitally-otel-resolve")


def test_name_resolution_that_hangs_is_bounded_and_delivery_resumes(
    stalled_dns: StalledDns, caplog: pytest.LogCaptureFixture
) -> None:
    hub = RecordingHub()
    with ServerThread(hub.app()) as url:
        port = url.rsplit(":", 1)[1]
        settings = resolve_settings(str(uuid.uuid4()), "test", f"http://{NAME}:{port}")
        client = HubClient(settings, request_timeout=0.3, min_backoff=0.01, max_backoff=0.05)
        with caplog.at_level(logging.DEBUG, logger="apitally_otel._hub.client"):
            for n in range(5):
                client.enqueue_sync({"message_uuid": f"m{n}", "timestamp": time.time()})
            threads = []

            def attempts() -> int:
                threads.append(resolver_threads())
                return sum("hub unavailable" in r.getMessage() for r in caplog.records)

            wait_until(lambda: attempts() >= 5, timeout=20, what="5 attempts abandoned at their deadline")
            assert client.pending == 5 and hub.messages == []
            # However many attempts, the one hanging lookup is shared: no thread per attempt.
            assert max(threads) == 1 and stalled_dns.lookups == 1 and MAX_LOOKUPS >= 1
            assert "no answer within the 0.3 s deadline, resolving 'hub.apitally-otel.test'" in caplog.text
            stalled_dns.answering.set()  # the DNS servers answer again
            wait_until(lambda: client.pending == 0, timeout=20, what="the backlog delivered")
        client.shutdown(1)
    assert [m["message_uuid"] for m in hub.of_kind("sync")] == [f"m{n}" for n in range(5)]
    assert client.dropped_count == 0
