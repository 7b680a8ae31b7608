""":class:`SQLAlertStore`: the alerting part of the storage interface, written once for every SQL
backend: each method runs a function of :mod:`.alert_reads` in a read-only transaction or one
of :mod:`.alert_writes` in a write transaction of its backend (:class:`~.tx.Transactions`)."""

from __future__ import annotations

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
from apitally_hub.storage.alerts import AlertStore
from apitally_hub.storage.records import AppKey
from apitally_hub.storage.sql import alert_reads, alert_writes
from apitally_hub.storage.sql.tx import Transactions, Tx


class SQLAlertStore(AlertStore):
    def __init__(self, storage: Transactions) -> None:
        self._storage = storage
        self._dialect = storage.dialect

    # -- channels -----------------------------------------------------------------------------

    def put_channel(self, channel: ChannelRecord) -> None:
        self._storage.write(lambda tx: alert_writes.put_channel(tx, channel))

    def channels(self, app: AppKey) -> list[ChannelRecord]:
        return self._storage.read(lambda tx: alert_reads.channels(tx, app))

    def channel(self, channel_id: str) -> ChannelRecord | None:
        return self._storage.read(lambda tx: alert_reads.channel(tx, channel_id))

    def delete_channel(self, channel_id: str) -> bool:
        return self._storage.write(lambda tx: alert_writes.delete_channel(tx, channel_id))

    # -- rules --------------------------------------------------------------------------------

    def put_rule(self, rule: RuleRecord) -> None:
        self._storage.write(lambda tx: alert_writes.put_rule(tx, rule))

    def rules(self, app: AppKey | None = None) -> list[RuleRecord]:
        return self._storage.read(lambda tx: alert_reads.rules(tx, app))

    def rule(self, rule_id: str) -> RuleRecord | None:
        return self._storage.read(lambda tx: alert_reads.rule(tx, rule_id))

    def delete_rule(self, rule_id: str) -> bool:
        return self._storage.write(lambda tx: alert_writes.delete_rule(tx, rule_id))

    def sync_file_config(self, config: FileConfig, now: float) -> dict[str, int]:
        return self._storage.write(lambda tx: alert_writes.sync_file_config(tx, config, now))

    # -- alert state --------------------------------------------------------------------------

    def instances(self, rule_id: str) -> list[InstanceRecord]:
        return self._storage.read(lambda tx: alert_reads.instances(tx, rule_id))

    def app_instances(self, app: AppKey, states: Sequence[str] | None = None) -> list[InstanceRecord]:
        return self._storage.read(lambda tx: alert_reads.app_instances(tx, app, states))

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
        def work(tx: Tx) -> None:
            alert_writes.commit_evaluation(
                tx, lease, now, lease_seconds, instances, history, notifications, max_pending_per_channel
            )

        self._storage.write(work)

    def history(
        self,
        app: AppKey,
        *,
        limit: int,
        before: tuple[float, str] | None = None,
        rule_id: str | None = None,
    ) -> list[HistoryRecord]:
        return self._storage.read(
            lambda tx: alert_reads.history(tx, app, limit=limit, before=before, rule_id=rule_id)
        )

    # -- silences -----------------------------------------------------------------------------

    def put_silence(self, silence: SilenceRecord) -> None:
        self._storage.write(lambda tx: alert_writes.put_silence(tx, silence))

    def silences(self, app: AppKey | None = None, *, active_at: float | None = None) -> list[SilenceRecord]:
        return self._storage.read(lambda tx: alert_reads.silences(tx, app, active_at=active_at))

    def delete_silence(self, silence_id: str) -> bool:
        return self._storage.write(lambda tx: alert_writes.delete_silence(tx, silence_id))

    # -- notification outbox ------------------------------------------------------------------

    def enqueue_notifications(
        self, notifications: Sequence[OutboxRecord], *, max_pending_per_channel: int
    ) -> None:
        self._storage.write(
            lambda tx: alert_writes.enqueue_notifications(tx, notifications, max_pending_per_channel)
        )

    def claim_notifications(
        self,
        worker: str,
        *,
        now: float,
        limit: int,
        lease_seconds: float,
        exclude_channels: Sequence[str] = (),
    ) -> list[OutboxRecord]:
        def work(tx: Tx) -> list[OutboxRecord]:
            return alert_writes.claim_notifications(
                tx,
                self._dialect,
                worker,
                now=now,
                limit=limit,
                lease_seconds=lease_seconds,
                exclude_channels=exclude_channels,
            )

        return self._storage.write(work)

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
        def work(tx: Tx) -> bool:
            return alert_writes.finish_notification(
                tx,
                notification_id,
                worker,
                status=status,
                now=now,
                error=error,
                next_attempt_at=next_attempt_at,
            )

        return self._storage.write(work)

    def notifications(
        self, app: AppKey, *, limit: int, status: OutboxStatus | None = None
    ) -> list[OutboxRecord]:
        return self._storage.read(lambda tx: alert_reads.notifications(tx, app, limit=limit, status=status))

    def notification(self, notification_id: str) -> OutboxRecord | None:
        return self._storage.read(lambda tx: alert_reads.notification(tx, notification_id))

    # -- health checks ------------------------------------------------------------------------

    def put_health_check(self, check: HealthCheckRecord) -> None:
        self._storage.write(lambda tx: alert_writes.put_health_check(tx, check))

    def health_check(self, app: AppKey) -> HealthCheckRecord | None:
        return self._storage.read(lambda tx: alert_reads.health_check(tx, app))

    def health_checks(self) -> list[HealthCheckRecord]:
        return self._storage.read(alert_reads.health_checks)

    def delete_health_check(self, app: AppKey) -> bool:
        return self._storage.write(lambda tx: alert_writes.delete_health_check(tx, app))

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
        def work(tx: Tx) -> bool:
            return alert_writes.record_health_result(
                tx,
                app,
                status=status,
                at=at,
                status_code=status_code,
                latency_ms=latency_ms,
                error=error,
                event_id=event_id,
            )

        return self._storage.write(work)

    def health_events(self, app: AppKey, since: float, until: float) -> list[HealthEvent]:
        return self._storage.read(lambda tx: alert_reads.health_events(tx, app, since, until))

    # -- retention ----------------------------------------------------------------------------

    def prune_alerting(self, now: float, *, history_seconds: float, outbox_seconds: float) -> dict[str, int]:
        deleted = {}
        steps = alert_writes.prune_steps(now, history_seconds=history_seconds, outbox_seconds=outbox_seconds)
        for kind, sql, params in steps:

            def step(tx: Tx, sql: str = sql, params: Sequence[object] = params) -> int:
                return tx.execute(sql, params).rowcount

            deleted[kind] = max(self._storage.write(step), 0)
        return deleted
