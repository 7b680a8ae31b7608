"""The storage interface: everything above it (ingest, folding, queries, report, dashboard,
alerting) reads and writes through :class:`Storage`; only the backends import a database driver.
This module is only the interface: the records it takes and returns are in :mod:`.records`.

The data model, common to every backend:

- a **queue** of raw messages (startup, sync, request-log files) committed by ingest: a 2xx from
  the hub means the message is in it. ``(client_id, kind, message_uuid)`` is unique, so a resend
  is recognised (also across hub processes). Workers claim pending messages with a lease, fold
  them outside any transaction, and apply the result in one transaction that also marks the
  message folded (or advances its ``fold_offset`` when a big message is applied in chunks);
  the apply checks that the claim still holds, so nothing is counted twice.
- **aggregates across instances** at three resolutions (minute, hour, day), written together by
  the apply, each kept for its own retention: traffic per endpoint and status, traffic per
  consumer, endpoint and status, validation errors, server-error counts (the error's text is kept
  once per group), and heartbeats (syncs per minute). Histogram bins are additive, so a coarser
  row equals the sum of the finer rows it covers.
- registries: instances, consumers (with name/group history, and a name and group set in the
  dashboard, which win over the client's), the request log, rejections.
- the apps registry: apps created (or named) in the dashboard or the API — name, framework, envs
  — by client id; apps that report without one are still apps (:meth:`Storage.list_apps`).
- settings: a few named values per app (e.g. the dashboard's Apdex threshold), per endpoint (its
  own Apdex threshold, whether the dashboard leaves it out), and the hub's own
  under :data:`~.records.HUB_SETTINGS` (e.g. the secret that signs dashboard sessions); never pruned.
- OTLP ingest: write tokens (per app, revocable; :meth:`Storage.app_for_write_token` finds the
  app of one), and the last point of each cumulative series (:meth:`Storage.swap_series`) that
  turns the next one into a delta, kept for two days.
- alerting (:mod:`.alerts`, reached as ``storage.alerts``): rules, channels, alert state and
  history, silences, the notification outbox, health checks.

Methods are synchronous; callers on the event loop run them in worker threads. Backends must be
safe to call from several threads at once.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping, Sequence

from apitally_hub.storage.alerts import AlertStore
from apitally_hub.storage.records import (
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


class Storage(abc.ABC):
    """One hub's store. ``open()`` connects and migrates; ``close()`` is safe to call twice."""

    url: str
    """Where the data lives, for messages (never includes a password)."""

    fold_chunk_items: int = 500
    """Items a folding worker applies per transaction, and messages it claims at once: small
    where a write transaction locks the whole store (SQLite: 500 items are about 3 000 upserts, a
    few tens of milliseconds that ingest may wait), larger where it locks only the rows it
    touches (each apply has a cost of its own, whatever its size)."""
    fold_claim_limit: int = 100
    fold_pause_seconds: float = 0.0
    """A folding worker's pause after each apply, so that writers in other processes get the
    store's write lock in between (SQLite: one lock per file, no queue across processes)."""

    # -- lifecycle ----------------------------------------------------------------------------

    @abc.abstractmethod
    def open(self) -> int:
        """Connect and run pending migrations; returns the schema version."""

    @abc.abstractmethod
    def close(self) -> None: ...

    @abc.abstractmethod
    def schema_version(self) -> int: ...

    # -- ingest -------------------------------------------------------------------------------

    @abc.abstractmethod
    def enqueue(self, message: RawMessage) -> bool:
        """Commit ``message`` to the queue; False when ``(client_id, kind, message_uuid)`` is stored."""

    @abc.abstractmethod
    def enqueue_many(
        self, messages: Sequence[RawMessage], *, forget_series: Sequence[SeriesRef] = ()
    ) -> list[bool]:
        """:meth:`enqueue` each of ``messages`` in one transaction (all committed, or none); for
        each, False when it was stored already (or earlier in ``messages``). The series rows
        ``forget_series`` are deleted in the same transaction (what the messages were made of)."""

    @abc.abstractmethod
    def record_rejection(self, rejection: Rejection) -> None: ...

    # -- OTLP ingest ---------------------------------------------------------------------------

    @abc.abstractmethod
    def app_for_write_token(self, token: str) -> str | None:
        """The client id whose unrevoked write token ``token`` is; None for any other text. One
        indexed lookup (every OTLP request makes it; callers may cache the answer briefly)."""

    @abc.abstractmethod
    def swap_series(
        self, app: AppKey, instance_id: str, points: Sequence[SeriesPoint], now: float
    ) -> dict[str, SeriesPoint]:
        """In one transaction: the stored point of every key of ``points`` that had one (as it was
        before this call), and each of ``points`` stored in its place — unless the stored point has
        the same ``start_nano`` and a ``time_nano`` at least as late (a resend or a late point: the
        stored one stays). A new ``start_nano`` (the series restarted) always replaces it. Several
        hub processes may call it at once: each sees the points the others stored before it.
        :meth:`prune` forgets series not updated for two days."""

    @abc.abstractmethod
    def series_with_prefix(
        self,
        prefix: str,
        *,
        updated_before: float | None = None,
        app: AppKey | None = None,
        instance_id: str | None = None,
        limit: int = 1000,
    ) -> list[tuple[SeriesRef, SeriesPoint]]:
        """The series rows whose key starts with ``prefix``, oldest update first (at most
        ``limit``): only those not updated since ``updated_before`` and of ``app`` and
        ``instance_id`` when given."""

    # -- folding ------------------------------------------------------------------------------

    @abc.abstractmethod
    def claim(self, worker: str, *, limit: int, lease_seconds: float, now: float) -> list[ClaimedMessage]:
        """Claim up to ``limit`` pending messages (oldest first) not claimed by a live lease."""

    @abc.abstractmethod
    def apply(self, worker: str, deltas: Mapping[AppKey, AppDelta], progress: Sequence[FoldProgress]) -> None:
        """In one transaction: add ``deltas`` to the aggregates and record ``progress``; raises
        :class:`~.records.ClaimLost` (and writes nothing) when a message is not claimed by
        ``worker`` at ``expected_offset`` any more."""

    @abc.abstractmethod
    def queue_stats(self) -> QueueStats: ...

    @abc.abstractmethod
    def pending_by_client(self) -> dict[str, tuple[int, float]]:
        """Client id -> (stored bytes of its pending messages, when the oldest was received)."""

    # -- background jobs ----------------------------------------------------------------------

    @abc.abstractmethod
    def try_lease(self, name: str, holder: str, *, seconds: float, now: float) -> bool:
        """Take or renew the named lease (one holder at a time across processes)."""

    @abc.abstractmethod
    def release_lease(self, name: str, holder: str) -> None: ...

    @abc.abstractmethod
    def prune(self, policy: RetentionPolicy, now: float) -> dict[str, int]:
        """Delete what ``policy`` no longer keeps; returns rows deleted per kind."""

    # -- alerting -----------------------------------------------------------------------------

    @property
    @abc.abstractmethod
    def alerts(self) -> AlertStore:
        """Alert rules, channels, state, history, silences, outbox, health checks
        (:mod:`apitally_hub.storage.alerts`)."""

    # -- reads --------------------------------------------------------------------------------

    @abc.abstractmethod
    def list_apps(self) -> list[AppInfo]: ...

    @abc.abstractmethod
    def traffic(self, query: TrafficQuery) -> list[TrafficRow]: ...

    @abc.abstractmethod
    def count_traffic_groups(self, query: TrafficQuery) -> int:
        """How many rows :meth:`traffic` returns without ``limit``/``offset`` (for paging)."""

    @abc.abstractmethod
    def validation_errors(self, query: EventQuery) -> tuple[list[ValidationErrorRow], int]:
        """Rows of the page, most frequent first, and the total number of rows."""

    @abc.abstractmethod
    def server_errors(self, query: EventQuery) -> tuple[list[ServerErrorRow], int]: ...

    @abc.abstractmethod
    def heartbeats(self, app: AppKey, since: int, until: int) -> list[tuple[int, int]]:
        """(minute, syncs) for the minutes in ``[since, until]`` that had a sync."""

    @abc.abstractmethod
    def instances(self, app: AppKey) -> list[InstanceInfo]: ...

    @abc.abstractmethod
    def consumers_info(self, app: AppKey, identifiers: Sequence[str]) -> dict[str, ConsumerInfo]: ...

    @abc.abstractmethod
    def consumer_groups(self, app: AppKey) -> list[tuple[str, int]]:
        """(group, consumers in it) for every named group."""

    @abc.abstractmethod
    def recent_consumers(
        self, app: AppKey, seen_since: float, *, group: str | None, limit: int, offset: int
    ) -> tuple[list[ConsumerInfo], int]:
        """The consumers last seen at or after ``seen_since`` (of ``group``), most recent first:
        a page and the number of them (from the registry, without reading traffic)."""

    @abc.abstractmethod
    def consumer_history(self, app: AppKey, identifiers: Sequence[str]) -> list[ConsumerChange]: ...

    @abc.abstractmethod
    def set_consumer_overrides(
        self, app: AppKey, identifier: str, *, name: str | None, group: str | None, now: float
    ) -> ConsumerInfo | None:
        """Set the dashboard's name and group of a consumer (None: none set, the client's holds;
        both None: a reset). They win over the client's until changed or reset here. A consumer
        whose group changes takes its traffic history along to the new group's totals. Returns
        the consumer as it is now; None when the app env has no such consumer."""

    @abc.abstractmethod
    def request_log(self, query: LogQuery) -> tuple[list[LogSummary], int]:
        """Newest first; the page and the number of matching items."""

    @abc.abstractmethod
    def request_log_item(self, app: AppKey, request_uuid: str) -> tuple[LogSummary, str, str] | None:
        """(summary, file uuid, the line's JSON text)."""

    @abc.abstractmethod
    def rejections(
        self, app: AppKey, since: float, until: float, *, limit: int, before: tuple[float, int] | None
    ) -> list[RejectionRow]: ...

    # -- settings -----------------------------------------------------------------------------

    @abc.abstractmethod
    def app_settings(self, app: AppKey) -> dict[str, str]:
        """The named settings stored for ``app`` (:data:`~.records.HUB_SETTINGS`: the hub's own)."""

    @abc.abstractmethod
    def put_app_setting(
        self, app: AppKey, name: str, value: str, *, now: float, keep_existing: bool = False
    ) -> str:
        """Store ``value`` under ``name`` (``keep_existing``: only when there is none yet, so that
        concurrent hub processes agree on one); returns the value stored now."""

    @abc.abstractmethod
    def delete_app_setting(self, app: AppKey, name: str) -> None: ...

    @abc.abstractmethod
    def endpoint_settings(self, app: AppKey) -> list[EndpointSetting]:
        """The endpoints of ``app`` with a setting of their own (by path, then method)."""

    @abc.abstractmethod
    def put_endpoint_setting(self, app: AppKey, setting: EndpointSetting) -> None:
        """Store an endpoint's settings (replacing its previous ones)."""

    # -- the apps registry -----------------------------------------------------------------------

    @abc.abstractmethod
    def app_records(self) -> list[AppRecord]:
        """Every app of the registry, by client id."""

    @abc.abstractmethod
    def app_record(self, client_id: str) -> AppRecord | None: ...

    @abc.abstractmethod
    def put_app(self, record: AppRecord) -> None:
        """Create or replace the app ``record.client_id`` (a replaced one keeps its ``created_at``)."""

    @abc.abstractmethod
    def delete_app(self, client_id: str) -> dict[str, int]:
        """In one transaction, delete the app and everything held for it in any env: its registry
        row, queued messages, aggregates, instances, consumers, request log, rejections, settings
        and alerting; returns the rows deleted per table (none: nothing was held)."""

    # -- write tokens (OTLP ingest's per-app credentials) ------------------------------------------

    @abc.abstractmethod
    def write_tokens(self, client_id: str) -> list[WriteToken]:
        """The app's write tokens, revoked ones too, oldest first."""

    @abc.abstractmethod
    def add_write_token(self, token: WriteToken) -> None: ...

    @abc.abstractmethod
    def revoke_write_token(self, client_id: str, token: str, now: float) -> bool:
        """Revoke the app's ``token`` (one revoked before keeps its ``revoked_at``); False when the
        app has no such token."""


StorageFactory = Callable[[str], Storage]
