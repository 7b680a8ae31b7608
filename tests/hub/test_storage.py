"""The storage conformance suite: every backend (the ``store`` fixture is parametrized over them)
must pass it. Queue and deduplication, exactly-once folding with chunks and leases, rollups that
agree with the minutes they cover, retention per tier, and restarts."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from apitally_hub.config import Retention
from apitally_hub.ingest import folding
from apitally_hub.ingest.worker import FoldingWorker
from apitally_hub.query import planner
from apitally_hub.query.percentiles import percentiles
from apitally_hub.storage.alert_records import ChannelRecord, RuleRecord
from apitally_hub.storage.base import Storage
from apitally_hub.storage.records import (
    DAY,
    HOUR,
    MINUTE,
    AppKey,
    AppRecord,
    ClaimLost,
    ConsumerInfo,
    EndpointSetting,
    EventQuery,
    FoldProgress,
    LogQuery,
    RawMessage,
    Rejection,
    Segment,
    TrafficFilter,
    TrafficQuery,
)
from apitally_hub.storage.sql.apps import APP_DATA_TABLES
from apitally_hub.storage.sql.store import SQLStorage
from apitally_hub.storage.sql.tx import Tx
from tests.support.hub_samples import (
    REQUEST_ITEM,
    SERVER_ERROR_ITEM,
    VALIDATION_ERROR_ITEM,
    gzip_lines,
    log_line,
    new_uuid,
    sync,
)

APP = AppKey("c0ffee00-0000-4000-8000-000000000001", "prod")
T0 = 1_795_000_000 // DAY * DAY  # a UTC midnight
WIDE = Retention(minutes=10_000, hours=10_000, days=10_000).by_resolution


def raw_sync(message: dict[str, Any], app: AppKey = APP, received_at: float | None = None) -> RawMessage:
    body = folding.encode_json_body(json.dumps(message).encode())
    received = message["timestamp"] if received_at is None else received_at
    return RawMessage(
        app,
        "sync",
        message["message_uuid"],
        message["instance_uuid"],
        received,
        body,
        "zlib",
        folding.item_count(message),
    )


def fold(store: Storage, **options: Any) -> FoldingWorker:
    worker = FoldingWorker(store, **options)
    worker.drain()
    return worker


def totals(store: Storage, segments: tuple[Segment, ...], **query: Any) -> list[Any]:
    return store.traffic(TrafficQuery(APP, segments, **query))


def request_item(**changes: Any) -> dict[str, Any]:
    return {**REQUEST_ITEM, **changes}


# -- queue ------------------------------------------------------------------------------------


def test_enqueue_deduplicates_by_app_kind_and_uuid(store: Storage) -> None:
    message = sync(timestamp=T0)
    assert store.enqueue(raw_sync(message)) is True
    assert store.enqueue(raw_sync(message)) is False
    assert store.enqueue(raw_sync(message, AppKey(APP.client_id, "other"))) is False  # uuid is per client
    assert store.enqueue(raw_sync(message, AppKey(new_uuid(), "prod"))) is True
    stats = store.queue_stats()
    assert (stats.pending, stats.oldest_received_at) == (2, T0)


def test_a_folded_message_is_counted_once_also_when_resent(store: Storage) -> None:
    message = sync(timestamp=T0 + 5)
    store.enqueue(raw_sync(message))
    fold(store)
    assert store.enqueue(raw_sync(message)) is False
    fold(store)
    [row] = totals(store, (Segment(MINUTE, T0, T0),))
    assert row.request_count == 42
    assert store.queue_stats().pending == 0


def test_fold_writes_every_resolution_and_all_kinds(store: Storage) -> None:
    ts = T0 + 3 * HOUR + 7 * MINUTE + 1
    message = sync(timestamp=ts)
    store.enqueue(raw_sync(message))
    fold(store)
    for resolution in (MINUTE, HOUR, DAY):
        bucket = int(ts // resolution) * resolution
        [row] = totals(
            store,
            (Segment(resolution, bucket, bucket),),
            group_by=("method", "path", "status_code"),
            response_times=True,
            sizes=True,
        )
        assert row.key == ("GET", "/api/items/{item_id}", 200)
        assert (row.request_count, row.request_size_sum, row.response_size_sum) == (42, 30123, 67890)
        assert row.response_times == {0: 30, 10: 9, 120: 3}
        assert (row.request_sizes, row.response_sizes) == ({0: 40, 12: 2}, {1: 42})
    segments = (Segment(HOUR, T0 + 3 * HOUR, T0 + 3 * HOUR),)
    [by_consumer] = totals(store, segments, group_by=("consumer",))
    assert (by_consumer.key, by_consumer.request_count) == (("acme",), 42)
    validation, total = store.validation_errors(EventQuery(APP, segments))
    assert total == 1 and (validation[0].loc, validation[0].count) == ('["query","foo"]', 3)
    server, total = store.server_errors(EventQuery(APP, segments))
    assert total == 1 and (server[0].type, server[0].count, server[0].traceback) == (
        "builtins.ValueError",
        1,
        SERVER_ERROR_ITEM["traceback"],
    )
    [instance] = store.instances(APP)
    assert (instance.instance_uuid, instance.syncs, instance.cpu_percent) == (
        message["instance_uuid"],
        1,
        3.2,
    )
    assert store.heartbeats(APP, T0, T0 + DAY) == [(int(ts // 60) * 60, 1)]
    info = store.consumers_info(APP, ["acme-corp"])["acme-corp"]
    assert (info.name, info.group) == ("Acme Corp", "Enterprise")


def test_aggregates_sum_across_instances_within_a_bucket(store: Storage) -> None:
    for offset, instance in ((1, new_uuid()), (11, new_uuid()), (61, new_uuid())):
        store.enqueue(raw_sync(sync(instance_uuid=instance, timestamp=T0 + offset)))
    fold(store)
    rows = totals(store, (Segment(MINUTE, T0, T0 + 60),), group_by=("bucket",), response_times=True)
    assert [(r.key, r.request_count, r.response_times) for r in rows] == [
        ((T0,), 84, {0: 60, 10: 18, 120: 6}),
        ((T0 + 60,), 42, {0: 30, 10: 9, 120: 3}),
    ]
    [hour] = totals(store, (Segment(HOUR, T0, T0),))
    assert hour.request_count == 126


def test_counters_saturate_instead_of_overflowing(store: Storage) -> None:
    huge = request_item(
        request_count=2**53 - 1,
        response_times={"0": 2**53 - 1},
        request_sizes={},
        response_sizes={},
        request_size_sum=0,
        response_size_sum=0,
    )
    for second in range(3):
        store.enqueue(
            raw_sync(
                sync(
                    timestamp=T0 + second,
                    requests=[huge],
                    validation_errors=[{**VALIDATION_ERROR_ITEM, "error_count": 2**53 - 1}],
                )
            )
        )
    fold(store)
    [row] = totals(store, (Segment(MINUTE, T0, T0),))
    assert row.request_count == 2**53
    rows, _ = store.validation_errors(EventQuery(APP, (Segment(MINUTE, T0, T0), Segment(HOUR, T0, T0))))
    assert rows[0].count >= 2**53  # two rows, each saturated: the sum is exact, no overflow error


def test_one_batch_infers_the_sync_interval_as_one_by_one_folding_does(store: Storage) -> None:
    instance = new_uuid()
    for offset in (0.0, 10.0, 9.5):  # the last one is a late resend of an older sync
        store.enqueue(raw_sync(sync(instance_uuid=instance, timestamp=T0 + offset)))
    fold(store)  # one claim, one apply
    [info] = store.instances(APP)
    assert (info.sync_interval, info.last_sync_ts, info.syncs) == (10.0, T0 + 10.0, 3)


# -- folding: chunks, claims, several workers -------------------------------------------------


def test_a_big_sync_is_applied_in_chunks_and_counted_once(store: Storage) -> None:
    requests = [request_item(path=f"/api/r{i}", consumer=f"c{i % 7}") for i in range(250)]
    message = sync(timestamp=T0 + 1, requests=requests, validation_errors=[], server_errors=[])
    store.enqueue(raw_sync(message))
    fold(store, chunk_items=40)
    rows = totals(store, (Segment(MINUTE, T0, T0),), group_by=("path",))
    assert len(rows) == 250 and {r.request_count for r in rows} == {42}
    assert store.queue_stats().pending == 0
    [instance] = store.instances(APP)
    assert instance.syncs == 1  # the heartbeat is folded with the first chunk only


def test_an_apply_after_a_lost_claim_writes_nothing(store: Storage) -> None:
    store.enqueue(raw_sync(sync(timestamp=T0 + 1)))
    [claimed] = store.claim("slow", limit=10, lease_seconds=0.0, now=T0)
    # the lease expired: another worker claims and folds the message
    assert len(store.claim("fast", limit=10, lease_seconds=60.0, now=T0 + 1)) == 1
    fast = FoldingWorker(store)
    fast.name = "fast"
    fast.drain()
    message = claimed.message
    progress = [FoldProgress(message.app, message.kind, message.message_uuid, 0, message.item_count, True)]
    with pytest.raises(ClaimLost):
        store.apply("slow", {}, progress)
    [row] = totals(store, (Segment(MINUTE, T0, T0),))
    assert row.request_count == 42


def test_concurrent_workers_fold_each_message_exactly_once(store: Storage) -> None:
    instances = [new_uuid() for _ in range(8)]
    for n in range(200):
        message = sync(
            instance_uuid=instances[n % 8],
            timestamp=T0 + n,
            consumers=[],
            validation_errors=[],
            server_errors=[],
        )
        store.enqueue(raw_sync(message))
    workers = [FoldingWorker(store, claim_limit=7, chunk_items=5) for _ in range(3)]
    errors: list[BaseException] = []

    def run(worker: FoldingWorker) -> None:
        try:
            worker.drain(timeout=60)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(w,)) for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    [row] = totals(store, (Segment(DAY, T0, T0),))
    assert row.request_count == 200 * 42
    assert sum(i.syncs for i in store.instances(APP)) == 200
    assert sum(n for _, n in store.heartbeats(APP, T0, T0 + DAY)) == 200


def test_a_message_that_cannot_be_folded_does_not_block_the_queue(store: Storage) -> None:
    broken = RawMessage(APP, "sync", new_uuid(), new_uuid(), T0, b"not zlib", "zlib", 1)
    store.enqueue(broken)
    store.enqueue(raw_sync(sync(timestamp=T0 + 1)))
    fold(store)
    stats = store.queue_stats()
    assert (stats.pending, stats.failed) == (0, 1)
    [row] = totals(store, (Segment(MINUTE, T0, T0),))
    assert row.request_count == 42


# -- rollups ----------------------------------------------------------------------------------


def test_percentiles_from_a_rollup_equal_those_from_its_minutes(store: Storage) -> None:
    times = [{"0": 5, "30": 2}, {"10": 1, "990": 1}, {"20": 9}, {"120": 3, "10": 4}, {"2500": 1}]
    for index, bins in enumerate(times * 30):
        ts = T0 + index * 97  # spread over several hours, many minutes
        item = request_item(
            request_count=sum(bins.values()), response_times=bins, request_sizes={}, response_sizes={}
        )
        store.enqueue(raw_sync(sync(timestamp=ts, requests=[item], consumers=[])))
    fold(store)
    last_minute = int((T0 + 149 * 97) // 60) * 60
    minutes = totals(store, (Segment(MINUTE, T0, last_minute),), response_times=True)
    hours = totals(store, (Segment(HOUR, T0, int(last_minute // HOUR) * HOUR),), response_times=True)
    days = totals(store, (Segment(DAY, T0, T0),), response_times=True)
    assert minutes[0].response_times == hours[0].response_times == days[0].response_times
    ps = (50, 75, 90, 95, 99, 99.9)
    assert percentiles(minutes[0].response_times, ps) == percentiles(days[0].response_times, ps)
    expected = 30 * sum(sum(b.values()) for b in times)
    assert minutes[0].request_count == hours[0].request_count == days[0].request_count == expected


def test_a_planned_summary_equals_the_sum_of_its_minutes(store: Storage) -> None:
    # traffic every 7 minutes for three days; a window with ragged edges around one whole day
    for n in range(0, 3 * 24 * 60, 7):
        store.enqueue(
            raw_sync(sync(timestamp=T0 + n * 60 + 3, consumers=[], validation_errors=[], server_errors=[]))
        )
    fold(store)
    since, until = T0 + 5 * HOUR + 17 * MINUTE + 30, T0 + 2 * DAY + 20 * HOUR + 3 * MINUTE
    segments = planner.summary_segments(since, until, T0 + 3 * DAY, WIDE)
    assert [s.resolution for s in segments] == [MINUTE, HOUR, DAY, HOUR, MINUTE]
    planned = totals(store, segments, response_times=True)[0]
    minute_rows = totals(
        store, (Segment(MINUTE, int(since // 60) * 60, int(until // 60) * 60),), response_times=True
    )[0]
    assert (planned.request_count, planned.response_times) == (
        minute_rows.request_count,
        minute_rows.response_times,
    )
    assert planned.request_count > 0


def test_app_wide_traffic_equals_the_sum_of_its_endpoints(store: Storage) -> None:
    """App-wide charts and totals read per-app rows: they must agree with the endpoint rows."""
    for n in range(6):
        requests = [
            request_item(path=f"/api/p{i}", status_code=(200, 404, 500)[(n + i) % 3], request_count=n + i + 1)
            for i in range(4)
        ]
        store.enqueue(raw_sync(sync(timestamp=T0 + n * 40, requests=requests)))
    fold(store)
    for segments in ((Segment(MINUTE, T0, T0 + 5 * MINUTE),), (Segment(HOUR, T0, T0),)):
        app_wide = totals(
            store, segments, group_by=("bucket", "status_code"), response_times=True, sizes=True
        )
        summed: dict[tuple[Any, ...], list[Any]] = {}
        for row in totals(
            store,
            segments,
            group_by=("bucket", "method", "path", "status_code"),
            response_times=True,
            sizes=True,
        ):
            entry = summed.setdefault((row.key[0], row.key[3]), [0, 0, 0, {}, {}])
            entry[0] += row.request_count
            entry[1] += row.server_errors
            entry[2] += row.response_size_sum
            for target, bins in ((entry[3], row.response_times), (entry[4], row.request_sizes)):
                for edge, count in bins.items():
                    target[edge] = target.get(edge, 0) + count
        assert {
            r.key: [r.request_count, r.server_errors, r.response_size_sum, r.response_times, r.request_sizes]
            for r in app_wide
        } == summed
        assert len(summed) > 1


def test_filters_by_consumer_group_status_and_endpoint(store: Storage) -> None:
    requests = [
        request_item(consumer="a"),
        request_item(
            consumer="b",
            status_code=500,
            request_count=1,
            response_times={"0": 1},
            request_sizes={},
            response_sizes={},
        ),
        request_item(
            consumer=None,
            path="/other",
            request_count=2,
            response_times={"0": 2},
            request_sizes={},
            response_sizes={},
        ),
    ]
    named = [
        {"identifier": "a", "name": "A", "group": "Gold"},
        {"identifier": "b", "name": None, "group": "Free"},
    ]
    store.enqueue(raw_sync(sync(timestamp=T0, requests=requests, consumers=named)))
    fold(store)
    day = (Segment(DAY, T0, T0),)

    def count(**flt: Any) -> int:
        return totals(store, day, filter=TrafficFilter(**flt))[0].request_count

    assert count() == 45
    assert count(consumer_group="Gold") == 42
    assert count(consumer="b") == 1
    assert count(consumer="") == 2
    assert count(identified_only=True) == 43
    assert count(status_class=5) == 1
    assert count(status_code=200, path="/other") == 2
    assert count(method="get", path="/api/items/{item_id}") == 43
    page = store.traffic(
        TrafficQuery(
            APP, day, ("consumer",), TrafficFilter(identified_only=True), order="requests", limit=1, offset=1
        )
    )
    assert [(r.key, r.request_count, r.server_errors) for r in page] == [(("b",), 1, 1)]
    assert store.count_traffic_groups(TrafficQuery(APP, day, ("consumer",))) == 3
    assert store.consumer_groups(APP) == [("Free", 1), ("Gold", 1)]
    by_group = store.traffic(TrafficQuery(APP, day, ("consumer_group",)))
    assert [(r.key, r.request_count, r.server_errors) for r in by_group] == [
        (("Free",), 1, 1),
        (("Gold",), 42, 0),
    ]
    assert by_group[1].request_size_sum == count_bytes(store, day, "Gold")
    with pytest.raises(ValueError):
        store.traffic(TrafficQuery(APP, day, ("consumer_group",), response_times=True))


def count_bytes(store: Storage, segments: tuple[Segment, ...], group: str) -> int:
    [row] = totals(store, segments, filter=TrafficFilter(consumer_group=group))
    return row.request_size_sum


def by_group(store: Storage, segments: tuple[Segment, ...], **flt: Any) -> dict[str, tuple[int, ...]]:
    rows = store.traffic(TrafficQuery(APP, segments, ("consumer_group",), TrafficFilter(**flt)))
    return {
        r.key[0]: (r.request_count, r.client_errors, r.server_errors, r.request_size_sum, r.response_size_sum)
        for r in rows
    }


def small(consumer: str | None, status_code: int = 200, count: int = 1) -> dict[str, Any]:
    return request_item(
        consumer=consumer,
        status_code=status_code,
        request_count=count,
        request_size_sum=10 * count,
        response_size_sum=100 * count,
        response_times={"0": count},
        request_sizes={"0": count},
        response_sizes={"0": count},
    )


def test_group_traffic_counts_each_request_for_the_group_its_consumer_had(store: Storage) -> None:
    named = [
        {"identifier": c, "name": None, "group": g} for c, g in (("a", "Gold"), ("b", "Gold"), ("c", "Free"))
    ]
    first = [small("a", 200, 3), small("b", 404, 2), small("c", 500, 1), small(None, 200, 7), small("d")]
    store.enqueue(raw_sync(sync(timestamp=T0 + 30, requests=first, consumers=named)))
    fold(store)
    # a moves to Free; d (never named) joins Gold; requests an hour later
    moved = [
        {"identifier": "a", "name": None, "group": "Free"},
        {"identifier": "d", "name": None, "group": "Gold"},
    ]
    store.enqueue(
        raw_sync(sync(timestamp=T0 + HOUR + 30, requests=[small("a", 200, 5), small("d")], consumers=moved))
    )
    fold(store)
    minute0, hour1 = (Segment(MINUTE, T0, T0),), (Segment(HOUR, T0 + HOUR, T0 + HOUR),)
    day = (Segment(DAY, T0, T0),)
    assert by_group(store, minute0) == {"Gold": (5, 2, 0, 50, 500), "Free": (1, 0, 1, 10, 100)}
    assert by_group(store, hour1) == {"Gold": (1, 0, 0, 10, 100), "Free": (5, 0, 0, 50, 500)}
    assert by_group(store, day) == {"Gold": (6, 2, 0, 60, 600), "Free": (6, 0, 1, 60, 600)}
    assert by_group(store, day, consumer_group="Free", status_class=5) == {"Free": (1, 0, 1, 10, 100)}
    assert by_group(store, day, status_code=404) == {"Gold": (2, 2, 0, 20, 200)}
    # with an endpoint filter, the members' rows are summed with the groups of now
    path = REQUEST_ITEM["path"]
    assert by_group(store, day, path=path) == {"Gold": (4, 2, 0, 40, 400), "Free": (9, 0, 1, 90, 900)}
    assert by_group(store, ()) == {}


def test_a_consumer_moved_in_the_dashboard_takes_its_traffic_along(store: Storage) -> None:
    named = [{"identifier": c, "name": c.upper(), "group": "Gold"} for c in ("a", "b")]
    first = [small("a", 200, 3), small("a", 500, 1), small("b", 404, 2)]
    store.enqueue(raw_sync(sync(timestamp=T0 + 30, requests=first, consumers=named)))
    fold(store)
    minute0, day = (Segment(MINUTE, T0, T0),), (Segment(DAY, T0, T0),)
    assert by_group(store, day) == {"Gold": (6, 2, 1, 60, 600)}

    moved = store.set_consumer_overrides(APP, "a", name="Alpha", group="Silver", now=T0 + 60)
    assert moved == ConsumerInfo(
        "a", "Alpha", "Silver", moved.first_seen, moved.last_seen, "A", "Gold", "Alpha", "Silver"
    )
    for segments in (minute0, day):
        assert by_group(store, segments) == {"Gold": (2, 2, 0, 20, 200), "Silver": (4, 0, 1, 40, 400)}
    assert by_group(store, day, path=REQUEST_ITEM["path"]) == by_group(store, day)  # the members' rows agree
    assert store.consumer_groups(APP) == [("Gold", 1), ("Silver", 1)]
    assert [i.identifier for i in store.recent_consumers(APP, 0, group="Silver", limit=10, offset=0)[0]] == [
        "a"
    ]
    assert [
        row.request_count for row in totals(store, day, filter=TrafficFilter(consumer_group="Silver"))
    ] == [4]

    # the client names it again and sends more: the dashboard's name and group hold
    again = [{"identifier": "a", "name": "A2", "group": "Gold"}]
    store.enqueue(raw_sync(sync(timestamp=T0 + 40, requests=[small("a", 200, 5)], consumers=again)))
    fold(store)
    info = store.consumers_info(APP, ["a"])["a"]
    assert (info.name, info.group, info.client_name, info.client_group) == ("Alpha", "Silver", "A2", "Gold")
    assert by_group(store, day) == {"Gold": (2, 2, 0, 20, 200), "Silver": (9, 0, 1, 90, 900)}

    # a reset: the client's values, and the traffic back to the client's group
    reset = store.set_consumer_overrides(APP, "a", name=None, group=None, now=T0 + 90)
    assert reset is not None and (reset.name, reset.group, reset.dashboard_group) == ("A2", "Gold", None)
    assert by_group(store, day) == {"Gold": (11, 2, 1, 110, 1100)}
    assert store.set_consumer_overrides(APP, "nobody", name="x", group=None, now=T0) is None
    assert (
        store.set_consumer_overrides(AppKey(APP.client_id, "other"), "a", name="x", group=None, now=T0)
        is None
    )


def test_endpoint_settings_are_kept_per_endpoint_and_excluded_endpoints_left_out(store: Storage) -> None:
    other = AppKey(APP.client_id, "other")
    assert store.endpoint_settings(APP) == []
    store.put_endpoint_setting(APP, EndpointSetting("GET", "/b", 100, False, T0))
    store.put_endpoint_setting(APP, EndpointSetting("POST", "/a", None, True, T0))
    store.put_endpoint_setting(other, EndpointSetting("GET", "/b", 300, True, T0))
    store.put_endpoint_setting(APP, EndpointSetting("GET", "/b", 200, False, T0 + 1))  # replaced
    assert store.endpoint_settings(APP) == [
        EndpointSetting("POST", "/a", None, True, T0),
        EndpointSetting("GET", "/b", 200, False, T0 + 1),
    ]
    store.put_endpoint_setting(APP, EndpointSetting("GET", "/b", None, False, T0 + 2))  # the defaults: gone
    assert [s.path for s in store.endpoint_settings(APP)] == ["/a"]
    assert [s.apdex_ms for s in store.endpoint_settings(other)] == [300]

    requests = [
        small("a", 200, 3),
        request_item(
            path="/x",
            consumer="a",
            status_code=500,
            request_count=2,
            response_times={"0": 2},
            request_sizes={"0": 2},
            response_sizes={"0": 2},
            request_size_sum=0,
            response_size_sum=0,
        ),
    ]
    named = [{"identifier": "a", "name": None, "group": "Gold"}]
    store.enqueue(raw_sync(sync(timestamp=T0 + 30, requests=requests, consumers=named)))
    fold(store)
    day = (Segment(DAY, T0, T0),)
    left_out = TrafficFilter(excluded=(("GET", "/x"),))
    [everything] = totals(store, day)
    [kept] = totals(store, day, filter=left_out)
    assert (everything.request_count, kept.request_count, kept.server_errors) == (5, 3, 0)
    assert [r.request_count for r in totals(store, day, group_by=("bucket",), filter=left_out)] == [3]
    assert [r.request_count for r in totals(store, day, group_by=("consumer",), filter=left_out)] == [3]
    assert by_group(store, day, excluded=(("GET", "/x"),)) == {"Gold": (3, 0, 0, 30, 300)}
    server = sync(timestamp=T0 + 40, requests=[], consumers=[])  # its one server error: POST /api/baz
    store.enqueue(raw_sync(server))
    fold(store)
    events = EventQuery(APP, day, TrafficFilter(), 10, 0)
    assert store.server_errors(events)[1] == 1
    gone = EventQuery(APP, day, TrafficFilter(excluded=(("POST", "/api/baz"),)), 10, 0)
    assert store.server_errors(gone) == ([], 0)
    assert store.delete_app(APP.client_id)["endpoint_settings"] == 2


def test_group_traffic_is_pruned_with_its_tier(store: Storage) -> None:
    now = float(T0 + 100 * DAY)
    old = now - 40 * DAY
    named = [{"identifier": "a", "name": None, "group": "Gold"}]
    store.enqueue(raw_sync(sync(timestamp=old, requests=[small("a")], consumers=named), received_at=old))
    fold(store)
    deleted = store.prune(Retention().policy(), now)
    assert deleted["group_traffic"] == 1  # the minute row; the hour and day rows are kept
    old_hour = int(old // HOUR) * HOUR
    assert by_group(store, (Segment(HOUR, old_hour, old_hour),)) == {"Gold": (1, 0, 0, 10, 100)}
    old_minute = int(old // MINUTE) * MINUTE
    assert by_group(store, (Segment(MINUTE, old_minute, old_minute),)) == {}


# -- request log ------------------------------------------------------------------------------


def test_request_log_files_fold_into_searchable_items(store: Storage) -> None:
    lines = [
        log_line(timestamp=T0 + i, status_code=200 + 100 * (i % 3), url=f"https://h/x/{i}?q=%25_")
        for i in range(12)
    ]
    body = gzip_lines(lines)
    file_uuid = new_uuid()
    assert store.enqueue(RawMessage(APP, "log", file_uuid, None, T0, body, "gzip", len(lines)))
    assert not store.enqueue(RawMessage(APP, "log", file_uuid, None, T0, body, "gzip", len(lines)))
    fold(store, chunk_items=5)
    items, total = store.request_log(LogQuery(APP, T0 - 1, T0 + 100, limit=5))
    assert total == 12 and [i.timestamp for i in items] == [T0 + 11 - i for i in range(5)]
    older, _ = store.request_log(
        LogQuery(APP, T0 - 1, T0 + 100, limit=100, before=(items[-1].timestamp, items[-1].row_id))
    )
    assert [i.timestamp for i in older] == [T0 + 6 - i for i in range(7)]
    assert store.request_log(LogQuery(APP, T0 - 1, T0 + 100, status_class=4))[1] == 4
    assert store.request_log(LogQuery(APP, T0 - 1, T0 + 100, search="x/1"))[1] == 3  # 1, 10, 11
    assert store.request_log(LogQuery(APP, T0 - 1, T0 + 100, search="%25_"))[1] == 12
    assert store.request_log(LogQuery(APP, T0 - 1, T0 + 100, search="%_"))[1] == 0  # not LIKE wildcards
    assert store.request_log(LogQuery(APP, T0 - 1, T0 + 100, search="x_1"))[1] == 0
    found = store.request_log_item(APP, lines[3]["uuid"])
    assert found is not None and found[1] == file_uuid and json.loads(found[2]) == lines[3]


def test_request_log_is_filtered_by_client_ip(store: Storage) -> None:
    lines = [log_line(timestamp=T0 + i) for i in range(4)]
    for line, ip in zip(lines, ("10.0.0.1", "10.0.0.1", "::1", None), strict=True):
        if ip is None:
            del line["request"]["client_ip"]
        else:
            line["request"]["client_ip"] = ip
    assert store.enqueue(RawMessage(APP, "log", new_uuid(), None, T0, gzip_lines(lines), "gzip", len(lines)))
    fold(store)
    window = LogQuery(APP, T0 - 1, T0 + 100)
    items, total = store.request_log(replace(window, client_ip="10.0.0.1"))
    assert total == 2 and {i.request_uuid for i in items} == {lines[0]["uuid"], lines[1]["uuid"]}
    by_v6, _ = store.request_log(replace(window, client_ip="::1"))
    assert [i.request_uuid for i in by_v6] == [lines[2]["uuid"]]
    assert store.request_log(replace(window, client_ip="10.0.0.2"))[1] == 0
    assert store.request_log(window)[1] == 4


# -- retention --------------------------------------------------------------------------------


def test_prune_applies_each_tier_its_own_retention(store: Storage) -> None:
    now = float(T0 + 100 * DAY)
    old = now - 40 * DAY  # past the minutes' 30 days, inside the hours' 13 months
    store.enqueue(raw_sync(sync(timestamp=old), received_at=old))
    store.enqueue(
        RawMessage(APP, "log", new_uuid(), None, old, gzip_lines([log_line(timestamp=old)]), "gzip", 1)
    )
    store.enqueue(raw_sync(sync(timestamp=now - 60), received_at=now - 60))
    fold(store)
    deleted = store.prune(Retention().policy(), now)
    assert deleted["endpoint_traffic"] == 1 and deleted["request_log"] == 1 and deleted["queue"] == 2
    old_minute = int(old // 60) * 60
    assert totals(store, (Segment(MINUTE, old_minute, old_minute),))[0].request_count == 0
    old_hour = int(old // HOUR) * HOUR
    assert totals(store, (Segment(HOUR, old_hour, old_hour),))[0].request_count == 42
    assert store.heartbeats(APP, 0, int(now)) == [(int((now - 60) // 60) * 60, 1)]
    assert store.prune(Retention().policy(), now) == dict.fromkeys(deleted, 0)


def test_leases_have_one_holder_at_a_time(store: Storage) -> None:
    assert store.try_lease("job", "a", seconds=10, now=T0)
    assert not store.try_lease("job", "b", seconds=10, now=T0 + 5)
    assert store.try_lease("job", "a", seconds=10, now=T0 + 5)  # renewal
    assert store.try_lease("job", "b", seconds=10, now=T0 + 16)  # expired: taken over
    store.release_lease("job", "b")
    assert store.try_lease("job", "a", seconds=10, now=T0 + 17)


@pytest.fixture
def timed_worker(store: Storage) -> Iterator[FoldingWorker]:
    worker = FoldingWorker(store, poll_seconds=0.05)
    worker.start()
    try:
        yield worker
    finally:
        worker.stop()


def test_the_background_worker_folds_new_messages_promptly(
    store: Storage, timed_worker: FoldingWorker
) -> None:
    start = time.monotonic()
    store.enqueue(raw_sync(sync(timestamp=T0)))
    timed_worker.notify()
    while store.queue_stats().pending:
        assert time.monotonic() - start < 5, "not folded within 5 s"
        time.sleep(0.005)
    assert totals(store, (Segment(MINUTE, T0, T0),))[0].request_count == 42


# -- settings ---------------------------------------------------------------------------------


def test_app_settings_are_kept_per_app_and_can_be_created_once(store: Storage) -> None:
    other = AppKey(APP.client_id, "staging")
    assert store.app_settings(APP) == {}
    assert store.put_app_setting(APP, "apdex_ms", "250", now=T0) == "250"
    assert store.put_app_setting(APP, "apdex_ms", "300", now=T0 + 1) == "300"  # replaced
    assert store.put_app_setting(APP, "apdex_ms", "900", now=T0 + 2, keep_existing=True) == "300"
    assert store.put_app_setting(other, "apdex_ms", "100", now=T0) == "100"
    assert store.app_settings(APP) == {"apdex_ms": "300"} and store.app_settings(other) == {"apdex_ms": "100"}
    store.delete_app_setting(other, "apdex_ms")
    assert store.app_settings(other) == {}
    store.prune(Retention(minutes=1, hours=1, days=1).policy(), T0 + 10 * 365 * DAY)
    assert store.app_settings(APP) == {"apdex_ms": "300"}  # never pruned


# -- the apps registry ------------------------------------------------------------------------


def test_apps_registry_creates_replaces_and_lists(store: Storage) -> None:
    first = AppRecord(APP.client_id, "Shop", "fastapi", ("prod", "dev"), T0, T0)
    other = AppRecord(new_uuid(), "Billing", "starlette", ("prod",), T0 + 1, T0 + 1)
    assert store.app_records() == [] and store.app_record(APP.client_id) is None
    store.put_app(first)
    store.put_app(other)
    assert store.app_record(APP.client_id) == first
    assert store.app_records() == sorted([first, other], key=lambda r: r.client_id)
    renamed = AppRecord(APP.client_id, "Shop API", "other", ("dev",), T0 + 50, T0 + 60)
    store.put_app(renamed)  # replaced, keeping when it was created
    assert store.app_record(APP.client_id) == AppRecord(
        APP.client_id, "Shop API", "other", ("dev",), T0, T0 + 60
    )
    store.prune(Retention(minutes=1, hours=1, days=1).policy(), T0 + 10 * 365 * DAY)
    assert len(store.app_records()) == 2  # never pruned


def _rows_of(store: Storage, client_id: str) -> dict[str, int]:
    assert isinstance(store, SQLStorage)

    def work(tx: Tx) -> dict[str, int]:
        counts = {}
        for table in APP_DATA_TABLES:
            counts[table] = int(
                tx.execute(f"SELECT COUNT(*) FROM {table} WHERE client_id = ?", (client_id,)).fetchone()[0]
            )
        return counts

    return store.read(work)


def test_deleting_an_app_deletes_all_its_data_in_every_env(store: Storage) -> None:
    dev, other = AppKey(APP.client_id, "dev"), AppKey(new_uuid(), "prod")
    for app in (APP, dev, other):
        store.enqueue(raw_sync(sync(timestamp=T0 + 5), app))
        store.enqueue(
            RawMessage(app, "log", new_uuid(), None, T0, gzip_lines([log_line(timestamp=T0)]), "gzip", 1)
        )
        store.record_rejection(Rejection(app, "sync", 422, "bad", T0))
        store.put_app_setting(app, "apdex_ms", "300", now=T0)
        store.alerts.put_channel(
            ChannelRecord(new_uuid(), app, "ops", "webhook", {"url": "http://x/"}, "api", T0, T0)
        )
        spec = {"metric": "server_errors", "condition": ">", "threshold": 0, "channels": []}
        store.alerts.put_rule(RuleRecord(new_uuid(), app, "5xx", spec, True, "api", T0, T0))
    store.enqueue(raw_sync(sync(timestamp=T0 + 65), APP))  # one still pending
    fold(store)
    store.enqueue(raw_sync(sync(timestamp=T0 + 125), dev))
    store.put_app(AppRecord(APP.client_id, "Shop", "fastapi", ("prod", "dev"), T0, T0))
    store.put_app(AppRecord(other.client_id, "Other", "fastapi", ("prod",), T0, T0))
    before = _rows_of(store, APP.client_id)
    for table in (
        "queue",
        "endpoint_traffic",
        "app_traffic",
        "consumer_traffic",
        "instances",
        "consumers",
        "request_log",
        "rejections",
        "app_settings",
        "alert_channels",
        "alert_rules",
        "apps",
    ):
        assert before[table] > 0, table
    kept = _rows_of(store, other.client_id)

    deleted = store.delete_app(APP.client_id)

    assert deleted == {table: count for table, count in before.items() if count}
    assert set(_rows_of(store, APP.client_id).values()) == {0}
    assert _rows_of(store, other.client_id) == kept
    assert store.app_record(APP.client_id) is None and [i.app for i in store.list_apps()] == [other]
    assert store.delete_app(APP.client_id) == {}  # nothing left
