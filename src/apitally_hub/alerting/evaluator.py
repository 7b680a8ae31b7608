"""The evaluator: every ``--alert-interval`` seconds, the one hub process holding the
``alerting`` lease evaluates every enabled rule.

For each rule: observe its values (:mod:`.observe`), run the pure :func:`.rules.evaluate` for each
label set against its persisted state, and commit the new states, the history of state changes
and the notifications (one per channel) in **one** transaction fenced by the lease
(:meth:`~apitally_hub.storage.alerts.AlertStore.commit_evaluation`). So:

- a restart finds each evaluation either wholly committed (the alert is firing and its notice is
  in the outbox: nothing is sent twice) or not at all (the next round does it once);
- a round in which many alerts of one rule change alike (say 300 consumers start firing) sends
  each channel one grouped notice (:func:`.formats.grouped_document`) rather than hundreds: more
  than :data:`GROUP_AFTER` notices of one rule and one kind in one round are grouped;
- with several hub processes only the lease holder evaluates; one that lost the lease while
  evaluating (a long pause) writes nothing; another takes over when the lease expires (or at
  once when the holder stops and releases it).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from apitally_hub.alerting import rules as machine
from apitally_hub.alerting.config import AlertingConfig
from apitally_hub.alerting.model import Rule, labels_of, rule_from_record
from apitally_hub.alerting.notifiers import formats
from apitally_hub.alerting.observe import in_scope, observe, value_when_unseen
from apitally_hub.query.service import QueryService
from apitally_hub.storage.alert_records import (
    HistoryRecord,
    InstanceRecord,
    LeaseLost,
    OutboxRecord,
    SilenceRecord,
)

_logger = logging.getLogger(__name__)

LEASE = "alerting"
GROUP_AFTER = 3
"""A round sends up to this many notices of one rule and kind one by one; more become one."""
_EPISODES = uuid.UUID("5b7d3a52-8d1e-4c33-9f57-0d6a1c2b4e10")


def episode_id(rule_id: str, labels_key: str, firing_since: float | None) -> str | None:
    """A firing episode's id: derived, so every process computes the same one."""
    if firing_since is None:
        return None
    return str(uuid.uuid5(_EPISODES, f"{rule_id}|{labels_key}|{firing_since!r}"))


def policy_of(rule: Rule, minute_seconds: float) -> machine.Policy:
    return machine.Policy(
        condition=rule.condition,
        threshold=rule.threshold,
        for_seconds=rule.for_minutes * minute_seconds,
        keep_firing_seconds=rule.keep_firing_minutes * minute_seconds,
        repeat_seconds=rule.repeat_minutes * minute_seconds,
        no_data=rule.no_data,
    )


def state_of(record: InstanceRecord | None) -> machine.AlertState:
    if record is None:
        return machine.AlertState()
    return machine.AlertState(
        state=record.state,  # type: ignore[arg-type]
        value=record.value,
        pending_since=record.pending_since,
        firing_since=record.firing_since,
        last_true_at=record.last_true_at,
        last_eval_at=record.last_eval_at,
        changed_at=record.changed_at,
        notified=record.notified,
        last_notified_at=record.last_notified_at,
        resolved_at=record.resolved_at,
    )


def is_silenced(rule: Rule, silences: Sequence[SilenceRecord]) -> bool:
    return any(s.app == rule.app and s.rule_id in (None, rule.id) for s in silences)


@dataclass(frozen=True)
class RuleResult:
    instances: list[InstanceRecord]
    history: list[HistoryRecord]
    notifications: list[OutboxRecord]


def plan_rule(
    rule: Rule,
    observed: dict[str, float | None],
    existing: Sequence[InstanceRecord],
    now: float,
    *,
    config: AlertingConfig,
    silenced: bool,
    channel_ids: Sequence[str],
) -> RuleResult:
    """What one evaluation of ``rule`` writes (pure: the evaluator commits the result)."""
    policy = policy_of(rule, config.minute_seconds)
    known = {record.labels_key: record for record in existing}
    result = RuleResult([], [], [])
    notices: dict[str, list[dict[str, object]]] = {}
    created = 0
    for key in sorted(set(observed) | set(known)):
        record = known.get(key)
        labels = labels_of(key)
        step_policy, value = policy, observed.get(key)
        if key not in observed:
            value = value_when_unseen(rule)
            if not in_scope(rule, labels):  # the rule changed under it: let it go (resolved)
                step_policy, value = machine.Policy(">", 0.0, no_data="ok"), None
        outcome = machine.evaluate(step_policy, state_of(record), value, now, silenced=silenced)
        s = outcome.state
        keep = bool(outcome.changes) or s.state != "normal" or rule.scope.for_each is None
        if not keep:
            continue
        if record is None and rule.scope.for_each is not None:
            created += 1
            if created > config.max_instances_per_rule:
                if created == config.max_instances_per_rule + 1:
                    _logger.warning(
                        "Rule %r tracks the first %d label sets only",
                        rule.name,
                        config.max_instances_per_rule,
                    )
                continue
        episode = episode_id(rule.id, key, s.firing_since)
        result.instances.append(
            InstanceRecord(
                rule.id,
                key,
                rule.app,
                s.state,
                s.value,
                s.pending_since,
                s.firing_since,
                s.last_true_at,
                s.last_eval_at,
                s.changed_at,
                s.notified,
                s.last_notified_at,
                s.resolved_at,
                episode,
            )
        )
        for from_state, to_state in outcome.changes:
            note = "silenced" if silenced and to_state == "firing" else None
            result.history.append(
                HistoryRecord(
                    str(uuid.uuid4()), rule.id, rule.app, key, now, from_state, to_state, value, note
                )
            )
        if outcome.notice is not None:
            doc = formats.document(
                rule,
                event="resolved" if outcome.notice == "resolved" else "firing",
                labels=labels,
                value=s.value if s.value is not None else (record.value if record else None),
                state=s.state,
                alert_id=episode,
                started_at=s.firing_since,
                resolved_at=s.resolved_at,
                at=now,
                reminder=outcome.notice == "reminder",
            )
            notices.setdefault(outcome.notice, []).append(doc)
    for notice, docs in notices.items():
        if len(docs) > GROUP_AFTER:
            docs = [formats.grouped_document(docs)]
        for doc in docs:
            payload = json.dumps(doc, separators=(",", ":"), ensure_ascii=False)
            for channel_id in channel_ids:
                result.notifications.append(
                    OutboxRecord(
                        str(uuid.uuid4()),
                        channel_id,
                        rule.app,
                        rule.id,
                        notice,
                        payload,
                        "pending",
                        now,
                        now,
                        now + config.retry_for_seconds,
                    )
                )
    return result


class Evaluator:
    def __init__(
        self,
        queries: Callable[[], QueryService],
        config: AlertingConfig,
        *,
        clock: Callable[[], float] = time.time,
        on_notifications: Callable[[], None] | None = None,
        holder: str | None = None,
    ) -> None:
        self.queries = queries
        self.config = config
        self.clock = clock
        self.on_notifications = on_notifications
        self.holder = holder or f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.rounds = 0
        """Rounds evaluated as the leader (tests and the benchmark read it)."""
        self._leader = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def evaluate_all(self) -> bool:
        """One round, if this process holds (or takes) the lease; returns whether it evaluated."""
        q = self.queries()
        store, alerts = q.storage, q.storage.alerts
        now = self.clock()
        if not store.try_lease(LEASE, self.holder, seconds=self.config.lease, now=now):
            return False
        self._leader = True
        silences = alerts.silences(active_at=now)
        channels_by_app: dict[object, set[str]] = {}
        sent = False
        for record in alerts.rules():
            if not record.enabled:
                continue
            rule = rule_from_record(record)
            try:
                if rule.app not in channels_by_app:
                    channels_by_app[rule.app] = {c.id for c in alerts.channels(rule.app)}
                observed = observe(q, rule, now, self.config.minute_seconds)
                plan = plan_rule(
                    rule,
                    observed,
                    alerts.instances(rule.id),
                    now,
                    config=self.config,
                    silenced=is_silenced(rule, silences),
                    channel_ids=[c for c in rule.channels if c in channels_by_app[rule.app]],
                )
                alerts.commit_evaluation(
                    (LEASE, self.holder),
                    now,
                    self.config.lease,
                    plan.instances,
                    plan.history,
                    plan.notifications,
                    max_pending_per_channel=self.config.max_pending_per_channel,
                )
                sent = sent or bool(plan.notifications)
                for entry in plan.history:
                    _logger.info(
                        "Alert %r %s: %s -> %s (value %s)",
                        rule.name,
                        entry.labels_key,
                        entry.from_state,
                        entry.to_state,
                        entry.value,
                    )
            except LeaseLost:
                _logger.warning("Lost the alerting lease while evaluating; another hub process evaluates now")
                return False
            except Exception:  # one broken rule must not stop the others
                _logger.exception("Evaluating alert rule %r (%s) failed", rule.name, rule.id)
        self.rounds += 1
        if sent and self.on_notifications is not None:
            self.on_notifications()
        return True

    # -- the thread ---------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="hub-alerting", daemon=True)
            self._thread.start()

    def request_stop(self) -> None:
        """Start stopping (no new work); :meth:`stop` waits for it."""
        self._stop.set()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop after the round in progress and release the lease (another process takes over
        at once); idempotent."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        if self._leader:
            self._leader = False
            try:
                self.queries().storage.release_lease(LEASE, self.holder)
            except Exception:  # stopping anyway: the lease then simply expires
                _logger.exception("Releasing the alerting lease failed")

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self.evaluate_all()
            except Exception:  # the store is unavailable: try again next round
                _logger.exception("Alert evaluation round failed")
            self._stop.wait(max(self.config.interval - (time.monotonic() - started), 0.05))
