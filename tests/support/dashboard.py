"""What the browser tests share (their fixtures are in conftest.py): the demo data, the hub's
token, the console watcher and the login.

The hub also gets an hour of history before the demo app starts — syncs of a second instance
with past timestamps, one a minute, with a quiet spell and a burst of 5xx — so that charts,
the uptime timeline and the screenshots look like a running service, not like ten seconds.
"""

from __future__ import annotations

import math
import random
import time
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
from playwright.sync_api import BrowserContext, ConsoleMessage, Page

from apitally_hub import HubServer
from apitally_hub.demo.consumers import API_KEYS, CLIENT_APPS
from apitally_hub.demo.run import ENV

TOKEN = "browser-test-token-0123456789"
SCREENSHOTS_ENV = "APITALLY_DASHBOARD_SCREENSHOTS"
"""A folder for the screenshots (e.g. docs/screenshots to regenerate the README's); default a
temporary folder that the screenshot test names in its output."""
HISTORY_MINUTES = 60
QUIET_MINUTES = range(38, 33, -1)
"""Minutes ago without any sync in the history: the uptime timeline shows them down."""
INCIDENT_MINUTES = range(22, 17, -1)
"""Minutes ago with many 5xx and slow responses."""


@dataclass
class Demo:
    hub: HubServer
    client_id: str
    api: httpx.Client

    @property
    def url(self) -> str:
        return self.hub.url

    @property
    def app_path(self) -> str:
        return f"/apps/{self.client_id}/{ENV}"

    def get(self, resource: str, **params: Any) -> Any:
        response = self.api.get(f"/api/{self.client_id}/{ENV}/{resource}", params=params)
        assert response.status_code == 200, response.text
        return response.json()


ENDPOINTS = (
    ("GET", "/api/items/", 25, (200, 422), 12),
    ("GET", "/api/items/{item_id}", 30, (200, 404, 422), 5),
    ("POST", "/api/items/", 10, (201, 422), 18),
    ("DELETE", "/api/items/{item_id}", 2, (204, 404), 7),
    ("GET", "/api/stream", 2, (200,), 25),
    ("GET", "/api/me", 8, (200, 401), 2),
    ("GET", "/api/fail", 0.7, (500,), 10),
)
"""(method, path, requests per minute, statuses, typical ms): the demo API's shape."""


def _history_sync(instance: str, minute: int, rng: random.Random) -> dict[str, Any]:
    ago = minute * 60 - 30
    wave = 1.0 + 0.6 * math.sin(minute / 9.0)
    incident = minute in INCIDENT_MINUTES
    consumers = [*API_KEYS, *CLIENT_APPS, None]
    requests = []
    for method, path, rate, statuses, typical in ENDPOINTS:
        for status in statuses:
            share = 0.85 if status < 300 else 0.15 / max(len(statuses) - 1, 1)
            if path == "/api/fail":
                share = 1.0
            for consumer in rng.sample(consumers, 3):
                count = int(rng.uniform(0.5, 1.5) * rate * wave * share / 3 * 4)
                if status >= 500 and incident:
                    count += rng.randint(5, 15)
                if count <= 0:
                    continue
                slow = 6 if incident else 1
                times: dict[str, int] = {}
                for _ in range(count):
                    ms = int(rng.expovariate(1 / (typical * slow)) // 10 * 10)
                    times[str(ms)] = times.get(str(ms), 0) + 1
                kb = 1 if method == "GET" and status == 200 else 0
                requests.append(
                    {
                        "consumer": consumer,
                        "method": method,
                        "path": path,
                        "status_code": status,
                        "request_count": count,
                        "request_size_sum": 60 * count if method == "POST" else 0,
                        "response_size_sum": (kb * 1000 + 200) * count,
                        "response_times": times,
                        "request_sizes": {"0": count} if method == "POST" else {},
                        "response_sizes": {str(kb): count},
                    }
                )
    server_errors = []
    if incident:
        server_errors.append(
            {
                "consumer": None,
                "method": "GET",
                "path": "/api/fail",
                "type": "builtins.RuntimeError",
                "msg": "the database is on fire",
                "traceback": "Traceback (most recent call last):\n"
                '  File "/app/demo_app.py", line 180, in fail\n'
                '    raise RuntimeError("the database is on fire")\n'
                "RuntimeError: the database is on fire",
                "sentry_event_id": None,
                "error_count": 3,
            }
        )
    return {
        "instance_uuid": instance,
        "message_uuid": str(uuid.uuid4()),
        "timestamp": time.time() - ago,
        "requests": requests,
        "validation_errors": [],
        "server_errors": server_errors,
        "consumers": [
            {"identifier": key, "name": name, "group": group}
            for key, (name, group) in {**API_KEYS, **CLIENT_APPS}.items()
        ]
        if minute == HISTORY_MINUTES
        else [],
        "resources": {"cpu_percent": 2.0 + rng.random(), "memory_rss": 80_000_000},
    }


def backfill(hub_url: str, client_id: str) -> None:
    """An hour of history from an earlier instance of the app (see the module docstring)."""
    rng = random.Random(14)
    instance = str(uuid.uuid4())
    with httpx.Client(base_url=f"{hub_url}/v2/{client_id}/{ENV}", timeout=10) as http:
        startup = {
            "instance_uuid": instance,
            "message_uuid": str(uuid.uuid4()),
            "paths": [{"method": m, "path": p} for m, p, *_ in ENDPOINTS],
            "versions": {"python": "3.11.7", "fastapi": "0.165.0", "app": "0.9.0"},
            "client": "python:fastapi",
        }
        assert http.post("/startup", json=startup).status_code == 202
        for minute in range(HISTORY_MINUTES, 1, -1):
            if minute in QUIET_MINUTES:
                continue
            response = http.post("/sync", json=_history_sync(instance, minute, rng))
            assert response.status_code == 202, response.text


class Console:
    """What the page's console and scripts reported; the tests want no error."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def watch(self, page: Page) -> None:
        def on_console(message: ConsoleMessage) -> None:
            if message.type in ("error", "warning"):
                self.errors.append(f"{message.type}: {message.text}")

        page.on("console", on_console)
        page.on("pageerror", lambda error: self.errors.append(f"pageerror: {error}"))


def log_in(context: BrowserContext, base_url: str, token: str = TOKEN) -> None:
    page = context.new_page()
    page.goto(f"{base_url}/login")
    page.fill("#token", token)
    page.click("#login-form button[type=submit]")
    page.wait_for_url(f"{base_url}/")
    page.close()
