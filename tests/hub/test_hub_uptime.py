"""Up and down from heartbeats (:mod:`apitally_hub.query.uptime`) and through the query API."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
from hub_samples import new_uuid, settling_client, startup, sync

from apitally_hub import HubServer
from apitally_hub.query.uptime import Span, daily, down_after, status, timeline, uptime_fraction

T = 1_800_000_000 // 3600 * 3600


def test_down_after_is_three_intervals_of_the_slowest_instance_and_at_least_three_minutes() -> None:
    assert down_after([2.0, 10.0], 60.0) == 180.0
    assert down_after([90.0, 30.0], 60.0) == 270.0
    assert down_after([], 120.0) == 360.0


def test_status_now() -> None:
    assert status(None, T, 180) == "unknown"
    assert status(T - 180, T, 180) == "up"
    assert status(T - 181, T, 180) == "down"


def test_a_gap_longer_than_down_after_is_down_until_the_next_sync() -> None:
    beats = [T + 60 * m for m in (0, 1, 2, 10, 11)]  # silent from minute 3 to 9
    spans = timeline(
        beats, since=T, until=T + 720, after=180, known_from=T - 3600, last_sync_at=T + 11 * 60 + 5
    )
    assert spans == [
        Span(T, T + 3 * 60 + 180, "up"),  # minute 2 counts as alive to its end, then 3 minutes of grace
        Span(T + 6 * 60, T + 10 * 60, "down"),
        Span(T + 10 * 60, T + 720, "up"),
    ]
    assert uptime_fraction(spans) == round(8 / 12, 6)


def test_short_gaps_stay_up_and_the_tail_uses_the_exact_last_sync() -> None:
    beats = [T + 60 * m for m in range(0, 10, 2)]  # every other minute
    last = T + 8 * 60 + 1
    spans = timeline(beats, since=T, until=T + 20 * 60, after=180, known_from=T, last_sync_at=last)
    assert spans == [Span(T, last + 180, "up"), Span(last + 180, T + 20 * 60, "down")]


def test_before_the_app_is_known_the_state_is_unknown() -> None:
    spans = timeline([T + 600], since=T, until=T + 700, after=180, known_from=T + 600, last_sync_at=T + 600)
    assert spans == [Span(T, T + 600, "unknown"), Span(T + 600, T + 700, "up")]
    assert uptime_fraction(spans) == 1.0
    assert timeline([], since=T, until=T + 60, after=180, known_from=None, last_sync_at=None) == [
        Span(T, T + 60, "unknown")
    ]
    assert uptime_fraction([Span(T, T + 60, "unknown")]) is None


def test_a_sync_before_the_window_keeps_its_start_up() -> None:
    spans = timeline([T - 120], since=T, until=T + 600, after=180, known_from=T - 3600, last_sync_at=T - 100)
    assert spans == [Span(T, T + 80, "up"), Span(T + 80, T + 600, "down")]


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clocked() -> Iterator[tuple[HubServer, Clock, httpx.Client]]:
    clock = Clock()
    with HubServer(clock=clock) as hub, settling_client(hub) as http:
        yield hub, clock, http


def test_status_and_uptime_resources(clocked: tuple[HubServer, Clock, httpx.Client]) -> None:
    _, clock, http = clocked
    client_id, instance = new_uuid(), new_uuid()
    assert http.get(f"/api/{client_id}/dev/status").json()["status"] == "unknown"
    assert http.post(f"/v2/{client_id}/dev/startup", json=startup(instance)).status_code == 202
    start = clock.now
    for minute in (0, 1, 2):
        message = sync(instance_uuid=instance, timestamp=start + 60 * minute)
        clock.now = start + 60 * minute
        assert http.post(f"/v2/{client_id}/dev/sync", json=message).status_code == 202
    assert http.get(f"/api/{client_id}/dev/status").json() == {
        "client_id": client_id,
        "env": "dev",
        "status": "up",
        "last_sync_at": pytest.approx(clock.now, abs=1),
        "down_after_seconds": 180.0,
    }
    clock.now += 181
    assert http.get(f"/api/{client_id}/dev/status").json()["status"] == "down"
    body = http.get(f"/api/{client_id}/dev/uptime", params={"since": "10m"}).json()
    assert body["status"] == "down" and [s["state"] for s in body["timeline"]] == ["unknown", "up", "down"]
    assert body["timeline"][-1]["end"] == pytest.approx(clock.now, abs=0.01)
    assert 0 < body["uptime"] < 1
    assert len(body["heartbeats"]) == 3
    apps = http.get("/api/apps", params={"stats": "true"}).json()["apps"]
    [mine] = [a for a in apps if a["client_id"] == client_id]
    assert mine["status"]["status"] == "down" and mine["overview"]["requests"] == 3 * 42


def test_uptime_per_day() -> None:
    day = 86400
    d = T // day * day
    spans = [Span(d - 3600, d + 3600, "up"), Span(d + 3600, d + 7200, "down"), Span(d + 7200, d + day, "up")]
    assert daily(spans) == [
        {"day": float(d - day), "uptime": 1.0},
        {"day": float(d), "uptime": round((day - 3600) / day, 6)},
    ]
