"""The hub's lifecycle on each backend (the ``hub_db`` fixture): data and deduplication survive a
restart, a message accepted before a stop is folded after it, retention prunes at start and
periodically."""

from __future__ import annotations

import time
from pathlib import Path

from apitally_hub import HubServer
from apitally_hub.config import Retention
from apitally_hub.storage import create_storage
from apitally_hub.storage.sql.store import SQLStorage
from tests.support.hub_samples import gzip_lines, log_line, new_uuid, settling_client, sync

DAY = 86400.0


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_data_survives_a_restart(hub_db: str | Path) -> None:
    client_id, message = new_uuid(), sync()
    with HubServer(hub_db) as hub, settling_client(hub) as http:
        assert http.post(f"/v2/{client_id}/dev/sync", json=message).status_code == 202
    with HubServer(hub_db) as hub, settling_client(hub) as http:
        endpoints = http.get(f"/api/{client_id}/dev/endpoints").json()["endpoints"]
        assert [(e["path"], e["requests"]) for e in endpoints] == [("/api/items/{item_id}", 42)]
        # deduplication is durable too: the resend after a restart is not counted again
        assert http.post(f"/v2/{client_id}/dev/sync", json=message).status_code == 200
        assert http.get(f"/api/{client_id}/dev/endpoints").json()["endpoints"][0]["requests"] == 42


def test_a_message_accepted_before_a_stop_is_folded_after_the_restart(hub_db: str | Path) -> None:
    client_id = new_uuid()
    with HubServer(hub_db, fold_in_background=False) as hub, settling_client(hub) as http:
        assert http.post(f"/v2/{client_id}/dev/sync", json=sync()).status_code == 202
        assert hub.context.store.queue_stats().pending == 1  # committed, not folded yet
    with HubServer(hub_db) as hub:
        assert hub.query(client_id, "dev", "endpoints")["endpoints"][0]["requests"] == 42


def test_startup_prunes_data_past_each_retention(hub_db: str | Path) -> None:
    client_id, now = new_uuid(), time.time()
    old = FakeClock(now - 40 * DAY)
    with HubServer(hub_db, clock=old, retention=Retention(minutes=365)) as hub, settling_client(hub) as http:
        assert http.post(f"/v2/{client_id}/dev/sync", json=sync(timestamp=old.now)).status_code == 202
        body = gzip_lines([log_line(timestamp=old.now)])
        assert (
            http.post(f"/v2/{client_id}/dev/log", params={"uuid": new_uuid()}, content=body).status_code
            == 202
        )
        assert http.get(f"/api/{client_id}/dev/requests", params={"since": "1d"}).json()["total"] == 1
    with HubServer(hub_db, retention=Retention(minutes=30, hours=35)) as hub, settling_client(hub) as http:
        assert http.get(f"/api/{client_id}/dev/requests", params={"since": "60d"}).json()["total"] == 0
        # minutes and hours are gone; the day rows (5 years by default) still answer, at day resolution
        [endpoint] = http.get(f"/api/{client_id}/dev/endpoints", params={"since": "60d"}).json()["endpoints"]
        assert endpoint["requests"] == 42
        hourly = http.get(f"/api/{client_id}/dev/timeseries", params={"since": "60d", "bucket": "1h"}).json()
        assert hourly["bucket_seconds"] == 86400 and sum(p["requests"] for p in hourly["points"]) == 42
    store = create_storage(hub_db)
    assert isinstance(store, SQLStorage)
    store.open()
    try:
        for table, remaining in (
            ("endpoint_traffic", 1),
            ("request_log", 0),
            ("queue", 0),
            ("heartbeats", 0),
        ):
            count = store.read(lambda tx, t=table: tx.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0])
            assert count == remaining, table
    finally:
        store.close()


def test_periodic_pruning_removes_rows_as_they_age(hub_db: str | Path) -> None:
    client_id, clock = new_uuid(), FakeClock(time.time())
    retention = Retention(minutes=1, hours=1, days=1)
    with (
        HubServer(hub_db, clock=clock, retention=retention, prune_interval=0.05) as hub,
        settling_client(hub) as http,
    ):
        assert http.post(f"/v2/{client_id}/dev/sync", json=sync(timestamp=clock.now)).status_code == 202
        assert http.get(f"/api/{client_id}/dev/endpoints", params={"since": "3d"}).json()["endpoints"] != []
        clock.now += 3 * DAY
        deadline = time.monotonic() + 5
        while http.get(f"/api/{client_id}/dev/endpoints", params={"since": "4d"}).json()["endpoints"]:
            assert time.monotonic() < deadline, "not pruned"
            time.sleep(0.05)
