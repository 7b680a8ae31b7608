""":class:`SQLStorage`: the :class:`~apitally_hub.storage.base.Storage` methods that SQLite and
PostgreSQL share, over two hooks a backend provides — run a function in a write transaction, or
in a read-only snapshot — and its :class:`~.dialect.Dialect`."""

from __future__ import annotations

import abc
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

from apitally_hub.storage.alerts import AlertStore
from apitally_hub.storage.base import Storage
from apitally_hub.storage.records import (
    HOUR,
    AppDelta,
    AppInfo,
    AppKey,
    AppRecord,
    ClaimedMessage,
    ConsumerChange,
    ConsumerInfo,
    EndpointSetting,
    EventQuery,
    FoldProgress,
    InstanceInfo,
    LogQuery,
    LogSummary,
    QueueStats,
    RawMessage,
    Rejection,
    RejectionRow,
    RetentionPolicy,
    SeriesPoint,
    SeriesRef,
    ServerErrorRow,
    TrafficQuery,
    TrafficRow,
    ValidationErrorRow,
    WriteToken,
)
from apitally_hub.storage.sql import (
    app_settings,
    apps,
    consumer_overrides,
    endpoint_settings,
    otlp_series,
    reads,
    write_tokens,
    writes,
)
from apitally_hub.storage.sql.alerts import SQLAlertStore
from apitally_hub.storage.sql.dialect import Dialect
from apitally_hub.storage.sql.tx import Tx

_logger = logging.getLogger(__name__)

T = TypeVar("T")


class SQLStorage(Storage):
    dialect: Dialect

    @abc.abstractmethod
    def write(self, work: Callable[[Tx], T]) -> T:
        """Run ``work`` in one write transaction: committed on return, rolled back on error."""

    @abc.abstractmethod
    def read(self, work: Callable[[Tx], T]) -> T:
        """Run ``work`` in one read-only transaction (a consistent snapshot)."""

    @property
    def alerts(self) -> AlertStore:
        store: SQLAlertStore | None = self.__dict__.get("_alerts")
        if store is None:
            store = self.__dict__["_alerts"] = SQLAlertStore(self)
        return store

    # -- ingest -------------------------------------------------------------------------------

    def enqueue(self, message: RawMessage) -> bool:
        return self.write(lambda tx: writes.enqueue(tx, message))

    def enqueue_many(
        self, messages: Sequence[RawMessage], *, forget_series: Sequence[SeriesRef] = ()
    ) -> list[bool]:
        # inserted in key order (concurrent batches take the unique index's locks in one order)
        order = sorted(
            range(len(messages)),
            key=lambda i: (messages[i].app.client_id, messages[i].kind, messages[i].message_uuid),
        )

        def work(tx: Tx) -> list[bool]:
            stored = [False] * len(messages)
            for i in order:
                stored[i] = writes.enqueue(tx, messages[i])
            otlp_series.forget(tx, forget_series)
            return stored

        return self.write(work) if messages or forget_series else []

    def record_rejection(self, rejection: Rejection) -> None:
        self.write(lambda tx: writes.record_rejection(tx, rejection))

    # -- OTLP ingest ----------------------------------------------------------------------------

    def app_for_write_token(self, token: str) -> str | None:
        if not WriteToken.is_well_formed(token):
            return None
        return self.read(lambda tx: write_tokens.app_for_write_token(tx, token))

    def swap_series(
        self, app: AppKey, instance_id: str, points: Sequence[SeriesPoint], now: float
    ) -> dict[str, SeriesPoint]:
        if not points:
            return {}
        dialect = self.dialect
        return self.write(lambda tx: otlp_series.swap_series(tx, dialect, app, instance_id, points, now))

    def series_with_prefix(
        self,
        prefix: str,
        *,
        updated_before: float | None = None,
        app: AppKey | None = None,
        instance_id: str | None = None,
        limit: int = 1000,
    ) -> list[tuple[SeriesRef, SeriesPoint]]:
        return self.read(
            lambda tx: otlp_series.with_prefix(
                tx, prefix, updated_before=updated_before, app=app, instance_id=instance_id, limit=limit
            )
        )

    # -- folding ------------------------------------------------------------------------------

    def claim(self, worker: str, *, limit: int, lease_seconds: float, now: float) -> list[ClaimedMessage]:
        return self.write(
            lambda tx: writes.claim(
                tx, self.dialect, worker, limit=limit, lease_seconds=lease_seconds, now=now
            )
        )

    def apply(self, worker: str, deltas: Mapping[AppKey, AppDelta], progress: Sequence[FoldProgress]) -> None:
        now = time.time()

        def work(tx: Tx) -> None:
            writes.record_progress(tx, worker, progress, now)
            writes.apply_all(tx, self.dialect, deltas)

        self.write(work)

    def queue_stats(self) -> QueueStats:
        def work(tx: Tx) -> QueueStats:
            pending, oldest = tx.execute(
                "SELECT COUNT(*), MIN(received_at) FROM queue WHERE folded_at IS NULL"
            ).fetchone()
            folded, failed = tx.execute(
                "SELECT COUNT(*), COUNT(fold_error) FROM queue WHERE folded_at IS NOT NULL"
            ).fetchone()
            return QueueStats(int(pending), oldest, int(folded), int(failed))

        return self.read(work)

    def pending_by_client(self) -> dict[str, tuple[int, float]]:
        def work(tx: Tx) -> dict[str, tuple[int, float]]:
            rows = tx.execute(
                "SELECT client_id, SUM(body_size), MIN(received_at) FROM queue WHERE folded_at IS NULL"
                " GROUP BY client_id"
            ).fetchall()
            return {client: (int(size), float(oldest)) for client, size, oldest in rows}

        return self.read(work)

    # -- background jobs ----------------------------------------------------------------------

    def try_lease(self, name: str, holder: str, *, seconds: float, now: float) -> bool:
        return self.write(lambda tx: writes.try_lease(tx, name, holder, seconds, now))

    def release_lease(self, name: str, holder: str) -> None:
        self.write(lambda tx: writes.release_lease(tx, name, holder))

    def prune(self, policy: RetentionPolicy, now: float) -> dict[str, int]:
        apps = [info.app for info in self.list_apps()]
        deleted: dict[str, int] = {}
        for kind, statement, params in writes.prune_steps(policy, now, apps):

            def step(tx: Tx, statement: str = statement, params: list[object] = params) -> int:
                return tx.execute(statement, params).rowcount

            deleted[kind] = deleted.get(kind, 0) + max(self.write(step), 0)
        deleted["otlp_series"] = self.write(lambda tx: otlp_series.prune(tx, now))
        deleted.update(
            self.alerts.prune_alerting(
                now, history_seconds=policy.resolutions[HOUR], outbox_seconds=policy.rejections
            )
        )
        return deleted

    # -- reads --------------------------------------------------------------------------------

    def list_apps(self) -> list[AppInfo]:
        return self.read(reads.list_apps)

    def traffic(self, query: TrafficQuery) -> list[TrafficRow]:
        return self.read(lambda tx: reads.traffic(tx, self.dialect, query))

    def count_traffic_groups(self, query: TrafficQuery) -> int:
        return self.read(lambda tx: reads.count_traffic_groups(tx, self.dialect, query))

    def validation_errors(self, query: EventQuery) -> tuple[list[ValidationErrorRow], int]:
        return self.read(lambda tx: reads.validation_errors(tx, self.dialect, query))

    def server_errors(self, query: EventQuery) -> tuple[list[ServerErrorRow], int]:
        return self.read(lambda tx: reads.server_errors(tx, self.dialect, query))

    def heartbeats(self, app: AppKey, since: int, until: int) -> list[tuple[int, int]]:
        return self.read(lambda tx: reads.heartbeats(tx, app, since, until))

    def instances(self, app: AppKey) -> list[InstanceInfo]:
        return self.read(lambda tx: reads.instances(tx, app))

    def consumers_info(self, app: AppKey, identifiers: Sequence[str]) -> dict[str, ConsumerInfo]:
        return self.read(lambda tx: reads.consumers_info(tx, app, identifiers))

    def consumer_groups(self, app: AppKey) -> list[tuple[str, int]]:
        return self.read(lambda tx: reads.consumer_groups(tx, app))

    def recent_consumers(
        self, app: AppKey, seen_since: float, *, group: str | None, limit: int, offset: int
    ) -> tuple[list[ConsumerInfo], int]:
        return self.read(lambda tx: reads.recent_consumers(tx, app, seen_since, group, limit, offset))

    def consumer_history(self, app: AppKey, identifiers: Sequence[str]) -> list[ConsumerChange]:
        return self.read(lambda tx: reads.consumer_history(tx, app, identifiers))

    def set_consumer_overrides(
        self, app: AppKey, identifier: str, *, name: str | None, group: str | None, now: float
    ) -> ConsumerInfo | None:
        dialect = self.dialect
        return self.write(
            lambda tx: consumer_overrides.set_overrides(tx, dialect, app, identifier, name, group, now)
        )

    def request_log(self, query: LogQuery) -> tuple[list[LogSummary], int]:
        return self.read(lambda tx: reads.request_log(tx, self.dialect, query))

    def request_log_item(self, app: AppKey, request_uuid: str) -> tuple[LogSummary, str, str] | None:
        return self.read(lambda tx: reads.request_log_item(tx, app, request_uuid))

    def rejections(
        self, app: AppKey, since: float, until: float, *, limit: int, before: tuple[float, int] | None
    ) -> list[RejectionRow]:
        return self.read(lambda tx: reads.rejections(tx, app, since, until, limit, before))

    # -- settings -----------------------------------------------------------------------------

    def app_settings(self, app: AppKey) -> dict[str, str]:
        return self.read(lambda tx: app_settings.app_settings(tx, app))

    def put_app_setting(
        self, app: AppKey, name: str, value: str, *, now: float, keep_existing: bool = False
    ) -> str:
        return self.write(lambda tx: app_settings.put_app_setting(tx, app, name, value, now, keep_existing))

    def delete_app_setting(self, app: AppKey, name: str) -> None:
        self.write(lambda tx: app_settings.delete_app_setting(tx, app, name))

    def endpoint_settings(self, app: AppKey) -> list[EndpointSetting]:
        return self.read(lambda tx: endpoint_settings.endpoint_settings(tx, app))

    def put_endpoint_setting(self, app: AppKey, setting: EndpointSetting) -> None:
        self.write(lambda tx: endpoint_settings.put_endpoint_setting(tx, app, setting))

    # -- the apps registry ----------------------------------------------------------------------

    def app_records(self) -> list[AppRecord]:
        return self.read(apps.app_records)

    def app_record(self, client_id: str) -> AppRecord | None:
        return self.read(lambda tx: apps.app_record(tx, client_id))

    def put_app(self, record: AppRecord) -> None:
        self.write(lambda tx: apps.put_app(tx, record))

    def delete_app(self, client_id: str) -> dict[str, int]:
        return self.write(lambda tx: apps.delete_app(tx, client_id))

    # -- write tokens -----------------------------------------------------------------------------

    def write_tokens(self, client_id: str) -> list[WriteToken]:
        return self.read(lambda tx: write_tokens.write_tokens(tx, client_id))

    def add_write_token(self, token: WriteToken) -> None:
        self.write(lambda tx: write_tokens.add_write_token(tx, token))

    def revoke_write_token(self, client_id: str, token: str, now: float) -> bool:
        return self.write(lambda tx: write_tokens.revoke_write_token(tx, client_id, token, now))
