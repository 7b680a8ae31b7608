"""Delivery tests' helpers: the delivery app under uvicorn in a subprocess, traffic with a ledger
of what was served, and what the hub counted (used by the client's delivery, workers, hostile-hub
and OTLP tests)."""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import httpx

from apitally_hub import HubServer
from tests.support.servers import AppProcess

APP = "tests.support.apps.delivery_app:app"
Key = tuple[str, str]  # (method, route)


def app_env(client_id: str, hub_url: str, **extra: str) -> dict[str, str]:
    return {
        "APITALLY_CLIENT_ID": client_id,
        "APITALLY_HUB_BASE_URL": hub_url,
        "APITALLY_SYNC_INTERVAL": "1",
        **extra,
    }


@contextlib.contextmanager
def running(process: AppProcess, ready: str = "/__ready__") -> Iterator[AppProcess]:
    """Waits until ``process`` serves; stops it on the way out unless the test already did."""
    try:
        process.wait_ready(ready)
        yield process
    finally:
        if process.proc.stdout is not None and not process.proc.stdout.closed:
            process.stop()


def serve_app(
    client_id: str, hub_url: str, *args: str, **extra: str
) -> contextlib.AbstractContextManager[AppProcess]:
    return running(AppProcess(APP, app_env(client_id, hub_url, **extra), *args))


def traffic(base_url: str, count: int, served: Counter[Key], *, fresh: bool = False) -> None:
    """``count`` GET /hit/{n}; ``fresh`` opens a connection per request (spreads over workers)."""
    with httpx.Client(base_url=base_url, timeout=10) as client:
        for i in range(count):
            url = f"{base_url}/hit/{i}"
            response = httpx.get(url, timeout=10) if fresh else client.get(url)
            assert response.status_code == 200
            served[("GET", "/hit/{n:int}")] += 1


def hub_totals(hub: HubServer, client_id: str) -> Counter[Key]:
    rows = hub.query(client_id, "dev", "endpoints")["endpoints"]
    return Counter({(row["method"], row["path"]): row["requests"] for row in rows if row["requests"]})


def instances(hub: HubServer, client_id: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = hub.query(client_id, "dev", "instances")["instances"]
    return rows


def wait_until(predicate: Callable[[], bool], timeout: float = 15.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout} s")
        time.sleep(0.1)


def ledger(name: str, served: Counter[Key], counted: Counter[Key], **dropped: object) -> None:
    """One line per fault run (visible with ``pytest -s`` or in the report of a failure)."""
    print(f"\nLEDGER {name}: served={sum(served.values())} counted={sum(counted.values())} dropped={dropped}")


# -- faulty hubs --------------------------------------------------------------------------------
