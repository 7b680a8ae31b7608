"""The SQLite backend in particular: WAL, versioned migrations (from a database made by the
schema-1 hub, data kept), temporary databases. (Restarts and pruning: test_lifecycle.py.)"""

from __future__ import annotations

import json
import shutil
import sqlite3
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from apitally_hub import HubServer
from apitally_hub.config import Retention
from apitally_hub.ingest.worker import FoldingWorker
from apitally_hub.storage.records import (
    AppKey,
    AppRecord,
    ConsumerInfo,
    EndpointSetting,
    LogQuery,
    RawMessage,
    Segment,
    SeriesPoint,
    TrafficQuery,
    WriteToken,
)
from apitally_hub.storage.sql.apps import APP_DATA_TABLES
from apitally_hub.storage.sqlite.schema import (
    MIGRATIONS,
    SCHEMA_VERSION,
    current_version,
    migrate,
    register_functions,
)
from apitally_hub.storage.sqlite.store import SQLiteStorage
from tests.support.hub_samples import (
    BACKFILL_CONSUMERS,
    BACKFILL_EXPECTED,
    BACKFILL_TRAFFIC,
    gzip_lines,
    log_line,
    new_uuid,
    settling_client,
    sync,
)

DATA = Path(__file__).parent / "data"
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


def test_database_uses_wal(db_file: Path) -> None:
    store = SQLiteStorage(db_file)
    store.open()
    try:
        assert store.read(lambda tx: tx.execute("PRAGMA journal_mode").fetchone()[0]) == "wal"
        assert store.schema_version() == SCHEMA_VERSION
    finally:
        store.close()
        store.close()  # safe twice


# -- migrations -------------------------------------------------------------------------------


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
    for _ in range(2):
        store = SQLiteStorage(db_file)
        assert store.open() == SCHEMA_VERSION
        store.close()


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


def test_newer_schema_is_refused_and_the_hub_does_not_start(db_file: Path) -> None:
    conn = sqlite3.connect(db_file, isolation_level=None)
    try:
        migrate(conn)
        conn.execute("UPDATE schema_version SET version = 999")
        with pytest.raises(RuntimeError, match="newer"):
            migrate(conn)
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


def _without_volatile(value: Any) -> Any:
    """Drop what legitimately changes with the schema: bucket naming and paging fields."""
    if isinstance(value, dict):
        skip = {
            "first_minute",
            "last_minute",
            "first_bucket",
            "last_bucket",
            "next_cursor",
            "total",
            "limit",
            "offset",
            "now",
            "p75_ms",
            "id",
        }
        return {k: _without_volatile(v) for k, v in value.items() if k not in skip}
    if isinstance(value, list):
        return [_without_volatile(v) for v in value]
    return value


def _covers(answer: Any, expected: Any) -> bool:
    """``answer`` says everything ``expected`` says (and may say more: new fields)."""
    if isinstance(expected, dict):
        if not isinstance(answer, dict):
            return False
        return all(key in answer and _covers(answer[key], value) for key, value in expected.items())
    if isinstance(expected, list):
        same_length = isinstance(answer, list) and len(answer) == len(expected)
        return same_length and all(map(_covers, answer, expected))
    return bool(answer == expected)


def test_a_schema_1_database_keeps_all_its_data(tmp_path: Path) -> None:
    """``data/schema_v1.sqlite`` was written by the schema-1 hub (see ``data/make_schema_v1.py``);
    after the migration the hub answers every query as that hub did."""
    db = tmp_path / "hub.sqlite"
    shutil.copy(DATA / "schema_v1.sqlite", db)
    fixture = json.loads((DATA / "schema_v1.json").read_text())
    client_id, t0 = fixture["client_id"], fixture["t0"]
    clock = FakeClock(t0 + 3600)
    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t0 - 60))
    until = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t0 + 600))
    with HubServer(db, clock=clock, retention=Retention(minutes=3650)) as hub:
        assert hub.context.store.schema_version() == SCHEMA_VERSION
        for resource, expected in fixture["expected"].items():
            params = {} if resource == "instances" else {"since": since, "until": until}
            answer = hub.query(client_id, "prod", resource, **params)
            if resource == "consumers":  # listed by their traffic in the window now, without percentiles
                expected["consumers"] = [
                    {k: v for k, v in c.items() if not k.endswith("_ms")}
                    for c in expected["consumers"]
                    if c["requests"]
                ]
            assert _covers(_without_volatile(answer), _without_volatile(expected)), resource
        # resends of messages stored before the migration are still recognised
        assert hub.context.store.queue_stats().folded == 2 + 6 + 1
    conn = sqlite3.connect(db)
    try:
        names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert not names & {"messages", "request_counts", "log_files", "v1_request_log"}
    finally:
        conn.close()


def test_schema_6_fills_the_group_traffic_from_the_consumer_rows(db_file: Path) -> None:
    conn = sqlite3.connect(db_file, isolation_level=None)
    try:
        assert migrate(conn, MIGRATIONS[:5]) == 5
        conn.executemany(
            "INSERT INTO consumers (client_id, env, identifier, group_name, first_seen, last_seen)"
            " VALUES ('c', 'prod', ?, ?, 0, 0)",
            BACKFILL_CONSUMERS,
        )
        conn.executemany(
            "INSERT INTO consumer_traffic VALUES ('c', 'prod', ?, ?, ?, 'GET', ?, ?, ?, ?, ?, '{}')",
            BACKFILL_TRAFFIC,
        )
        assert migrate(conn) == SCHEMA_VERSION
        rows = conn.execute("SELECT * FROM group_traffic ORDER BY resolution, status_code").fetchall()
    finally:
        conn.close()
    assert rows == BACKFILL_EXPECTED


def test_temporary_database_is_fresh_per_run_and_removed() -> None:
    hub = HubServer()
    client_id = new_uuid()
    with hub, settling_client(hub) as http:
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
    with pytest.raises(ValueError, match="retention"):
        HubServer(retention=Retention(minutes=0)).start()


def test_schema_7_adds_the_apps_registry_to_a_database_with_data(db_file: Path) -> None:
    client_id = new_uuid()
    conn = sqlite3.connect(db_file, isolation_level=None)
    try:
        assert migrate(conn, MIGRATIONS[:6]) == 6
        conn.execute(
            "INSERT INTO instances (client_id, env, instance_uuid, first_seen, last_seen, last_sync_at,"
            " syncs)"
            " VALUES (?, 'prod', ?, 100, 200, 200, 3)",
            (client_id, new_uuid()),
        )
        conn.execute(
            "INSERT INTO endpoint_traffic VALUES (?, 'prod', 60, 120, 'GET', '/a', 200, 5, 0, 0,"
            " '{}', '{}', '{}')",
            (client_id,),
        )
    finally:
        conn.close()
    store = SQLiteStorage(db_file)
    try:
        assert store.open() == SCHEMA_VERSION >= 7
        assert store.app_records() == []
        [info] = store.list_apps()  # the app that reported before stays, unnamed
        assert info.app == AppKey(client_id, "prod") and info.instances == 1
        store.put_app(AppRecord(client_id, "Shop", "fastapi", ("prod",), 300, 300))
        assert store.app_record(client_id) == AppRecord(client_id, "Shop", "fastapi", ("prod",), 300, 300)
        assert store.delete_app(client_id) == {"instances": 1, "endpoint_traffic": 1, "apps": 1}
    finally:
        store.close()


def test_schema_8_adds_consumer_names_and_endpoint_settings_to_a_database_with_data(db_file: Path) -> None:
    client_id = new_uuid()
    app = AppKey(client_id, "prod")
    conn = sqlite3.connect(db_file, isolation_level=None)
    try:
        assert migrate(conn, MIGRATIONS[:7]) == 7
        conn.execute(
            "INSERT INTO consumers (client_id, env, identifier, name, group_name, first_seen, last_seen)"
            " VALUES (?, 'prod', 'c1', 'One', 'Gold', 100, 200)",
            (client_id,),
        )
        conn.execute(
            "INSERT INTO consumer_traffic (client_id, env, resolution, bucket, consumer, method, path,"
            " status_code, request_count, request_size_sum, response_size_sum, response_times)"
            " VALUES (?, 'prod', 60, 120, 'c1', 'GET', '/a', 200, 5, 50, 500, '{}')",
            (client_id,),
        )
        conn.execute(
            "INSERT INTO group_traffic VALUES (?, 'prod', 60, 120, 'Gold', 200, 5, 50, 500)", (client_id,)
        )
    finally:
        conn.close()
    store = SQLiteStorage(db_file)
    try:
        assert store.open() == SCHEMA_VERSION >= 8
        assert store.consumers_info(app, ["c1"])["c1"] == ConsumerInfo(
            "c1", "One", "Gold", 100, 200, "One", "Gold"
        )
        moved = store.set_consumer_overrides(app, "c1", name=None, group="Silver", now=300)
        assert moved == ConsumerInfo("c1", "One", "Silver", 100, 200, "One", "Gold", None, "Silver")
        assert store.consumer_groups(app) == [("Silver", 1)]
        segments = (Segment(60, 120, 120),)
        rows = store.traffic(TrafficQuery(app, segments, ("consumer_group",)))
        assert [(r.key, r.request_count, r.response_size_sum) for r in rows] == [(("Silver",), 5, 500)]
        assert store.endpoint_settings(app) == []
        store.put_endpoint_setting(app, EndpointSetting("GET", "/a", 100, True, 300))
        assert store.endpoint_settings(app) == [EndpointSetting("GET", "/a", 100, True, 300)]
    finally:
        store.close()


def test_schema_9_adds_the_client_ip_to_a_request_log_with_data(db_file: Path) -> None:
    app = AppKey(new_uuid(), "prod")
    now = time.time()
    conn = sqlite3.connect(db_file, isolation_level=None)
    try:
        assert migrate(conn, MIGRATIONS[:8]) == 8
        conn.execute(
            "INSERT INTO request_log (client_id, env, file_uuid, request_uuid, timestamp, method, path, url,"
            " status_code, response_time, item) VALUES (?, 'prod', ?, ?, ?, 'GET', '/a', 'http://h/a',"
            " 200, 0.1, '{}')",
            (app.client_id, new_uuid(), new_uuid(), now),
        )
    finally:
        conn.close()
    store = SQLiteStorage(db_file)
    try:
        assert store.open() == SCHEMA_VERSION >= 9
        window = LogQuery(app, now - 60, now + 600)
        assert store.request_log(window)[1] == 1  # the old item stays, without an address
        line = log_line(timestamp=now + 5)
        line["request"]["client_ip"] = "203.0.113.9"
        assert store.enqueue(RawMessage(app, "log", new_uuid(), None, now, gzip_lines([line]), "gzip", 1))
        FoldingWorker(store).drain()
        found, total = store.request_log(replace(window, client_ip="203.0.113.9"))
        assert total == 1 and [s.request_uuid for s in found] == [line["uuid"]]
        assert store.request_log(window)[1] == 2
    finally:
        store.close()


def test_schema_10_adds_write_tokens_and_series_to_a_database_with_apps(db_file: Path) -> None:
    named, reported = new_uuid(), new_uuid()
    app = AppKey(named, "prod")
    conn = sqlite3.connect(db_file, isolation_level=None)
    try:
        assert migrate(conn, MIGRATIONS[:9]) == 9
        conn.execute(
            "INSERT INTO apps (client_id, name, framework, envs, created_at, updated_at)"
            " VALUES (?, 'Shop', 'fastapi', '[\"prod\"]', 100, 100)",
            (named,),
        )
        conn.execute(
            "INSERT INTO instances (client_id, env, instance_uuid, first_seen, last_seen, syncs)"
            " VALUES (?, 'prod', ?, 100, 200, 3)",
            (reported, new_uuid()),
        )
    finally:
        conn.close()
    store = SQLiteStorage(db_file)
    try:
        assert store.open() == SCHEMA_VERSION >= 10
        # every app of the registry has a first write token; one that only reported gets its own
        # when it is named
        [token] = store.write_tokens(named)
        assert WriteToken.is_well_formed(token.token) and token.revoked_at is None
        assert store.app_for_write_token(token.token) == named
        assert store.write_tokens(reported) == []
        assert store.swap_series(app, "i1", [SeriesPoint("a", 1, 2, "3")], 300) == {}
        assert store.swap_series(app, "i1", [SeriesPoint("a", 1, 4, "5")], 300) == {
            "a": SeriesPoint("a", 1, 2, "3")
        }
        assert store.delete_app(named) == {"apps": 1, "write_tokens": 1, "otlp_series": 1}
    finally:
        store.close()


def test_deleting_an_app_covers_every_table_with_a_client_id(db_file: Path) -> None:
    store = SQLiteStorage(db_file)
    store.open()
    store.close()
    conn = sqlite3.connect(db_file)
    try:
        tables = [row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        with_client_id = {
            table
            for table in tables
            if any(column[1] == "client_id" for column in conn.execute(f"PRAGMA table_info({table})"))
        }
    finally:
        conn.close()
    assert with_client_id == set(APP_DATA_TABLES)
