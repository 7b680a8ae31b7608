"""The storage conformance suite for OTLP ingest (issue 29), on every backend (the ``store`` fixture
is parametrized over them): write tokens, the cumulative series state that turns cumulative points
into deltas (stale, duplicate and restarted series, several callers at once, a restart of the
store), and enqueueing several messages in one transaction."""

from __future__ import annotations

import itertools
import threading
from pathlib import Path

import pytest

from apitally_hub.config import Retention
from apitally_hub.storage import create_storage
from apitally_hub.storage.base import Storage
from apitally_hub.storage.records import DAY, AppKey, AppRecord, RawMessage, SeriesPoint, WriteToken
from apitally_hub.storage.sql.store import SQLStorage
from apitally_hub.storage.sql.tx import Tx
from tests.hub.test_storage import raw_sync
from tests.support.backends import BACKENDS, fresh_db
from tests.support.hub_samples import new_uuid, sync

APP = AppKey("c0ffee00-0000-4000-8000-000000000029", "prod")
T0 = 1_795_000_000.0


# -- write tokens -----------------------------------------------------------------------------


def test_a_write_token_has_the_form_apitally_1x_accepts() -> None:
    tokens = {WriteToken.generate(APP.client_id, T0).token for _ in range(200)}
    assert len(tokens) == 200
    for token in tokens:
        assert WriteToken.is_well_formed(token) and len(token) == 28 and token.startswith("apt_")
    for bad in ("", "apt_", "apt_" + "a" * 23, "apt_" + "a" * 25, "apt_" + "a" * 23 + "-", "APT_" + "a" * 24):
        assert not WriteToken.is_well_formed(bad)
    assert not WriteToken.is_well_formed("apt_" + "é" * 24)  # letters, but not ASCII


def test_write_tokens_are_added_listed_looked_up_and_revoked(store: Storage) -> None:
    other = new_uuid()
    first = WriteToken.generate(APP.client_id, T0)
    second = WriteToken.generate(APP.client_id, T0 + 1)
    theirs = WriteToken.generate(other, T0)
    assert store.write_tokens(APP.client_id) == [] and store.app_for_write_token(first.token) is None
    for token in (second, first, theirs):
        store.add_write_token(token)
    assert store.write_tokens(APP.client_id) == [first, second]  # oldest first
    assert store.write_tokens(other) == [theirs]
    assert store.app_for_write_token(first.token) == APP.client_id
    assert store.app_for_write_token(theirs.token) == other
    for unknown in ("apt_" + "0" * 24, "", "Bearer " + first.token, first.token.lower(), first.token + "x"):
        assert store.app_for_write_token(unknown) is None

    assert store.revoke_write_token(other, first.token, T0 + 5) is False  # not theirs
    assert store.app_for_write_token(first.token) == APP.client_id
    assert store.revoke_write_token(APP.client_id, first.token, T0 + 5) is True
    assert store.app_for_write_token(first.token) is None
    assert store.app_for_write_token(second.token) == APP.client_id
    assert store.revoke_write_token(APP.client_id, first.token, T0 + 9) is True  # again: kept as it was
    assert store.write_tokens(APP.client_id) == [WriteToken(first.token, APP.client_id, T0, T0 + 5), second]
    assert store.revoke_write_token(APP.client_id, "apt_" + "1" * 24, T0 + 5) is False

    store.prune(Retention(minutes=1, hours=1, days=1).policy(), T0 + 10 * 365 * DAY)
    assert len(store.write_tokens(APP.client_id)) == 2  # never pruned
    store.put_app(AppRecord(APP.client_id, "Shop", "fastapi", ("prod",), T0, T0))
    assert store.delete_app(APP.client_id) == {"apps": 1, "write_tokens": 2}
    assert store.app_for_write_token(second.token) is None
    assert store.app_for_write_token(theirs.token) == other


def test_a_token_is_stored_once(store: Storage) -> None:
    token = WriteToken.generate(APP.client_id, T0)
    store.add_write_token(token)
    with pytest.raises(Exception, match=r"(?i)unique|duplicate"):
        store.add_write_token(WriteToken(token.token, new_uuid(), T0))
    assert store.app_for_write_token(token.token) == APP.client_id


# -- cumulative series ------------------------------------------------------------------------


def point(key: str, start: int, time: int, value: float) -> SeriesPoint:
    return SeriesPoint(key, start, time, repr(value))


def test_swap_series_returns_the_previous_points_and_stores_the_new(store: Storage) -> None:
    assert store.swap_series(APP, "i1", [point("a", 100, 200, 5), point("b", 100, 200, 1)], T0) == {}
    previous = store.swap_series(APP, "i1", [point("a", 100, 260, 9), point("c", 100, 260, 2)], T0 + 60)
    assert previous == {"a": point("a", 100, 200, 5)}  # b not asked for; c is new
    assert store.swap_series(APP, "i1", [point("a", 100, 320, 12), point("b", 100, 320, 4)], T0 + 120) == {
        "a": point("a", 100, 260, 9),
        "b": point("b", 100, 200, 1),
    }
    assert store.swap_series(APP, "i1", [], T0) == {}


def test_a_stale_or_duplicate_point_leaves_the_stored_one(store: Storage) -> None:
    store.swap_series(APP, "i1", [point("a", 100, 300, 10)], T0)
    # a resend (same time) and a late point (earlier time) of the same run: both see the stored
    # point, and neither replaces it
    assert store.swap_series(APP, "i1", [point("a", 100, 300, 10)], T0 + 1) == {"a": point("a", 100, 300, 10)}
    assert store.swap_series(APP, "i1", [point("a", 100, 240, 7)], T0 + 2) == {"a": point("a", 100, 300, 10)}
    assert store.swap_series(APP, "i1", [point("a", 100, 360, 15)], T0 + 3) == {"a": point("a", 100, 300, 10)}
    assert store.swap_series(APP, "i1", [point("a", 100, 360, 15)], T0 + 4) == {"a": point("a", 100, 360, 15)}


def test_a_restarted_series_replaces_the_stored_point(store: Storage) -> None:
    store.swap_series(APP, "i1", [point("a", 100, 300, 50)], T0)
    # the process restarted: a new start time, and a smaller cumulative value
    assert store.swap_series(APP, "i1", [point("a", 500, 560, 3)], T0 + 60) == {"a": point("a", 100, 300, 50)}
    assert store.swap_series(APP, "i1", [point("a", 500, 620, 8)], T0 + 120) == {"a": point("a", 500, 560, 3)}
    # a start time of another run replaces it too, even an earlier one (a point of the old run late)
    assert store.swap_series(APP, "i1", [point("a", 100, 310, 51)], T0 + 180) == {
        "a": point("a", 500, 620, 8)
    }
    assert store.swap_series(APP, "i1", [point("a", 100, 310, 51)], T0 + 181) == {
        "a": point("a", 100, 310, 51)
    }


def test_several_points_of_one_key_in_a_call_apply_in_order(store: Storage) -> None:
    points = [point("a", 100, 200, 1), point("a", 100, 260, 4), point("a", 100, 230, 2)]
    assert store.swap_series(APP, "i1", points, T0) == {}
    assert store.swap_series(APP, "i1", [point("a", 100, 260, 4)], T0) == {"a": point("a", 100, 260, 4)}


def test_series_are_kept_per_app_env_and_instance(store: Storage) -> None:
    keys = [APP, AppKey(APP.client_id, "dev"), AppKey(new_uuid(), "prod")]
    for n, app in enumerate(keys):
        for instance in ("i1", "i2"):
            assert store.swap_series(app, instance, [point("a", 100, 200, n)], T0) == {}
    for n, app in enumerate(keys):
        for instance in ("i1", "i2"):
            assert store.swap_series(app, instance, [point("a", 100, 260, 9)], T0) == {
                "a": point("a", 100, 200, n)
            }


def test_many_series_in_one_call(store: Storage) -> None:
    first = [point(f"series-{n:04d}", 100, 200, n) for n in range(1234)]
    assert store.swap_series(APP, "i1", first, T0) == {}
    later = [point(f"series-{n:04d}", 100, 260, n + 1) for n in range(0, 1300, 2)]
    previous = store.swap_series(APP, "i1", later, T0 + 60)
    assert previous == {p.key: p for p in first[::2]}


def test_series_not_updated_for_two_days_are_pruned(store: Storage) -> None:
    store.swap_series(APP, "old", [point("a", 100, 200, 1)], T0)
    store.swap_series(APP, "kept", [point("a", 100, 200, 1)], T0)
    store.swap_series(APP, "kept", [point("a", 100, 260, 2)], T0 + DAY)
    store.swap_series(APP, "stale", [point("a", 100, 200, 1)], T0)
    store.swap_series(APP, "stale", [point("a", 100, 200, 1)], T0 + DAY)  # a resend: not an update
    deleted = store.prune(Retention().policy(), T0 + 2 * DAY + 1)
    assert deleted["otlp_series"] == 2
    assert store.swap_series(APP, "old", [point("a", 100, 320, 3)], T0 + 2 * DAY + 2) == {}
    assert store.swap_series(APP, "kept", [point("a", 100, 320, 3)], T0 + 2 * DAY + 2) == {
        "a": point("a", 100, 260, 2)
    }
    assert store.swap_series(APP, "stale", [point("a", 100, 320, 3)], T0 + 2 * DAY + 2) == {}
    assert store.prune(Retention().policy(), T0 + 2 * DAY + 3)["otlp_series"] == 0


def test_concurrent_callers_each_see_the_point_stored_before_theirs(store: Storage) -> None:
    """Every caller gets a new point of one new series at once: exactly one finds nothing stored,
    and the points seen before form one chain (each point's delta is counted once)."""
    callers = 8
    barrier = threading.Barrier(callers)
    seen: dict[int, SeriesPoint | None] = {}

    def call(n: int) -> None:
        barrier.wait()
        mine = [point("a", 100, 1000 + n, n), point(f"own-{n}", 100, 1000, n)]
        seen[n] = store.swap_series(APP, "i1", mine, T0).get("a")

    threads = [threading.Thread(target=call, args=(n,)) for n in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(seen) == callers
    assert sum(previous is None for previous in seen.values()) == 1
    # the callers whose point replaced the stored one form one chain, in time order: each saw the
    # point of the one before it; the others' points were older than the one they saw (stale)
    mine = {n: point("a", 100, 1000 + n, n) for n in range(callers)}
    chain = sorted(n for n, p in seen.items() if p is None or p.time_nano < mine[n].time_nano)
    assert seen[chain[0]] is None
    assert all(seen[later] == mine[earlier] for earlier, later in itertools.pairwise(chain))
    assert all(p is not None and p.time_nano >= mine[n].time_nano for n, p in seen.items() if n not in chain)
    assert store.swap_series(APP, "i1", [point("a", 100, 0, 0)], T0) == {"a": mine[chain[-1]]}
    assert chain[-1] == callers - 1


@pytest.mark.parametrize("backend", BACKENDS)
def test_series_and_tokens_survive_a_restart_of_the_store(
    request: pytest.FixtureRequest, backend: str, tmp_path: Path
) -> None:
    db = fresh_db(request, backend, tmp_path)
    token = WriteToken.generate(APP.client_id, T0)
    first = create_storage(db)
    first.open()
    try:
        first.add_write_token(token)
        first.swap_series(APP, "i1", [point("a", 100, 200, 5)], T0)
    finally:
        first.close()
    second = create_storage(db)
    second.open()
    try:
        assert second.app_for_write_token(token.token) == APP.client_id
        assert second.swap_series(APP, "i1", [point("a", 100, 260, 6)], T0 + 60) == {
            "a": point("a", 100, 200, 5)
        }
    finally:
        second.close()


# -- enqueueing several messages at once ------------------------------------------------------


def test_enqueue_many_stores_each_once_in_one_transaction(store: Storage) -> None:
    first, second, third = (raw_sync(sync(timestamp=T0 + n)) for n in range(3))
    assert store.enqueue_many([]) == []
    assert store.enqueue(second) is True
    assert store.enqueue_many([first, second, third, first]) == [True, False, True, False]
    assert store.queue_stats().pending == 3


def test_enqueue_many_stores_nothing_when_one_message_fails(store: Storage) -> None:
    good = raw_sync(sync(timestamp=T0))
    broken = RawMessage(APP, "sync", new_uuid(), None, T0, None, "zlib")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        store.enqueue_many([good, broken])
    assert store.queue_stats().pending == 0
    assert store.enqueue_many([good]) == [True]


def test_the_series_table_is_keyed_as_documented(store: Storage) -> None:
    assert isinstance(store, SQLStorage)
    store.swap_series(APP, "i1", [point("k", 1, 2, 3)], T0)

    def work(tx: Tx) -> list[tuple[object, ...]]:
        return [
            tuple(row)
            for row in tx.execute(
                "SELECT client_id, env, instance_id, series_key, start_nano, time_nano, value, updated_at"
                " FROM otlp_series"
            ).fetchall()
        ]

    assert store.read(work) == [(APP.client_id, APP.env, "i1", "k", 1, 2, "3", T0)]
