"""The values that cross the storage interface (:class:`~.base.Storage`): keys and constants,
the queue's messages, what folding applies, the queries and rows of the read side, the retention
policy, and the two exceptions a backend raises. Plain data, no database: ingest, folding, the
query layer and every backend share them.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

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
    client_ip: str | None = None


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
    log_attachments: list[tuple[str, list[dict[str, Any]]]] = field(default_factory=list)
    """(request uuid, log records): records that came apart from their request-log item (an
    OTLP sender's log records of a request), added to its ``logs`` if it is stored."""

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
                self.log_attachments,
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
    excluded: tuple[tuple[str, str], ...] = ()
    """(method, path) of endpoints to leave out (those excluded in the dashboard)."""

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
    """A consumer of the registry. ``name`` and ``group`` are the ones it has: the dashboard's
    (``dashboard_name``, ``dashboard_group``: set there or through the JSON API, None when not)
    where set, else the client's (``client_name``, ``client_group``)."""

    identifier: str
    name: str | None
    group: str | None
    first_seen: float
    last_seen: float
    client_name: str | None = None
    client_group: str | None = None
    dashboard_name: str | None = None
    dashboard_group: str | None = None


@dataclass(frozen=True)
class EndpointSetting:
    """An endpoint's settings: its own Apdex threshold (None: the app env's), and whether the
    dashboard, the query API and alert rules leave it out (``excluded``; its data is kept)."""

    method: str
    path: str
    apdex_ms: int | None
    excluded: bool
    updated_at: float


@dataclass(frozen=True)
class ConsumerChange:
    identifier: str
    name: str | None
    group: str | None
    changed_at: float


LOG_BODY_SCAN = 5000
"""How many of the newest logged requests (matching a query's other filters) a body search reads:
it decodes every one, so this bounds its time (~0.1-0.3 s) whatever the window."""


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
    client_ip: str | None = None
    """The request's client address, exact (as the hub stores it: the text the client sent)."""
    search: str | None = None
    """Case-insensitive substring of the URL."""
    min_response_time: float | None = None
    max_response_time: float | None = None
    min_request_size: int | None = None
    max_request_size: int | None = None
    min_response_size: int | None = None
    max_response_size: int | None = None
    """Sizes in bytes, bounds included (an item without a size matches no bound)."""
    request_body: str | None = None
    response_body: str | None = None
    """Case-insensitive substrings of the bodies. Bodies are kept base64-encoded inside each item,
    where no index reaches them: only the newest :data:`LOG_BODY_SCAN` items matching the other
    filters are searched."""
    attribute: tuple[str, str] | None = None
    """(key, value): items whose ``request.attributes`` has that key with exactly that value. Read
    from each item's JSON, where no index reaches them: like a body search, only the newest
    :data:`LOG_BODY_SCAN` items matching the other filters are searched."""
    limit: int = 100
    before: tuple[float, int] | None = None
    """Keyset cursor: only items older than this (timestamp, row id)."""
    count: bool = True
    """Count every matching item (the answer's ``total``); False: ``total`` is -1 (a CSV download
    reads page after page and needs no count)."""


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


# -- the apps registry -------------------------------------------------------------------------

FRAMEWORKS: tuple[str, ...] = ("starlette", "fastapi", "other")
"""What an app of the registry may be built with (the setup page's snippets follow it)."""


@dataclass(frozen=True)
class AppRecord:
    """An app of the hub's registry: created in the dashboard or the API (or named there after it
    first reported). Its data is keyed by ``client_id`` and each env, like every app's."""

    client_id: str
    name: str
    framework: str
    envs: tuple[str, ...]
    """In the order given; at least one."""
    created_at: float
    updated_at: float


# -- OTLP ingest: write tokens and cumulative series -----------------------------------------------


@dataclass(frozen=True)
class WriteToken:
    """A per-app credential for OTLP ingest (``Authorization: Bearer apt_...``): ``apt_`` and 24
    ASCII letters or digits, the only form the apitally 1.x client accepts
    (``^apt_[a-zA-Z0-9]{24}$``). An app may have several; a revoked one is kept (``revoked_at``
    set) and authenticates nothing."""

    token: str
    client_id: str
    created_at: float
    revoked_at: float | None = None

    @staticmethod
    def generate(client_id: str, now: float) -> WriteToken:
        """A new random token of ``client_id`` (24 characters from :mod:`secrets`: about 143 bits)."""
        alphabet = string.ascii_letters + string.digits
        return WriteToken("apt_" + "".join(secrets.choice(alphabet) for _ in range(24)), client_id, now)

    @staticmethod
    def is_well_formed(token: str) -> bool:
        """Whether ``token`` has a write token's form (checked before any lookup)."""
        body = token[4:]
        return len(token) == 28 and token.startswith("apt_") and body.isascii() and body.isalnum()


@dataclass(frozen=True)
class SeriesPoint:
    """The last point stored of one cumulative OTLP series (of one app env and instance), so that
    the next one can be turned into a delta: ``start_nano`` (a new one: the series restarted),
    ``time_nano``, and the point's ``value`` as text (its encoding is the caller's)."""

    key: str
    start_nano: int
    time_nano: int
    value: str


@dataclass(frozen=True, order=True)
class SeriesRef:
    """Where one ``otlp_series`` row is: its app env, instance and key."""

    app: AppKey
    instance_id: str
    key: str
