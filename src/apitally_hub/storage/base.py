"""The storage interface: everything above it (ingest, folding, queries, report, dashboard,
alerting) reads and writes through :class:`Storage`; only the backends import a database driver.

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
- registries: instances, consumers (with name/group history), the request log, rejections.
- settings: a few named values per app (e.g. the dashboard's Apdex threshold), and the hub's own
  under :data:`HUB_SETTINGS` (e.g. the secret that signs dashboard sessions); never pruned.
- alerting (:mod:`.alerts`, reached as ``storage.alerts``): rules, channels, alert state and
  history, silences, the notification outbox, health checks.

Methods are synchronous; callers on the event loop run them in worker threads. Backends must be
safe to call from several threads at once.
"""

from __future__ import annotations

import abc
import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from apitally_hub.storage.alerts import AlertStore

MINUTE, HOUR, DAY = 60, 3600, 86400
RESOLUTIONS: tuple[int, ...] = (MINUTE, HOUR, DAY)
"""Aggregate resolutions in seconds, finest first."""

NO_CONSUMER = ""
"""Stored in place of a null consumer (identifiers are never empty), so keys stay unique."""

MAX_STORED_COUNT = 2**53
"""Counters saturate here when aggregated, so no sum ever overflows a 64-bit integer."""


def error_group_hash(method: str, path: str, type_: str, msg: str, traceback: str) -> str:
    """The identity of a server-error group: the same error on the same endpoint, any consumer."""
    identity = json.dumps((method, path, type_, msg, traceback), separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(identity.encode()).hexdigest()[:32]


Bins = dict[int, int]
"""A sparse histogram: lower bin edge -> count (10 ms bins for times, kB bins for sizes)."""


@dataclass(frozen=True, order=True)
class AppKey:
    client_id: str
    env: str


HUB_SETTINGS = AppKey("", "")
"""The key under which the hub keeps its own settings (no app has an empty client id)."""


# -- the queue ---------------------------------------------------------------------------------

MessageKind = Literal["startup", "sync", "log"]


@dataclass(frozen=True)
class RawMessage:
    """A message as ingest accepted it. ``body`` is what the backend stores (see ``encoding``)."""

    app: AppKey
    kind: MessageKind
    message_uuid: str
    instance_uuid: str | None
    received_at: float
    body: bytes
    encoding: Literal["zlib", "gzip"]
    """``zlib``: the JSON body compressed by ingest; ``gzip``: a request-log file as uploaded."""
    item_count: int = 0
    """How many items folding will apply (sync: requests + errors; log: lines)."""


@dataclass(frozen=True)
class ClaimedMessage:
    message: RawMessage
    fold_offset: int
    """Items already applied by earlier chunks."""


@dataclass(frozen=True)
class QueueStats:
    pending: int
    oldest_received_at: float | None
    """Of the pending messages."""
    folded: int
    failed: int
    """Messages that could not be folded (a bug: they were valid at ingest), kept for inspection."""


# -- what folding applies ----------------------------------------------------------------------


@dataclass
class Counts:
    """Additive request counts of one aggregate row."""

    request_count: int = 0
    request_size_sum: int = 0
    response_size_sum: int = 0
    response_times: Bins = field(default_factory=dict)
    request_sizes: Bins = field(default_factory=dict)
    response_sizes: Bins = field(default_factory=dict)

    def add(self, other: Counts) -> None:
        """Add ``other``'s counts. The histograms are replaced by merged copies, never changed in
        place: folding shares one item's histograms between its rows (every resolution, per
        endpoint and per consumer), and the store serialises each shared histogram once."""
        self.request_count += other.request_count
        self.request_size_sum += other.request_size_sum
        self.response_size_sum += other.response_size_sum
        self.response_times = _merged(self.response_times, other.response_times)
        self.request_sizes = _merged(self.request_sizes, other.request_sizes)
        self.response_sizes = _merged(self.response_sizes, other.response_sizes)


def _merged(first: Bins, second: Bins) -> Bins:
    if not second:
        return first
    merged = dict(first)
    for key, count in second.items():
        merged[key] = merged.get(key, 0) + count
    return merged


EndpointKey = tuple[int, int, str, str, int]
"""(resolution, bucket, method, path, status_code)"""
ConsumerTrafficKey = tuple[int, int, str, str, str, int]
"""(resolution, bucket, consumer, method, path, status_code)"""
ValidationKey = tuple[int, int, str, str, str, str, str, str]
"""(resolution, bucket, consumer, method, path, loc (JSON), msg, type)"""
ServerErrorKey = tuple[int, int, str, str]
"""(resolution, bucket, error_hash, consumer)"""


@dataclass(frozen=True)
class ServerErrorGroup:
    error_hash: str
    method: str
    path: str
    type: str
    msg: str
    traceback: str
    sentry_event_id: str | None
    seen_at: float


@dataclass(frozen=True)
class Heartbeat:
    instance_uuid: str
    timestamp: float
    received_at: float
    cpu_percent: float | None
    memory_rss: int | None


@dataclass(frozen=True)
class Startup:
    instance_uuid: str
    received_at: float
    client: str
    versions: Mapping[str, str]
    paths: Sequence[tuple[str, str]]
    openapi: str | None


@dataclass(frozen=True)
class ConsumerSeen:
    identifier: str
    first_seen: float
    last_seen: float


@dataclass(frozen=True)
class ConsumerNamed:
    identifier: str
    name: str | None
    group: str | None
    at: float


@dataclass(frozen=True)
class LogRow:
    request_uuid: str
    timestamp: float
    method: str
    path: str | None
    url: str
    status_code: int
    response_time: float
    consumer: str | None
    request_size: int | None
    response_size: int | None
    trace_id: str | None
    exception_type: str | None
    item: str
    """The line's JSON text."""


@dataclass
class AppDelta:
    """Everything one fold adds for one app; every mapping is pre-aggregated by its key."""

    endpoints: dict[EndpointKey, Counts] = field(default_factory=dict)
    consumer_traffic: dict[ConsumerTrafficKey, Counts] = field(default_factory=dict)
    validation_errors: dict[ValidationKey, int] = field(default_factory=dict)
    server_errors: dict[ServerErrorKey, int] = field(default_factory=dict)
    server_error_groups: dict[str, ServerErrorGroup] = field(default_factory=dict)
    heartbeats: dict[int, int] = field(default_factory=dict)
    """minute -> syncs received for that minute"""
    instance_syncs: list[Heartbeat] = field(default_factory=list)
    startups: list[Startup] = field(default_factory=list)
    consumers_seen: dict[str, ConsumerSeen] = field(default_factory=dict)
    consumers_named: list[ConsumerNamed] = field(default_factory=list)
    """In the order the syncs were made (timestamp order)."""
    log_rows: list[tuple[str, LogRow]] = field(default_factory=list)
    """(file_uuid, row)"""

    def is_empty(self) -> bool:
        return not any(
            (
                self.endpoints,
                self.validation_errors,
                self.server_errors,
                self.heartbeats,
                self.instance_syncs,
                self.startups,
                self.consumers_seen,
                self.consumers_named,
                self.log_rows,
            )
        )


@dataclass(frozen=True)
class FoldProgress:
    """What an apply does to one claimed message: advance to ``offset`` and, if ``done``, finish it."""

    app: AppKey
    kind: MessageKind
    message_uuid: str
    expected_offset: int
    offset: int
    done: bool
    error: str | None = None


class StoreUnavailable(Exception):
    """The store cannot be reached or is too busy right now (a database server gone away, a lock
    not granted in time). The call that raised it must be taken as not committed (it rarely may
    have been, when a connection broke during ``COMMIT``: retrying is safe, as enqueue
    deduplicates and an apply checks its claim). The hub answers 503 with ``Retry-After``; the
    backend reconnects by itself."""


class ClaimLost(Exception):
    """The apply found a message no longer claimed by this worker (its lease expired); nothing was
    written. Another worker will fold it."""


# -- reads ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Segment:
    """Buckets ``start..end`` (inclusive, aligned) at one resolution; a window is a union of these."""

    resolution: int
    start: int
    end: int


TrafficDim = Literal["bucket", "method", "path", "status_code", "consumer", "consumer_group"]
"""``consumer_group`` is grouped by alone, without histograms; requests without a group are left
out. Without an endpoint or consumer filter it counts each request for the group its consumer had
when the request was folded (the groups' own aggregate); with one, for the consumers' current
groups (summed from the members' rows)."""


@dataclass(frozen=True)
class TrafficFilter:
    method: str | None = None
    path: str | None = None
    consumer: str | None = None
    """An identifier; ``NO_CONSUMER`` selects requests without one."""
    consumer_group: str | None = None
    consumers: tuple[str, ...] | None = None
    """Only these identifiers (a page of a consumer list)."""
    status_class: int | None = None
    """1-5: only 1xx ... 5xx."""
    status_code: int | None = None
    identified_only: bool = False
    """Leave out requests without a consumer."""

    @property
    def needs_consumers(self) -> bool:
        return (
            self.consumer is not None
            or self.consumer_group is not None
            or self.consumers is not None
            or self.identified_only
        )


@dataclass(frozen=True)
class TrafficQuery:
    app: AppKey
    segments: tuple[Segment, ...]
    group_by: tuple[TrafficDim, ...] = ()
    filter: TrafficFilter = TrafficFilter()
    bucket_seconds: int | None = None
    """With ``"bucket"`` in ``group_by``: buckets of this many seconds (a multiple of every
    segment's resolution), keyed by their start."""
    response_times: bool = False
    sizes: bool = False
    order: Literal["key", "requests"] = "key"
    limit: int | None = None
    offset: int = 0


@dataclass(frozen=True)
class TrafficRow:
    key: tuple[Any, ...]
    """Values of ``group_by``, in order."""
    request_count: int
    client_errors: int
    server_errors: int
    request_size_sum: int
    response_size_sum: int
    response_times: Bins
    request_sizes: Bins
    response_sizes: Bins


@dataclass(frozen=True)
class ValidationErrorRow:
    method: str
    path: str
    loc: str
    """JSON array text."""
    msg: str
    type: str
    count: int
    consumers: int
    first_bucket: int
    last_bucket: int


@dataclass(frozen=True)
class ServerErrorRow:
    error_hash: str
    method: str
    path: str
    type: str
    msg: str
    traceback: str
    sentry_event_id: str | None
    count: int
    consumers: int
    first_bucket: int
    last_bucket: int


@dataclass(frozen=True)
class EventQuery:
    app: AppKey
    segments: tuple[Segment, ...]
    filter: TrafficFilter = TrafficFilter()
    limit: int = 100
    offset: int = 0


@dataclass(frozen=True)
class AppInfo:
    app: AppKey
    instances: int
    first_seen: float
    last_seen: float
    last_sync_at: float | None


@dataclass(frozen=True)
class InstanceInfo:
    instance_uuid: str
    first_seen: float
    last_seen: float
    startup_at: float | None
    last_sync_at: float | None
    last_sync_ts: float | None
    sync_interval: float | None
    syncs: int
    client: str | None
    versions: dict[str, str]
    paths: list[dict[str, str]]
    openapi: str | None
    cpu_percent: float | None
    memory_rss: int | None


@dataclass(frozen=True)
class ConsumerInfo:
    identifier: str
    name: str | None
    group: str | None
    first_seen: float
    last_seen: float


@dataclass(frozen=True)
class ConsumerChange:
    identifier: str
    name: str | None
    group: str | None
    changed_at: float


@dataclass(frozen=True)
class LogQuery:
    app: AppKey
    since: float
    until: float
    method: str | None = None
    path: str | None = None
    status_code: int | None = None
    status_class: int | None = None
    consumer: str | None = None
    search: str | None = None
    """Case-insensitive substring of the URL."""
    min_response_time: float | None = None
    max_response_time: float | None = None
    limit: int = 100
    before: tuple[float, int] | None = None
    """Keyset cursor: only items older than this (timestamp, row id)."""


@dataclass(frozen=True)
class LogSummary:
    row_id: int
    request_uuid: str
    timestamp: float
    method: str
    path: str | None
    url: str
    status_code: int
    response_time: float
    consumer: str | None
    request_size: int | None
    response_size: int | None
    trace_id: str | None
    exception_type: str | None


@dataclass(frozen=True)
class RejectionRow:
    row_id: int
    received_at: float
    endpoint: str
    status_code: int
    detail: str
    """JSON text."""


@dataclass(frozen=True)
class Rejection:
    app: AppKey
    endpoint: str
    status_code: int
    detail: str
    received_at: float


@dataclass(frozen=True)
class RetentionPolicy:
    """How long each kind of data is kept, in seconds."""

    resolutions: Mapping[int, float]
    """resolution -> retention of its aggregates"""
    request_log: float
    raw_messages: float
    rejections: float
    registries: float
    """instances and consumers not seen for this long"""


Page = tuple[list[Any], int]


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
    def record_rejection(self, rejection: Rejection) -> None: ...

    # -- folding ------------------------------------------------------------------------------

    @abc.abstractmethod
    def claim(self, worker: str, *, limit: int, lease_seconds: float, now: float) -> list[ClaimedMessage]:
        """Claim up to ``limit`` pending messages (oldest first) not claimed by a live lease."""

    @abc.abstractmethod
    def apply(self, worker: str, deltas: Mapping[AppKey, AppDelta], progress: Sequence[FoldProgress]) -> None:
        """In one transaction: add ``deltas`` to the aggregates and record ``progress``; raises
        :class:`ClaimLost` (and writes nothing) when a message is not claimed by ``worker`` at
        ``expected_offset`` any more."""

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
        """The named settings stored for ``app`` (:data:`HUB_SETTINGS`: the hub's own)."""

    @abc.abstractmethod
    def put_app_setting(
        self, app: AppKey, name: str, value: str, *, now: float, keep_existing: bool = False
    ) -> str:
        """Store ``value`` under ``name`` (``keep_existing``: only when there is none yet, so that
        concurrent hub processes agree on one); returns the value stored now."""

    @abc.abstractmethod
    def delete_app_setting(self, app: AppKey, name: str) -> None: ...


StorageFactory = Callable[[str], Storage]
