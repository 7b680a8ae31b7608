"""Storage: persistence across restarts, retention pruning, migrations."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import httpx
import pytest
from hub_samples import gzip_lines, log_line, new_uuid, sync

from apitally_hub import HubServer
from apitally_hub.storage.sqlite.database import Database
from apitally_hub.storage.sqlite.retention import prune
from apitally_hub.storage.sqlite.schema import (
    MIGRATIONS,
    SCHEMA_VERSION,
    current_version,
    migrate,
    register_functions,
)
from apitally_hub.storage.sqlite.writes import store_sync

DAY = 86400.0


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _tables(path: Path) -> list[tuple[str, str]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT name, sql FROM sqlite_master ORDER BY name").fetchall()
    finally:
        conn.close()


def test_data_survives_a_restart(db_file: Path) -> None:
    client_id, message = new_uuid(), sync()
    with HubServer(db_file) as hub, httpx.Client(base_url=hub.url) as http:
        assert http.post(f"/v2/{client_id}/dev/sync", json=message).status_code == 202
    with HubServer(db_file) as hub, httpx.Client(base_url=hub.url) as http:
        endpoints = http.get(f"/api/{client_id}/dev/endpoints").json()["endpoints"]
        assert [(e["path"], e["requests"]) for e in endpoints] == [("/api/items/{item_id}", 42)]
        # deduplication is durable too: the resend after a restart is not counted again
        assert http.post(f"/v2/{client_id}/dev/sync", json=message).status_code == 200
        assert http.get(f"/api/{client_id}/dev/endpoints").json()["endpoints"][0]["requests"] == 42


def test_database_uses_wal(db_file: Path) -> None:
    db = Database(db_file)
    db.open()
    try:
        assert db.read(lambda conn: conn.execute("PRAGMA journal_mode").fetchone()[0]) == "wal"
    finally:
        db.close()


def test_startup_prunes_data_older_than_the_retention(db_file: Path) -> None:
    client_id, now = new_uuid(), time.time()
    old = FakeClock(now - 40 * DAY)
    with HubServer(db_file, clock=old) as hub, httpx.Client(base_url=hub.url) as http:
        assert http.post(f"/v2/{client_id}/dev/sync", json=sync(timestamp=old.now)).status_code == 202
        body = gzip_lines([log_line(timestamp=old.now)])
        assert (
            http.post(f"/v2/{client_id}/dev/log", params={"uuid": new_uuid()}, content=body).status_code
            == 202
        )
        assert http.get(f"/api/{client_id}/dev/requests", params={"since": "1d"}).json()["total"] == 1
    with HubServer(db_file, retention_days=30) as hub, httpx.Client(base_url=hub.url) as http:
        assert http.get(f"/api/{client_id}/dev/endpoints", params={"since": "60d"}).json()["endpoints"] == []
        assert http.get(f"/api/{client_id}/dev/requests", params={"since": "60d"}).json()["total"] == 0
        assert http.get(f"/api/{client_id}/dev/instances").json()["instances"] == []
    conn = sqlite3.connect(db_file)
    try:
        for table in ("messages", "request_counts", "server_errors", "consumers", "log_files", "request_log"):
            assert conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0] == 0, table
    finally:
        conn.close()


def test_periodic_pruning_removes_rows_as_they_age(db_file: Path) -> None:
    client_id, clock = new_uuid(), FakeClock(time.time())
    with (
        HubServer(db_file, clock=clock, retention_days=1, prune_interval=0.05) as hub,
        httpx.Client(base_url=hub.url) as http,
    ):
        assert http.post(f"/v2/{client_id}/dev/sync", json=sync(timestamp=clock.now)).status_code == 202
        clock.now += 2 * DAY
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if http.get(f"/api/{client_id}/dev/endpoints", params={"since": "3d"}).json()["endpoints"] == []:
                break
            time.sleep(0.05)
        assert http.get(f"/api/{client_id}/dev/endpoints", params={"since": "3d"}).json()["endpoints"] == []


def test_prune_keeps_recent_rows(tmp_path: Path) -> None:
    db = Database(tmp_path / "hub.sqlite")
    db.open()
    try:
        now = time.time()
        for ts in (now - 10 * DAY, now - 1):
            db.write(lambda conn, ts=ts: store_sync(conn, "c", "dev", sync(timestamp=ts), b"{}", ts))
        deleted = db.write(lambda conn: prune(conn, now - 5 * DAY))
        assert deleted["request_counts"] == 1
        assert deleted["messages"] == 1
        remaining = db.read(
            lambda conn: conn.execute("SELECT SUM(request_count) FROM request_counts").fetchone()
        )
        assert remaining == (42,)
    finally:
        db.close()


def test_migrations_on_an_empty_db_and_idempotent(db_file: Path) -> None:
    conn = sqlite3.connect(db_file, isolation_level=None)
    try:
        assert current_version(conn) == 0
        assert migrate(conn) == SCHEMA_VERSION == len(MIGRATIONS)
        before = _tables(db_file)
        assert migrate(conn) == SCHEMA_VERSION
        assert _tables(db_file) == before
        assert conn.execute("SELECT COUNT(*) FROM schema_version").fetchone()[0] == 1
    finally:
        conn.close()
    # and through the Database wrapper, twice
    for _ in range(2):
        db = Database(db_file)
        assert db.open() == SCHEMA_VERSION
        db.close()


def test_migrations_apply_in_order_and_only_once(db_file: Path) -> None:
    applied: list[str] = []

    def first(conn: sqlite3.Connection) -> None:
        applied.append("first")
        conn.execute("CREATE TABLE one (x)")

    def second(conn: sqlite3.Connection) -> None:
        applied.append("second")
        conn.execute("ALTER TABLE one ADD COLUMN y")

    conn = sqlite3.connect(db_file, isolation_level=None)
    try:
        assert migrate(conn, (first,)) == 1
        assert migrate(conn, (first, second)) == 2
        assert migrate(conn, (first, second)) == 2
    finally:
        conn.close()
    assert applied == ["first", "second"]


def test_failed_migration_rolls_back(db_file: Path) -> None:
    def broken(conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE half (x)")
        raise RuntimeError("boom")

    conn = sqlite3.connect(db_file, isolation_level=None)
    try:
        with pytest.raises(RuntimeError):
            migrate(conn, (broken,))
        assert current_version(conn) == 0
        assert conn.execute("SELECT name FROM sqlite_master WHERE name = 'half'").fetchone() is None
    finally:
        conn.close()


def test_newer_schema_is_refused(db_file: Path) -> None:
    conn = sqlite3.connect(db_file, isolation_level=None)
    try:
        migrate(conn)
        conn.execute("UPDATE schema_version SET version = 999")
        with pytest.raises(RuntimeError, match="newer"):
            migrate(conn)
    finally:
        conn.close()


def test_hub_fails_to_start_on_a_newer_schema(db_file: Path) -> None:
    conn = sqlite3.connect(db_file, isolation_level=None)
    try:
        migrate(conn)
        conn.execute("UPDATE schema_version SET version = 999")
    finally:
        conn.close()
    with pytest.raises(RuntimeError, match="did not start"):
        HubServer(db_file, startup_timeout=5).start()


def test_merge_bins_sql_function() -> None:
    conn = sqlite3.connect(":memory:")
    try:
        register_functions(conn)
        query = """SELECT merge_bins('{"0": 1, "20": 2}', '{"20": 3, "10": 1}')"""
        assert conn.execute(query).fetchone() == ('{"0":1,"10":1,"20":5}',)
    finally:
        conn.close()


def test_aggregates_merge_within_a_minute_and_split_across_minutes(db_file: Path) -> None:
    db = Database(db_file)
    db.open()
    try:
        base = 1_700_000_040.0  # a minute boundary
        instance = new_uuid()
        for ts in (base + 1, base + 11, base + 61):
            msg = sync(instance_uuid=instance, timestamp=ts)
            db.write(lambda conn, msg=msg, ts=ts: store_sync(conn, "c", "dev", msg, b"{}", ts))
        rows = db.read(
            lambda conn: conn.execute(
                "SELECT minute, request_count, response_times FROM request_counts ORDER BY minute"
            ).fetchall()
        )
        assert rows == [
            (base, 84, '{"0":60,"10":18,"120":6}'),
            (base + 60, 42, '{"0":30,"10":9,"120":3}'),
        ]
        interval = db.read(lambda conn: conn.execute("SELECT sync_interval FROM instances").fetchone()[0])
        assert interval == 50.0
    finally:
        db.close()


def test_temporary_database_is_fresh_per_run_and_removed() -> None:
    hub = HubServer()
    client_id = new_uuid()
    with hub, httpx.Client(base_url=hub.url) as http:
        first_db = hub.db_path
        assert http.post(f"/v2/{client_id}/dev/sync", json=sync()).status_code == 202
    assert not first_db.exists()
    with hub:
        assert hub.query(client_id, "dev", "endpoints")["endpoints"] == []
    hub.stop()  # idempotent


def test_invalid_settings_fail_fast_without_leaking() -> None:
    with pytest.raises(ValueError, match="max_body_bytes"):
        HubServer(max_body_bytes=0).start()
    with pytest.raises(ValueError, match="not a UUID"):
        HubServer(client_ids=["nope"]).start()
