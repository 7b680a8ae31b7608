"""The alerting part of the storage interface: :attr:`Storage.alerts <.base.Storage.alerts>`.

What it keeps, per app env: notification **channels**, alert **rules** (their validated JSON
spec), the state of every alert **instance** (one per rule and label set), the **history** of
state changes, **silences**, the notification **outbox** (what is still to be delivered, with its
attempts), and the optional **health check** with its up/down events.

Exactly-once hinges on two methods: :meth:`AlertStore.commit_evaluation` writes an evaluation's
new states, history and notifications in one transaction that also checks the evaluator still
holds its lease (so a process that lost leadership writes nothing, and a restart finds either
all of an evaluation or none of it); :meth:`AlertStore.claim_notifications` hands each due
notification to one delivery worker at a time.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence

from apitally_hub.storage.alert_records import (
    ChannelRecord,
    FileConfig,
    HealthCheckRecord,
    HealthEvent,
    HistoryRecord,
    InstanceRecord,
    OutboxRecord,
    OutboxStatus,
    RuleRecord,
    SilenceRecord,
)
from apitally_hub.storage.records import AppKey


class AlertStore(abc.ABC):
    # -- channels -----------------------------------------------------------------------------

    @abc.abstractmethod
    def put_channel(self, channel: ChannelRecord) -> None:
        """Insert or replace (by id); raises :class:`~.alert_records.NameTaken`."""

    @abc.abstractmethod
    def channels(self, app: AppKey) -> list[ChannelRecord]: ...

    @abc.abstractmethod
    def channel(self, channel_id: str) -> ChannelRecord | None: ...

    @abc.abstractmethod
    def delete_channel(self, channel_id: str) -> bool:
        """Delete the channel and its undelivered notifications; False when there was none."""

    # -- rules --------------------------------------------------------------------------------

    @abc.abstractmethod
    def put_rule(self, rule: RuleRecord) -> None:
        """Insert or replace (by id); raises :class:`~.alert_records.NameTaken`."""

    @abc.abstractmethod
    def rules(self, app: AppKey | None = None) -> list[RuleRecord]:
        """The rules of ``app``, or of every app (the evaluator)."""

    @abc.abstractmethod
    def rule(self, rule_id: str) -> RuleRecord | None: ...

    @abc.abstractmethod
    def delete_rule(self, rule_id: str) -> bool:
        """Delete the rule and its instances (its history stays until pruned)."""

    @abc.abstractmethod
    def sync_file_config(self, config: FileConfig, now: float) -> dict[str, int]:
        """In one transaction: upsert the file's entries by (app, name) — ids stay stable, so the
        state of their alerts survives a restart — and delete file-managed entries it no longer
        lists. Returns counts per kind."""

    # -- alert state --------------------------------------------------------------------------

    @abc.abstractmethod
    def instances(self, rule_id: str) -> list[InstanceRecord]: ...

    @abc.abstractmethod
    def app_instances(self, app: AppKey, states: Sequence[str] | None = None) -> list[InstanceRecord]: ...

    @abc.abstractmethod
    def commit_evaluation(
        self,
        lease: tuple[str, str],
        now: float,
        lease_seconds: float,
        instances: Sequence[InstanceRecord],
        history: Sequence[HistoryRecord],
        notifications: Sequence[OutboxRecord],
        *,
        max_pending_per_channel: int,
    ) -> None:
        """Write one evaluation atomically, renewing ``lease`` = (name, holder); raises
        :class:`~.alert_records.LeaseLost` (writing nothing) when the lease is not held by
        ``holder`` any more."""

    @abc.abstractmethod
    def history(
        self,
        app: AppKey,
        *,
        limit: int,
        before: tuple[float, str] | None = None,
        rule_id: str | None = None,
    ) -> list[HistoryRecord]:
        """Newest first; ``before`` is a keyset cursor (at, id)."""

    # -- silences -----------------------------------------------------------------------------

    @abc.abstractmethod
    def put_silence(self, silence: SilenceRecord) -> None: ...

    @abc.abstractmethod
    def silences(self, app: AppKey | None = None, *, active_at: float | None = None) -> list[SilenceRecord]:
        """Silences of ``app`` (every app when None); only those in force at ``active_at`` if given."""

    @abc.abstractmethod
    def delete_silence(self, silence_id: str) -> bool: ...

    # -- notification outbox ------------------------------------------------------------------

    @abc.abstractmethod
    def enqueue_notifications(
        self, notifications: Sequence[OutboxRecord], *, max_pending_per_channel: int
    ) -> None:
        """Add notifications outside an evaluation (test notifications). A channel keeps at most
        ``max_pending_per_channel`` pending ones: the oldest beyond that are ``dropped``."""

    @abc.abstractmethod
    def claim_notifications(
        self,
        worker: str,
        *,
        now: float,
        limit: int,
        lease_seconds: float,
        exclude_channels: Sequence[str] = (),
    ) -> list[OutboxRecord]:
        """Claim due pending notifications (oldest first, at most one per channel) not claimed by
        a live lease, skipping ``exclude_channels`` (those with a delivery in flight)."""

    @abc.abstractmethod
    def finish_notification(
        self,
        notification_id: str,
        worker: str,
        *,
        status: OutboxStatus,
        now: float,
        error: str | None = None,
        next_attempt_at: float | None = None,
    ) -> bool:
        """Record an attempt: ``sent``/``failed``, or ``pending`` again at ``next_attempt_at``.
        False (and nothing written) when the claim was lost."""

    @abc.abstractmethod
    def notifications(
        self, app: AppKey, *, limit: int, status: OutboxStatus | None = None
    ) -> list[OutboxRecord]:
        """Newest first."""

    @abc.abstractmethod
    def notification(self, notification_id: str) -> OutboxRecord | None: ...

    # -- health checks ------------------------------------------------------------------------

    @abc.abstractmethod
    def put_health_check(self, check: HealthCheckRecord) -> None:
        """Insert or replace the app's check (its last result is kept when the URL is unchanged)."""

    @abc.abstractmethod
    def health_check(self, app: AppKey) -> HealthCheckRecord | None: ...

    @abc.abstractmethod
    def health_checks(self) -> list[HealthCheckRecord]: ...

    @abc.abstractmethod
    def delete_health_check(self, app: AppKey) -> bool: ...

    @abc.abstractmethod
    def record_health_result(
        self,
        app: AppKey,
        *,
        status: str,
        at: float,
        status_code: int | None,
        latency_ms: float | None,
        error: str | None,
        event_id: str,
    ) -> bool:
        """Store a check's result; a change of status (or the first result) also adds an event.
        Returns whether the status changed."""

    @abc.abstractmethod
    def health_events(self, app: AppKey, since: float, until: float) -> list[HealthEvent]:
        """Events in ``[since, until]`` plus the last one before ``since`` (the state at the start)."""

    # -- retention ----------------------------------------------------------------------------

    @abc.abstractmethod
    def prune_alerting(self, now: float, *, history_seconds: float, outbox_seconds: float) -> dict[str, int]:
        """Delete history and health events older than ``history_seconds``, finished outbox
        entries older than ``outbox_seconds``, and instances of deleted rules."""
