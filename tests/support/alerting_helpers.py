"""Shared pieces of the alerting tests: a hub whose evaluation and deliveries the test drives
(fake clock, hand-run rounds), syncs carrying chosen traffic, a real webhook receiver."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from apitally_hub import HubServer
from apitally_hub.alerting.config import AlertingConfig
from tests.support.hub_samples import REQUEST_ITEM, new_uuid, startup, sync


class FakeClock:
    def __init__(self, now: float | None = None) -> None:
        self.now = time.time() if now is None else now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


class RealClock(FakeClock):
    """The real time (for tests where the hub's own threads run)."""

    def __call__(self) -> float:
        return time.time()


def traffic(
    method: str = "GET", path: str = "/items", status: int = 200, count: int = 1, ms: int = 10
) -> dict[str, Any]:
    return {
        **REQUEST_ITEM,
        "consumer": None,
        "method": method,
        "path": path,
        "status_code": status,
        "request_count": count,
        "request_size_sum": 0,
        "response_size_sum": 0,
        "response_times": {str(ms // 10 * 10): count},
        "request_sizes": {},
        "response_sizes": {},
    }


class DrivenHub:
    """A running hub plus handles to drive alerting by hand."""

    def __init__(self, server: HubServer, clock: FakeClock, client_id: str, env: str = "prod") -> None:
        self.server, self.clock, self.client_id, self.env = server, clock, client_id, env
        self.http = httpx.Client(base_url=server.url, timeout=10)
        self.instance = new_uuid()

    @property
    def api(self) -> str:
        return f"/api/{self.client_id}/{self.env}"

    def post(self, resource: str, body: Any, expect: int = 201) -> dict[str, Any]:
        response = self.http.post(f"{self.api}/{resource}", json=body)
        assert response.status_code == expect, response.text
        return response.json() if response.content else {}

    def get(self, resource: str, **params: Any) -> dict[str, Any]:
        response = self.http.get(f"{self.api}/{resource}", params=params)
        assert response.status_code == 200, response.text
        data: dict[str, Any] = response.json()
        return data

    def startup(self) -> None:
        response = self.http.post(f"/v2/{self.client_id}/{self.env}/startup", json=startup(self.instance))
        assert response.status_code == 202, response.text

    def sync(self, *items: dict[str, Any], at: float | None = None) -> None:
        message = sync(
            instance_uuid=self.instance,
            timestamp=self.clock.now if at is None else at,
            requests=list(items),
            validation_errors=[],
            server_errors=[],
            consumers=[],
        )
        response = self.http.post(f"/v2/{self.client_id}/{self.env}/sync", json=message)
        assert response.status_code == 202, response.text
        self.server.settle()

    def evaluate(self) -> bool:
        """One evaluation round, then the deliveries it queued."""
        alerting = self.server.context.alerting
        assert alerting is not None
        evaluated = alerting.evaluator.evaluate_all()
        self.deliver()
        return evaluated

    def deliver(self) -> None:
        alerting = self.server.context.alerting
        assert alerting is not None
        while alerting.delivery.dispatch():
            alerting.delivery.wait_idle()
        alerting.delivery.wait_idle()

    def alerts(self) -> list[dict[str, Any]]:
        return list(self.get("alerts")["alerts"])

    def close(self) -> None:
        self.http.close()


@contextmanager
def driven_hub(
    db: Path, client_id: str, clock: FakeClock | None = None, **settings: Any
) -> Iterator[DrivenHub]:
    clock = clock or FakeClock()
    options = {"enabled": False, **settings}
    with HubServer(db, clock=clock, alerting=AlertingConfig(**options)) as server:
        hub = DrivenHub(server, clock, client_id)
        try:
            yield hub
        finally:
            hub.close()
