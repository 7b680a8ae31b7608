"""The PostgreSQL backend in particular, on real clusters: migrations (concurrent, from schema 1
with its data), several hub processes on one database, and the server going away mid-ingest."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from apitally_hub import HubServer
from apitally_hub.cli import main
from apitally_hub.config import Retention
from apitally_hub.ingest import folding
from apitally_hub.ingest.worker import FoldingWorker
from apitally_hub.query.service import QueryService
from apitally_hub.query.timewindow import Window
from apitally_hub.storage import create_storage
from apitally_hub.storage.postgres.schema import MIGRATIONS, SCHEMA_VERSION, current_version, migrate, script
from apitally_hub.storage.postgres.store import PostgresStorage
from apitally_hub.storage.records import (
    AppKey,
    AppRecord,
    ConsumerInfo,
    EndpointSetting,
    LogQuery,
    RawMessage,
    Segment,
    SeriesPoint,
    StoreUnavailable,
    TrafficQuery,
    WriteToken,
)
from apitally_hub.storage.sql import otlp_series
from apitally_hub.storage.sql.apps import APP_DATA_TABLES
from apitally_hub.storage.sql.dialect import POSTGRES
from apitally_hub.storage.sql.endpoint_settings import DDL as ENDPOINT_SETTINGS_DDL
from tests.support.backends import new_postgres_database
from tests.support.hub_samples import (
    BACKFILL_CONSUMERS,
    BACKFILL_EXPECTED,
    BACKFILL_TRAFFIC,
    CONSUMER_ITEM,
    REQUEST_ITEM,
    gzip_lines,
    log_line,
    new_uuid,
    startup,
    sync,
)
from tests.support.pg_cluster import PostgresCluster, free_port

SRC = Path(__file__).resolve().parents[2] / "src"


def _indexes(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT indexname FROM pg_indexes WHERE schemaname = 'public'").fetchall()
        return {row[0] for row in rows}


# -- migrations -------------------------------------------------------------------------------


def test_migrations_on_an_empty_database_and_idempotent(pg_cluster: PostgresCluster) -> None:
    _, url = new_postgres_database(pg_cluster, migrated=False)
    with psycopg.connect(url, autocommit=True) as conn:
        assert current_version(conn) == 0
        assert migrate(conn) == SCHEMA_VERSION == len(MIGRATIONS) >= 2
        before = _indexes(url)
        assert migrate(conn) == SCHEMA_VERSION
        assert conn.execute("SELECT COUNT(*) FROM schema_version").fetchone() == (1,)
    assert _indexes(url) == before
    store = PostgresStorage(url)
    assert store.open() == SCHEMA_VERSION and store.schema_version() == SCHEMA_VERSION
    store.close()
    store.close()  # safe twice


def test_concurrent_migrations_do_not_race(pg_cluster: PostgresCluster) -> None:
    _, url = new_postgres_database(pg_cluster, migrated=False)
    stores = [PostgresStorage(url) for _ in range(4)]
    with ThreadPoolExecutor(len(stores)) as pool:
        versions = list(pool.map(lambda store: store.open(), stores))
    for store in stores:
        store.close()
    assert versions == [SCHEMA_VERSION] * len(stores)


def test_failed_migration_rolls_back_and_releases_the_lock(pg_cluster: PostgresCluster) -> None:
    _, url = new_postgres_database(pg_cluster, migrated=False)

    def broken(conn: psycopg.Connection) -> None:
        conn.execute("CREATE TABLE half (x BIGINT)")
        raise RuntimeError("boom")

    with psycopg.connect(url, autocommit=True) as conn:
        with pytest.raises(RuntimeError, match="boom"):
            migrate(conn, (script("CREATE TABLE one (x BIGINT)"), broken))
        assert current_version(conn) == 1
        assert conn.execute("SELECT to_regclass('half')").fetchone() == (None,)
    with psycopg.connect(url, autocommit=True) as other:  # the advisory lock was released
        assert other.execute("SELECT pg_try_advisory_lock(1)").fetchone() == (True,)
        assert migrate(other, (script("CREATE TABLE one (x BIGINT)"),)) == 1


def test_newer_schema_is_refused_and_the_hub_does_not_start(pg_cluster: PostgresCluster) -> None:
    _, url = new_postgres_database(pg_cluster)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("UPDATE schema_version SET version = 999")
    with pytest.raises(RuntimeError, match="newer"):
        PostgresStorage(url).open()
    with pytest.raises(RuntimeError, match="did not start"):
        HubServer(url, startup_timeout=5).start()


def test_the_url_never_shows_the_password(pg_cluster: PostgresCluster) -> None:
    _, url = new_postgres_database(pg_cluster)
    secret = url.replace("apitally@", "apitally:s3cret-pw@")  # trust auth: the password is not checked
    store = create_storage(secret)
    assert store.url == url.replace("apitally@", "apitally:***@") and "s3cret" not in store.url
    store.open()
    store.close()


def test_hub_migrate_command_on_postgres(
    pg_cluster: PostgresCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    _, url = new_postgres_database(pg_cluster, migrated=False)
    secret = url.replace("apitally@", "apitally:pw@")
    assert main(["hub", "migrate", "--db", secret]) == 0
    out = capsys.readouterr().out
    assert f"schema version {SCHEMA_VERSION}" in out and ":pw@" not in out
    assert main(["hub", "migrate", "--db", secret]) == 0  # nothing left to do
    assert main(["hub", "migrate", "--db", f"postgresql://apitally:pw@127.0.0.1:{free_port()}/x"]) == 1
    err = capsys.readouterr().err
    assert "error: cannot migrate" in err and ":pw@" not in err


def test_merge_bins_adds_and_saturates_at_2_53(pg_cluster: PostgresCluster) -> None:
    _, url = new_postgres_database(pg_cluster)
    with psycopg.connect(url) as conn:
        [(merged,)] = conn.execute("""SELECT merge_bins('{"0": 1, "20": 2}', '{"20": 3, "10": 1}')""")
        assert merged == {"0": 1, "10": 1, "20": 5}
        [(capped,)] = conn.execute("SELECT merge_bins(%s, %s)", (json.dumps({"5": 2**53 - 1}),) * 2)
        assert capped == {"5": 2**53}
        assert conn.execute("SELECT merge_bins(NULL, '{}')").fetchone() == ({},)


T0 = 1_795_000_000.0


def _raw(message: dict[str, Any], app: AppKey, kind: str = "sync") -> RawMessage:
    body = folding.encode_json_body(json.dumps(message).encode())
    count = folding.item_count(message) if kind == "sync" else 1
    return RawMessage(app, kind, message["message_uuid"], message["instance_uuid"], T0, body, "zlib", count)  # type: ignore[arg-type]


def _answers(store: PostgresStorage, app: AppKey) -> dict[str, Any]:
    queries = QueryService(store, Retention(minutes=3650).by_resolution, clock=lambda: T0 + 3600)
    window = Window(T0 - 60, T0 + 600)
    apdex_ms = 500  # the default threshold, given: a schema-1 store has no app settings to read it from
    return {
        "endpoints": queries.endpoints(app, window, apdex_ms=apdex_ms),
        "timeseries": queries.timeseries(app, window, bucket_seconds=60, apdex_ms=apdex_ms),
        "consumers": queries.consumers(app, window),
        "validation": queries.validation_errors(app, window),
        "server": queries.server_errors(app, window),
        "instances": queries.instances(app),
        "requests": queries.request_log(LogQuery(app, T0 - 60, T0 + 600)),
        "uptime": queries.heartbeats(app, window),
    }


def test_a_schema_1_database_keeps_all_its_data(pg_cluster: PostgresCluster) -> None:
    """A database filled by the schema-1 hub (tables without the v2 indexes) answers every query
    the same after the upgrade, and resends of what it stored are still recognised."""
    _, url = new_postgres_database(pg_cluster, migrated=False)
    app = AppKey(new_uuid(), "prod")
    instance = new_uuid()
    old = PostgresStorage(url, migrations=MIGRATIONS[:1])
    assert old.open() == 1
    messages = [startup(instance)]
    for minute in range(5):
        items = [{**REQUEST_ITEM, "consumer": f"c{minute % 2}"}, {**REQUEST_ITEM, "status_code": 500}]
        at = T0 + minute * 60 + 1
        messages.append(sync(instance_uuid=instance, timestamp=at, requests=items, consumers=[CONSUMER_ITEM]))
    for message in messages:
        assert old.enqueue(_raw(message, app, "startup" if "paths" in message else "sync"))
    lines = [log_line(timestamp=T0 + 5) for _ in range(3)]
    log_uuid = new_uuid()
    body = gzip_lines(lines)
    assert old.enqueue(RawMessage(app, "log", log_uuid, None, T0, body, "gzip", len(lines)))
    # this hub's code reads what schemas 7 and 9 add (consumers' columns, endpoint settings, OTLP
    # series): there
    # while it folds and answers, dropped again before the upgrade (then the schema-1 hub's)
    added = ("override_name", "override_group", "overridden_at")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("ALTER TABLE request_log ADD COLUMN client_ip TEXT")  # and what schema 8 adds
        for column in added:
            conn.execute(f"ALTER TABLE consumers ADD COLUMN {column} TEXT")
        for statement in (*ENDPOINT_SETTINGS_DDL, *otlp_series.ddl(POSTGRES)):  # and schema 9's
            conn.execute(statement)
    FoldingWorker(old).drain()
    before = _answers(old, app)
    old.close()
    with psycopg.connect(url, autocommit=True) as conn:
        for column in added:
            conn.execute(f"ALTER TABLE consumers DROP COLUMN {column}")
        conn.execute("DROP TABLE endpoint_settings")
        conn.execute("DROP TABLE otlp_series")
        conn.execute("ALTER TABLE request_log DROP COLUMN client_ip")
    assert "queue_pending" not in _indexes(url)

    store = PostgresStorage(url)
    assert store.open() == SCHEMA_VERSION
    try:
        assert {"queue_pending", "request_log_by_app", "consumer_traffic_consumer"} <= _indexes(url)
        assert _answers(store, app) == before
        assert before["endpoints"]["endpoints"][0]["requests"] == 5 * 84
        assert before["requests"]["total"] == 3
        assert store.enqueue(_raw(messages[1], app)) is False
        assert store.enqueue(RawMessage(app, "log", log_uuid, None, T0, body, "gzip", 3)) is False
        assert store.queue_stats().folded == len(messages) + 1
    finally:
        store.close()


def test_schema_5_fills_the_group_traffic_from_the_consumer_rows(pg_cluster: PostgresCluster) -> None:
    _, url = new_postgres_database(pg_cluster, migrated=False)
    old = PostgresStorage(url, migrations=MIGRATIONS[:4])
    assert old.open() == 4
    old.close()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.cursor().executemany(
            "INSERT INTO consumers (client_id, env, identifier, group_name, first_seen, last_seen)"
            " VALUES ('c', 'prod', %s, %s, 0, 0)",
            BACKFILL_CONSUMERS,
        )
        conn.cursor().executemany(
            "INSERT INTO consumer_traffic VALUES ('c', 'prod', %s, %s, %s, 'GET', %s, %s, %s, %s, %s, '{}')",
            BACKFILL_TRAFFIC,
        )
        assert migrate(conn) == SCHEMA_VERSION
        rows = conn.execute("SELECT * FROM group_traffic ORDER BY resolution, status_code").fetchall()
    assert rows == BACKFILL_EXPECTED


def test_schema_6_adds_the_apps_registry_to_a_database_with_data(pg_cluster: PostgresCluster) -> None:
    _, url = new_postgres_database(pg_cluster, migrated=False)
    old = PostgresStorage(url, migrations=MIGRATIONS[:5])
    assert old.open() == 5
    old.close()
    client_id = new_uuid()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO instances (client_id, env, instance_uuid, first_seen, last_seen, last_sync_at,"
            " syncs)"
            " VALUES (%s, 'prod', %s, 100, 200, 200, 3)",
            (client_id, new_uuid()),
        )
        conn.execute(
            "INSERT INTO endpoint_traffic VALUES (%s, 'prod', 60, 120, 'GET', '/a', 200, 5, 0, 0,"
            " '{}', '{}', '{}')",
            (client_id,),
        )
    store = PostgresStorage(url)
    try:
        assert store.open() == SCHEMA_VERSION >= 6
        assert store.app_records() == []
        [info] = store.list_apps()  # the app that reported before stays, unnamed
        assert info.app == AppKey(client_id, "prod") and info.instances == 1
        store.put_app(AppRecord(client_id, "Shop", "fastapi", ("prod", "dev"), 300, 300))
        assert store.app_record(client_id) == AppRecord(
            client_id, "Shop", "fastapi", ("prod", "dev"), 300, 300
        )
        assert store.delete_app(client_id) == {"instances": 1, "endpoint_traffic": 1, "apps": 1}
        tables = store.read(
            lambda tx: tx.execute(
                "SELECT table_name FROM information_schema.columns"
                " WHERE column_name = 'client_id' AND table_schema = current_schema()"
            ).fetchall()
        )
        assert {row[0] for row in tables} == set(APP_DATA_TABLES)
    finally:
        store.close()


def test_schema_8_adds_the_client_ip_to_a_request_log_with_data(pg_cluster: PostgresCluster) -> None:
    _, url = new_postgres_database(pg_cluster, migrated=False)
    old = PostgresStorage(url, migrations=MIGRATIONS[:7])
    assert old.open() == 7
    old.close()
    app = AppKey(new_uuid(), "prod")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO request_log (client_id, env, file_uuid, request_uuid, timestamp, method, path, url,"
            " status_code, response_time, item) VALUES (%s, 'prod', %s, %s, %s, 'GET', '/a', 'http://h/a',"
            " 200, 0.1, '{}')",
            (app.client_id, new_uuid(), new_uuid(), T0),
        )
    store = PostgresStorage(url)
    try:
        assert store.open() == SCHEMA_VERSION >= 8
        window = LogQuery(app, T0 - 60, T0 + 600)
        assert store.request_log(window)[1] == 1  # the old item stays, without an address
        line = log_line(timestamp=T0 + 5)
        line["request"]["client_ip"] = "203.0.113.9"
        assert store.enqueue(RawMessage(app, "log", new_uuid(), None, T0, gzip_lines([line]), "gzip", 1))
        FoldingWorker(store).drain()
        found, total = store.request_log(replace(window, client_ip="203.0.113.9"))
        assert total == 1 and [s.request_uuid for s in found] == [line["uuid"]]
        assert store.request_log(window)[1] == 2
    finally:
        store.close()


def test_schema_9_adds_write_tokens_and_series_to_a_database_with_apps(pg_cluster: PostgresCluster) -> None:
    _, url = new_postgres_database(pg_cluster, migrated=False)
    old = PostgresStorage(url, migrations=MIGRATIONS[:8])
    assert old.open() == 8
    old.close()
    named, reported = new_uuid(), new_uuid()
    app = AppKey(named, "prod")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO apps (client_id, name, framework, envs, created_at, updated_at)"
            " VALUES (%s, 'Shop', 'fastapi', '[\"prod\"]', 100, 100)",
            (named,),
        )
        conn.execute(
            "INSERT INTO instances (client_id, env, instance_uuid, first_seen, last_seen, syncs)"
            " VALUES (%s, 'prod', %s, 100, 200, 3)",
            (reported, new_uuid()),
        )
    store = PostgresStorage(url)
    try:
        assert store.open() == SCHEMA_VERSION >= 9
        [token] = store.write_tokens(named)
        assert WriteToken.is_well_formed(token.token) and token.revoked_at is None
        assert store.app_for_write_token(token.token) == named
        assert store.write_tokens(reported) == []
        assert store.swap_series(app, "i1", [SeriesPoint("a", 1, 2, "3")], 300) == {}
        assert store.swap_series(app, "i1", [SeriesPoint("a", 1, 4, "5")], 300) == {
            "a": SeriesPoint("a", 1, 2, "3")
        }
        assert store.delete_app(named) == {"apps": 1, "write_tokens": 1, "otlp_series": 1}
        assert {"write_tokens_client", "otlp_series_updated_at"} <= _indexes(url)
    finally:
        store.close()


# -- several hub processes on one database ----------------------------------------------------


class HubProcess:
    """``python -m apitally_hub.cli hub --db URL --port 0`` in a subprocess."""

    def __init__(self, db: str) -> None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
        argv = [sys.executable, "-m", "apitally_hub.cli", "hub", "--port", "0", "--db", db]
        self.process = subprocess.Popen(
            [*argv, "--log-level", "warning"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.url = ""
        self.pid = self.process.pid

    def wait_ready(self, timeout: float = 20.0) -> HubProcess:
        assert self.process.stdout is not None
        first = self.process.stdout.readline()
        if "listening on " not in first:
            raise RuntimeError(f"the hub did not start: {first}{self.output()}")
        self.url = first.split("listening on ", 1)[1].split()[0]
        deadline = time.monotonic() + timeout
        with httpx.Client(base_url=self.url, timeout=5) as http:
            while True:
                try:
                    if http.get("/health").status_code == 200:
                        return self
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "the hub did not answer /health"
                time.sleep(0.05)

    def output(self) -> str:
        self.stop()
        assert self.process.stderr is not None
        return self.process.stderr.read()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(2)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def close(self) -> None:
        self.stop()
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def two_hubs(pg_cluster: PostgresCluster) -> Iterator[tuple[str, list[HubProcess]]]:
    """Two hub processes started at the same moment on one new, empty database."""
    _, url = new_postgres_database(pg_cluster, migrated=False)
    hubs = [HubProcess(url) for _ in range(2)]
    try:
        yield url, [hub.wait_ready() for hub in hubs]
    finally:
        for hub in hubs:
            hub.close()


def _settled(hubs: list[HubProcess], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=5) as http:
        while any(http.get(f"{hub.url}/health").json()["queue"]["pending"] for hub in hubs):
            assert time.monotonic() < deadline, "messages still pending"
            time.sleep(0.05)


def test_two_processes_share_one_database(two_hubs: tuple[str, list[HubProcess]]) -> None:
    url, hubs = two_hubs
    client_id = new_uuid()
    path = f"/v2/{client_id}/prod/sync"
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT version FROM schema_version").fetchone() == (SCHEMA_VERSION,)
        # both ran their start-up pruning; the lease let one of them do it
        [(holder,)] = conn.execute("SELECT holder FROM leases WHERE name = 'prune'")
    assert int(holder.split("-")[0]) in {hub.pid for hub in hubs}

    with httpx.Client(timeout=10) as http:
        # the same message to both at once: stored once, whichever process commits first
        for _ in range(5):
            message = sync()
            barrier = threading.Barrier(2)

            def post(hub: HubProcess, message: Any = message, barrier: Any = barrier) -> int:
                barrier.wait()
                return http.post(hub.url + path, json=message).status_code

            with ThreadPoolExecutor(2) as pool:
                assert sorted(pool.map(post, hubs)) == [200, 202]
        # distinct messages spread over both: each folded exactly once by one of the two workers
        messages = [sync(timestamp=time.time()) for _ in range(60)]

        def send(index: int) -> int:
            return http.post(hubs[index % 2].url + path, json=messages[index]).status_code

        with ThreadPoolExecutor(4) as pool:
            assert Counter(pool.map(send, range(len(messages)))) == {202: len(messages)}
        _settled(hubs)
        for hub in hubs:
            [endpoint] = http.get(f"{hub.url}/api/{client_id}/prod/endpoints", params={"since": "1d"}).json()[
                "endpoints"
            ]
            assert endpoint["requests"] == 42 * (5 + len(messages))
            instances = http.get(f"{hub.url}/api/{client_id}/prod/instances").json()["instances"]
            assert len(instances) == 5 + len(messages)
    outputs = [hub.output() for hub in hubs]
    assert all("Traceback" not in output for output in outputs), outputs


# -- faults: the server goes away mid-ingest --------------------------------------------------


@pytest.fixture
def own_cluster() -> Iterator[PostgresCluster]:
    """A cluster of this test's own (it is stopped and restarted); commits are durable, so what
    was acknowledged survives an immediate shutdown."""
    with PostgresCluster(settings={"fsync": "off"}) as cluster:
        yield cluster


def test_server_going_away_mid_ingest_is_503_and_the_hub_reconnects(own_cluster: PostgresCluster) -> None:
    url = own_cluster.create_database("hub")
    client_id = new_uuid()
    path = f"/v2/{client_id}/prod/sync"
    statuses: Counter[int] = Counter()
    acknowledged: set[str] = set()
    stop = threading.Event()
    failures: list[str] = []

    def client(http: httpx.Client) -> None:
        """Sends new messages, each until it gets a 2xx (as the real client does on 503)."""
        while not stop.is_set():
            message = sync(requests=[REQUEST_ITEM], validation_errors=[], server_errors=[], consumers=[])
            while not stop.is_set():
                try:
                    response = http.post(path, json=message)
                except httpx.TransportError as exc:
                    failures.append(repr(exc))
                    return
                statuses[response.status_code] += 1
                if response.status_code in (200, 202):
                    acknowledged.add(message["message_uuid"])
                    break
                if response.status_code != 503 or "retry-after" not in response.headers:
                    failures.append(f"{response.status_code} {response.headers} {response.text}")
                    return
                time.sleep(0.05)

    with HubServer(url) as hub, httpx.Client(base_url=hub.url, timeout=30) as http:
        senders = [threading.Thread(target=client, args=(http,)) for _ in range(3)]
        for sender in senders:
            sender.start()
        try:
            time.sleep(0.5)
            for _ in range(3):  # the server drops every connection of the hub, mid-transaction
                assert own_cluster.terminate_backends("hub") > 0
                time.sleep(0.3)
            own_cluster.stop(immediate=True)  # gone (as in a crash), for a while
            down = http.get("/health")
            assert down.status_code == 503 and down.json()["status"] == "store unavailable"
            time.sleep(1.0)
            own_cluster.start()  # back, same port: the pools reconnect by themselves
            deadline = time.monotonic() + 30
            while http.get("/health").status_code != 200:
                assert time.monotonic() < deadline, "the hub did not reconnect"
                time.sleep(0.1)
            served = statuses[202]
            while statuses[202] < served + 20:
                assert time.monotonic() < deadline, "ingest did not resume"
                time.sleep(0.05)
        finally:
            stop.set()
            for sender in senders:
                sender.join(30)
        assert failures == []
        assert statuses[503] > 0 and set(statuses) <= {200, 202, 503}, statuses
        hub.settle(timeout=30)
        [endpoint] = hub.query(client_id, "prod", "endpoints", since="1d")["endpoints"]
        # every acknowledged message is counted, once; no 2xx was given for an uncommitted one
        assert endpoint["requests"] == 42 * len(acknowledged)


def test_store_errors_while_the_server_is_down(own_cluster: PostgresCluster) -> None:
    url = own_cluster.create_database("hub")
    store = PostgresStorage(url, timeout=1.0)
    store.open()
    try:
        own_cluster.stop()
        started = time.monotonic()
        with pytest.raises(StoreUnavailable):
            store.queue_stats()
        assert time.monotonic() - started < 5
        own_cluster.start()
        deadline = time.monotonic() + 30
        while True:
            try:
                assert store.queue_stats().pending == 0
                break
            except StoreUnavailable:
                assert time.monotonic() < deadline, "no reconnection"
                time.sleep(0.1)
    finally:
        store.close()


def test_schema_7_adds_consumer_names_and_endpoint_settings_to_a_database_with_data(
    pg_cluster: PostgresCluster,
) -> None:
    _, url = new_postgres_database(pg_cluster, migrated=False)
    old = PostgresStorage(url, migrations=MIGRATIONS[:6])
    assert old.open() == 6
    old.close()
    client_id = new_uuid()
    app = AppKey(client_id, "prod")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO consumers (client_id, env, identifier, name, group_name, first_seen, last_seen)"
            " VALUES (%s, 'prod', 'c1', 'One', 'Gold', 100, 200)",
            (client_id,),
        )
        conn.execute(
            "INSERT INTO consumer_traffic (client_id, env, resolution, bucket, consumer, method, path,"
            " status_code, request_count, request_size_sum, response_size_sum, response_times)"
            " VALUES (%s, 'prod', 60, 120, 'c1', 'GET', '/a', 200, 5, 50, 500, '{}')",
            (client_id,),
        )
        conn.execute(
            "INSERT INTO group_traffic VALUES (%s, 'prod', 60, 120, 'Gold', 200, 5, 50, 500)", (client_id,)
        )
    store = PostgresStorage(url)
    try:
        assert store.open() == SCHEMA_VERSION >= 7
        assert store.consumers_info(app, ["c1"])["c1"] == ConsumerInfo(
            "c1", "One", "Gold", 100, 200, "One", "Gold"
        )
        moved = store.set_consumer_overrides(app, "c1", name=None, group="Silver", now=300)
        assert moved == ConsumerInfo("c1", "One", "Silver", 100, 200, "One", "Gold", None, "Silver")
        assert store.consumer_groups(app) == [("Silver", 1)]
        rows = store.traffic(TrafficQuery(app, (Segment(60, 120, 120),), ("consumer_group",)))
        assert [(r.key, r.request_count, r.response_size_sum) for r in rows] == [(("Silver",), 5, 500)]
        assert store.endpoint_settings(app) == []
        store.put_endpoint_setting(app, EndpointSetting("GET", "/a", 100, True, 300))
        assert store.endpoint_settings(app) == [EndpointSetting("GET", "/a", 100, True, 300)]
    finally:
        store.close()
