"""Configuration of one local hub instance (a frozen value object, validated on creation)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from apitally_hub.alerting.settings import AlertSettings
from apitally_hub.storage.base import DAY, HOUR, MINUTE, RetentionPolicy

DEFAULT_MAX_BODY_BYTES = 10_000_000
"""Limit for JSON bodies (``/startup`` and ``/sync``), enforced while the body streams in."""

DEFAULT_MAX_LOG_BYTES = 2_000_000
"""Limit for a compressed ``/log`` body: the protocol's 1 MB per file plus a margin."""

DEFAULT_MAX_LOG_DECOMPRESSED_BYTES = 50_000_000
"""Limit for a decompressed ``/log`` body (a gzip bomb is answered with 413)."""

DEFAULT_MAX_INFLIGHT_BODY_BYTES = 64 * 1024 * 1024
"""Process-wide budget for request bodies in flight (see :mod:`.limits.budget`)."""

DEFAULT_INGEST_RATE = 4 * 1024 * 1024
DEFAULT_INGEST_BURST = 256 * 1024 * 1024
"""Per-client ingest rate limit in bytes/s and bytes (see :mod:`.limits.rate`); a rate of 0 turns it off."""

DEFAULT_MAX_QUEUE_LAG = 30.0
"""See :mod:`.limits.backlog`."""

DEFAULT_BODY_TIMEOUT = 30.0
"""Seconds a client has to send a whole request body (408 after that)."""

DEFAULT_RETENTION_DAYS = 30.0
"""Per-minute aggregates (and heartbeats)."""
DEFAULT_HOURLY_RETENTION_DAYS = 395.0
"""Per-hour aggregates: 13 months."""
DEFAULT_DAILY_RETENTION_DAYS = 1826.0
"""Per-day aggregates: 5 years."""
DEFAULT_REQUEST_LOG_RETENTION_DAYS = 15.0
DEFAULT_RAW_RETENTION_DAYS = 3.0
"""Raw messages, after they are folded (kept to recognise resends and to debug clients)."""
DEFAULT_REJECTIONS_RETENTION_DAYS = 7.0
DEFAULT_PRUNE_INTERVAL = 3600.0
DEFAULT_SYNC_INTERVAL = 60.0
"""Assumed sync interval of an instance until two consecutive syncs show the real one."""


def normalize_client_id(value: str) -> str | None:
    """Return the canonical lowercase hyphenated form of a UUID client id, or None if malformed."""
    if len(value) != 36:
        return None
    try:
        parsed = uuid.UUID(value)
    except ValueError:
        return None
    canonical = str(parsed)
    return canonical if canonical == value.lower() else None


def parse_allow_list(client_ids: Iterable[str] | None) -> frozenset[str] | None:
    """Normalize an allow-list of client ids (None: accept any UUID); a malformed id raises ValueError."""
    if client_ids is None:
        return None
    normalized = set()
    for raw in client_ids:
        canonical = normalize_client_id(raw)
        if canonical is None:
            raise ValueError(f"client id {raw!r} is not a UUID")
        normalized.add(canonical)
    return frozenset(normalized)


@dataclass(frozen=True)
class Retention:
    """How many days each kind of data is kept."""

    minutes: float = DEFAULT_RETENTION_DAYS
    hours: float = DEFAULT_HOURLY_RETENTION_DAYS
    days: float = DEFAULT_DAILY_RETENTION_DAYS
    request_log: float = DEFAULT_REQUEST_LOG_RETENTION_DAYS
    raw_messages: float = DEFAULT_RAW_RETENTION_DAYS
    rejections: float = DEFAULT_REJECTIONS_RETENTION_DAYS

    def __post_init__(self) -> None:
        for name, value in self.__dict__.items():
            if not value > 0:
                raise ValueError(f"retention of {name} must be positive")

    @property
    def by_resolution(self) -> dict[int, float]:
        """Seconds each aggregate resolution is kept; a coarser tier never less than a finer one."""
        minutes = self.minutes * 86400.0
        hours = max(self.hours * 86400.0, minutes)
        return {MINUTE: minutes, HOUR: hours, DAY: max(self.days * 86400.0, hours)}

    def policy(self) -> RetentionPolicy:
        longest = max(self.by_resolution.values())
        return RetentionPolicy(
            resolutions=self.by_resolution,
            request_log=self.request_log * 86400.0,
            raw_messages=self.raw_messages * 86400.0,
            rejections=self.rejections * 86400.0,
            registries=longest,
        )


@dataclass(frozen=True)
class HubSettings:
    db: str | Path
    """A SQLite file, or a ``postgresql://`` URL."""
    client_ids: frozenset[str] | None = None
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_log_bytes: int = DEFAULT_MAX_LOG_BYTES
    max_log_decompressed_bytes: int = DEFAULT_MAX_LOG_DECOMPRESSED_BYTES
    retention: Retention = field(default_factory=Retention)
    prune_interval: float = DEFAULT_PRUNE_INTERVAL
    allow_extra_fields: bool = False
    default_sync_interval: float = DEFAULT_SYNC_INTERVAL
    fold_in_background: bool = True
    """Run the folding worker (tests that fold by hand turn it off)."""
    fold_in_subprocess: bool = False
    """Fold in a child process (:mod:`.ingest.fold_process`) instead of a thread: what ``apitally-otel
    hub`` does, so folding never competes with the event loop for the GIL."""
    alerting: AlertSettings = field(default_factory=AlertSettings)
    max_inflight_body_bytes: int = DEFAULT_MAX_INFLIGHT_BODY_BYTES
    ingest_rate: float = DEFAULT_INGEST_RATE
    ingest_burst: float = DEFAULT_INGEST_BURST
    body_timeout: float = DEFAULT_BODY_TIMEOUT
    max_queue_lag: float = DEFAULT_MAX_QUEUE_LAG
    """Seconds folding may fall behind before the clients causing it get 503 (inf: never)."""

    def __post_init__(self) -> None:
        for name in (
            "max_body_bytes",
            "max_log_bytes",
            "max_log_decompressed_bytes",
            "max_inflight_body_bytes",
            "ingest_burst",
            "body_timeout",
            "max_queue_lag",
        ):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive")
        if self.ingest_rate < 0:
            raise ValueError("ingest_rate must not be negative")
        if self.prune_interval <= 0:
            raise ValueError("prune_interval must be positive")

    @property
    def retention_seconds(self) -> float:
        """How old a sync's timestamp may be: what the finest aggregates keep (clients resend for an hour)."""
        return self.retention.by_resolution[MINUTE]

    def is_allowed(self, client_id: str) -> bool:
        return self.client_ids is None or client_id in self.client_ids
