"""Configuration of one local hub instance (a frozen value object, validated on creation)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

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

DEFAULT_BODY_TIMEOUT = 30.0
"""Seconds a client has to send a whole request body (408 after that)."""

DEFAULT_RETENTION_DAYS = 30.0
DEFAULT_PRUNE_INTERVAL = 3600.0
DEFAULT_SYNC_INTERVAL = 60.0
"""Assumed sync interval of an instance until two consecutive syncs show the real one."""

OFFLINE_AFTER_INTERVALS = 3
"""An instance is offline when its last sync is older than this many sync intervals."""


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
class HubSettings:
    db_path: Path
    client_ids: frozenset[str] | None = None
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_log_bytes: int = DEFAULT_MAX_LOG_BYTES
    max_log_decompressed_bytes: int = DEFAULT_MAX_LOG_DECOMPRESSED_BYTES
    retention_days: float = DEFAULT_RETENTION_DAYS
    prune_interval: float = DEFAULT_PRUNE_INTERVAL
    allow_extra_fields: bool = False
    default_sync_interval: float = DEFAULT_SYNC_INTERVAL
    max_inflight_body_bytes: int = DEFAULT_MAX_INFLIGHT_BODY_BYTES
    ingest_rate: float = DEFAULT_INGEST_RATE
    ingest_burst: float = DEFAULT_INGEST_BURST
    body_timeout: float = DEFAULT_BODY_TIMEOUT

    def __post_init__(self) -> None:
        for name in (
            "max_body_bytes",
            "max_log_bytes",
            "max_log_decompressed_bytes",
            "max_inflight_body_bytes",
            "ingest_burst",
            "body_timeout",
        ):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive")
        if self.ingest_rate < 0:
            raise ValueError("ingest_rate must not be negative")
        if self.retention_days <= 0:
            raise ValueError("retention_days must be positive")
        if self.prune_interval <= 0:
            raise ValueError("prune_interval must be positive")

    @property
    def retention_seconds(self) -> float:
        return self.retention_days * 86400.0

    def is_allowed(self, client_id: str) -> bool:
        return self.client_ids is None or client_id in self.client_ids
