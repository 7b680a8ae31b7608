"""Conformance suite for the alerting part of the store (``store.alerts``), run on every backend:
channels and rules with unique names, the fenced evaluation commit, the ordered and bounded
outbox with claims, silences, health-check events, the rules-file sync, pruning."""

from __future__ import annotations

import threading

import pytest

from apitally_hub.storage.alert_records import (
    ChannelRecord,
    FileConfig,
    HealthCheckRecord,
    HistoryRecord,
    InstanceRecord,
    LeaseLost,
    NameTaken,
    OutboxRecord,
    RuleRecord,
    SilenceRecord,
)
from apitally_hub.storage.base import Storage
from apitally_hub.storage.records import AppKey, RetentionPolicy
from tests.support.hub_samples import new_uuid

APP = AppKey("c0ffee00-0000-4000-8000-000000000001", "prod")
OTHER = AppKey("c0ffee00-0000-4000-8000-000000000002", "prod")
T0 = 1_800_000_000.0
LEASE = ("alerting", "me")


def channel(name: str = "ops", app: AppKey = APP, **config: object) -> ChannelRecord:
    return ChannelRecord(new_uuid(), app, name, "webhook", {"url": "http://x/", **config}, "api", T0, T0)


def rule(name: str = "5xx", app: AppKey = APP, channels: list[str] | None = None) -> RuleRecord:
    spec = {"metric": "server_errors", "condition": ">", "threshold": 0, "channels": channels or []}
    return RuleRecord(new_uuid(), app, name, spec, True, "api", T0, T0)


def instance(rule_id: str, state: str = "firing", labels_key: str = "{}") -> InstanceRecord:
    return InstanceRecord(rule_id, labels_key, APP, state, 3.0, T0, T0, T0, T0, T0, True, T0, None, "ep-1")


def note(channel_id: str, at: float, event: str = "firing") -> OutboxRecord:
    return OutboxRecord(new_uuid(), channel_id, APP, None, event, "{}", "pending", at, at, at + 3600)


def test_channels_and_rules_round_trip_with_unique_names(store: Storage) -> None:
    alerts = store.alerts
    ops = channel(secret="s")
    alerts.put_channel(ops)
    alerts.put_channel(channel("ops", OTHER))  # same name, other app: fine
    with pytest.raises(NameTaken):
        alerts.put_channel(channel("ops"))
    assert alerts.channel(ops.id) == ops
    assert [c.name for c in alerts.channels(APP)] == ["ops"]
    five = rule(channels=[ops.id])
    alerts.put_rule(five)
    with pytest.raises(NameTaken):
        alerts.put_rule(rule())
    renamed = RuleRecord(five.id, APP, "errors", five.spec, False, "api", T0, T0 + 1)
    alerts.put_rule(renamed)
    assert alerts.rule(five.id) == renamed
    assert [r.name for r in alerts.rules()] == ["errors"] and alerts.rules(OTHER) == []
    assert alerts.delete_rule(five.id) is True and alerts.delete_rule(five.id) is False
    assert alerts.delete_channel(ops.id) is True and alerts.channel(ops.id) is None


def test_commit_evaluation_is_fenced_by_the_lease(store: Storage) -> None:
    alerts = store.alerts
    r = rule()
    alerts.put_rule(r)
    assert store.try_lease("alerting", "me", seconds=10, now=T0)
    ops = channel()
    alerts.put_channel(ops)
    history = HistoryRecord(new_uuid(), r.id, APP, "{}", T0, "normal", "firing", 3.0)
    alerts.commit_evaluation(
        LEASE, T0, 10, [instance(r.id)], [history], [note(ops.id, T0)], max_pending_per_channel=10
    )
    assert [i.state for i in alerts.instances(r.id)] == ["firing"]
    assert alerts.history(APP, limit=10) == [history]
    # Another process takes the expired lease: the old leader's commit writes nothing.
    assert store.try_lease("alerting", "other", seconds=10, now=T0 + 11)
    with pytest.raises(LeaseLost):
        alerts.commit_evaluation(
            LEASE,
            T0 + 12,
            10,
            [instance(r.id, "normal")],
            [],
            [note(ops.id, T0 + 12)],
            max_pending_per_channel=10,
        )
    assert [i.state for i in alerts.instances(r.id)] == ["firing"]
    assert len(alerts.notifications(APP, limit=10)) == 1
    # An expired lease nobody took over does not count either.
    with pytest.raises(LeaseLost):
        alerts.commit_evaluation(("alerting", "other"), T0 + 30, 10, [], [], [], max_pending_per_channel=10)


def test_outbox_claims_in_order_one_per_channel(store: Storage) -> None:
    alerts = store.alerts
    a, b = channel("a"), channel("b")
    alerts.put_channel(a)
    alerts.put_channel(b)
    first, second, other = note(a.id, T0), note(a.id, T0 + 1, "resolved"), note(b.id, T0 + 2)
    alerts.enqueue_notifications([first, second, other], max_pending_per_channel=10)
    claimed = alerts.claim_notifications("w1", now=T0 + 5, limit=10, lease_seconds=30)
    assert [n.id for n in claimed] == [first.id, other.id] and claimed[0].attempts == 1
    # Claimed rows are not handed out again while the claim lives.
    assert alerts.claim_notifications("w2", now=T0 + 6, limit=10, lease_seconds=30) == []
    # A retry later: the channel's head stays first (the resolved notice waits behind it).
    assert alerts.finish_notification(
        first.id, "w1", status="pending", now=T0 + 6, error="503", next_attempt_at=T0 + 20
    )
    assert alerts.claim_notifications("w2", now=T0 + 10, limit=10, lease_seconds=30) == []
    again = alerts.claim_notifications("w2", now=T0 + 21, limit=10, lease_seconds=30)
    assert [(n.id, n.attempts, n.last_error) for n in again] == [(first.id, 2, "503")]
    assert not alerts.finish_notification(first.id, "w1", status="sent", now=T0 + 22)  # not w1's claim
    assert alerts.finish_notification(first.id, "w2", status="sent", now=T0 + 22)
    assert [n.id for n in alerts.claim_notifications("w2", now=T0 + 23, limit=10, lease_seconds=30)] == [
        second.id
    ]
    # An expired claim (a worker that died mid-send) is handed out again.
    assert [n.id for n in alerts.claim_notifications("w3", now=T0 + 60, limit=10, lease_seconds=30)] == [
        second.id,
        other.id,
    ]
    sent = alerts.notification(first.id)
    assert sent is not None and (sent.status, sent.sent_at) == ("sent", T0 + 22)


def test_outbox_is_bounded_per_channel(store: Storage) -> None:
    alerts = store.alerts
    a = channel()
    alerts.put_channel(a)
    notes = [note(a.id, T0 + i) for i in range(5)]
    alerts.enqueue_notifications(notes, max_pending_per_channel=3)
    statuses = {n.id: n.status for n in alerts.notifications(APP, limit=10)}
    assert [statuses[n.id] for n in notes] == ["dropped", "dropped", "pending", "pending", "pending"]


def test_claims_are_exclusive_across_threads(store: Storage) -> None:
    alerts = store.alerts
    channels = [channel(f"c{i}") for i in range(20)]
    for c in channels:
        alerts.put_channel(c)
    alerts.enqueue_notifications([note(c.id, T0) for c in channels], max_pending_per_channel=10)
    got: list[str] = []
    lock = threading.Lock()

    def claim(worker: str) -> None:
        for _ in range(10):
            ids = [n.id for n in alerts.claim_notifications(worker, now=T0 + 1, limit=3, lease_seconds=60)]
            with lock:
                got.extend(ids)

    threads = [threading.Thread(target=claim, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == len(set(got)) == 20


def test_silences_in_force(store: Storage) -> None:
    alerts = store.alerts
    s = SilenceRecord(new_uuid(), APP, None, T0, T0 + 60, "deploy", T0)
    alerts.put_silence(s)
    assert alerts.silences(active_at=T0 + 30) == [s]
    assert alerts.silences(APP, active_at=T0 + 60) == [] and alerts.silences(OTHER) == []
    assert alerts.delete_silence(s.id) and alerts.silences() == []


def test_health_results_record_transitions(store: Storage) -> None:
    alerts = store.alerts
    check = HealthCheckRecord(APP, "http://app/health", {"accepted": ["2xx"]}, "api", T0)
    alerts.put_health_check(check)
    results = [("up", T0), ("up", T0 + 60), ("down", T0 + 120), ("up", T0 + 180)]
    changes = [
        alerts.record_health_result(
            APP, status=s, at=at, status_code=200, latency_ms=3.0, error=None, event_id=new_uuid()
        )
        for s, at in results
    ]
    assert changes == [True, False, True, True]
    current = alerts.health_check(APP)
    assert current is not None and (current.status, current.checked_at, current.changed_at) == (
        "up",
        T0 + 180,
        T0 + 180,
    )
    assert [(e.status, e.at) for e in alerts.health_events(APP, T0 + 100, T0 + 200)] == [
        ("up", T0),
        ("down", T0 + 120),
        ("up", T0 + 180),
    ]
    # A new URL starts unknown; the same URL keeps its state.
    alerts.put_health_check(HealthCheckRecord(APP, "http://app/health", {}, "api", T0 + 200))
    assert alerts.health_check(APP).status == "up"  # type: ignore[union-attr]
    alerts.put_health_check(HealthCheckRecord(APP, "http://app/ready", {}, "api", T0 + 201))
    assert alerts.health_check(APP).status is None  # type: ignore[union-attr]
    assert [c.url for c in alerts.health_checks()] == ["http://app/ready"]
    assert alerts.delete_health_check(APP) and alerts.health_check(APP) is None


def test_file_sync_keeps_ids_and_removes_what_the_file_dropped(store: Storage) -> None:
    alerts = store.alerts
    api_rule = rule("by-api")
    alerts.put_rule(api_rule)

    def config(threshold: int, with_rule: bool = True) -> FileConfig:
        ops = ChannelRecord(new_uuid(), APP, "ops", "webhook", {"url": "http://x/"}, "file", T0, T0)
        spec = {"metric": "server_errors", "condition": ">", "threshold": threshold, "channels": ["ops"]}
        rules = [RuleRecord(new_uuid(), APP, "5xx", spec, True, "file", T0, T0)] if with_rule else []
        return FileConfig([ops], rules, [HealthCheckRecord(APP, "http://a/h", {}, "file", T0)])

    assert alerts.sync_file_config(config(0), T0)["rules"] == 1
    [ops] = alerts.channels(APP)
    first = {r.name: r for r in alerts.rules(APP)}["5xx"]
    assert first.spec["channels"] == [ops.id] and first.source == "file"
    alerts.sync_file_config(config(5), T0 + 1)
    second = {r.name: r for r in alerts.rules(APP)}["5xx"]
    assert (second.id, second.spec["threshold"], alerts.channels(APP)[0].id) == (first.id, 5, ops.id)
    alerts.sync_file_config(FileConfig([], [], []), T0 + 2)
    assert [r.name for r in alerts.rules(APP)] == ["by-api"]  # API-managed entries stay
    assert alerts.channels(APP) == [] and alerts.health_checks() == []


def test_prune_removes_old_history_and_finished_notifications(store: Storage) -> None:
    alerts = store.alerts
    r = rule()
    alerts.put_rule(r)
    store.try_lease("alerting", "me", seconds=10, now=T0)
    old = HistoryRecord(new_uuid(), r.id, APP, "{}", T0 - 100_000, "normal", "firing", 1.0)
    alerts.commit_evaluation(LEASE, T0, 10, [], [old], [], max_pending_per_channel=10)
    a = channel()
    alerts.put_channel(a)
    sent, waiting = note(a.id, T0 - 100_000), note(a.id, T0 - 100_000)
    alerts.enqueue_notifications([sent, waiting], max_pending_per_channel=10)
    [claimed] = alerts.claim_notifications("w", now=T0, limit=1, lease_seconds=10)
    alerts.finish_notification(claimed.id, "w", status="sent", now=T0)
    policy = RetentionPolicy({60: 1000.0, 3600: 1000.0, 86400: 1000.0}, 1000.0, 1000.0, 1000.0, 1000.0)
    deleted = store.prune(policy, T0)
    assert deleted["alert_history"] == 1 and deleted["alert_outbox"] == 1
    assert [n.status for n in alerts.notifications(APP, limit=10)] == ["pending"]
