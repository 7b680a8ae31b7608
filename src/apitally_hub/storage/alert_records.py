"""The records of the alerting part of the store (:mod:`.alerts`): channels, rules, alert
instances, history, silences, the notification outbox, health checks and their events, and the
configuration loaded from an ``--alerts-file``; with the errors its writes raise."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from apitally_hub.storage.records import AppKey

Source = Literal["api", "file"]
"""Who manages an entry: the JSON API (and CLI), or the ``--alerts-file`` (read-only via the API)."""

OutboxStatus = Literal["pending", "sent", "failed", "dropped"]


class LeaseLost(Exception):
    """A write that needs a lease found it held by someone else (or expired); nothing was written."""


class NameTaken(Exception):
    """Another channel or rule of the app already has this name."""


@dataclass(frozen=True)
class ChannelRecord:
    id: str
    app: AppKey
    name: str
    type: str
    config: Mapping[str, Any]
    """Type-specific settings (URL, secret, SMTP settings), secrets included."""
    source: Source
    created_at: float
    updated_at: float


@dataclass(frozen=True)
class RuleRecord:
    id: str
    app: AppKey
    name: str
    spec: Mapping[str, Any]
    """The validated rule document (see :mod:`apitally_hub.alerting.model`)."""
    enabled: bool
    source: Source
    created_at: float
    updated_at: float


@dataclass(frozen=True)
class InstanceRecord:
    """The persisted state of one alert instance (a rule and one label set)."""

    rule_id: str
    labels_key: str
    """Canonical JSON of the labels (``{}`` for a rule without "for each")."""
    app: AppKey
    state: str
    value: float | None
    pending_since: float | None
    firing_since: float | None
    last_true_at: float | None
    last_eval_at: float | None
    changed_at: float | None
    notified: bool
    """The current firing episode was announced (a resolved notice is owed)."""
    last_notified_at: float | None
    resolved_at: float | None
    episode: str | None
    """Id of the current (or last) firing episode; shared by its firing, reminders and resolved."""


@dataclass(frozen=True)
class HistoryRecord:
    id: str
    rule_id: str
    app: AppKey
    labels_key: str
    at: float
    from_state: str
    to_state: str
    value: float | None
    note: str | None = None


@dataclass(frozen=True)
class SilenceRecord:
    id: str
    app: AppKey
    rule_id: str | None
    """None mutes every rule of the app."""
    starts_at: float
    ends_at: float
    comment: str
    created_at: float


@dataclass(frozen=True)
class OutboxRecord:
    id: str
    """The notification id: the same on every attempt (receivers can deduplicate on it)."""
    channel_id: str
    app: AppKey
    rule_id: str | None
    event: str
    payload: str
    """The notification document (JSON text); channels format it when sending."""
    status: OutboxStatus
    created_at: float
    next_attempt_at: float
    expires_at: float
    """Retries stop at this time (the notification is then ``failed``)."""
    attempts: int = 0
    last_error: str | None = None
    sent_at: float | None = None


@dataclass(frozen=True)
class HealthCheckRecord:
    app: AppKey
    url: str
    config: Mapping[str, Any]
    source: Source
    updated_at: float
    status: str | None = None
    """``up``, ``down`` or None before the first check."""
    checked_at: float | None = None
    status_code: int | None = None
    latency_ms: float | None = None
    error: str | None = None
    changed_at: float | None = None


@dataclass(frozen=True)
class HealthEvent:
    id: str
    app: AppKey
    at: float
    status: str
    status_code: int | None
    error: str | None


@dataclass(frozen=True)
class FileConfig:
    """What an ``--alerts-file`` declares; :meth:`AlertStore.sync_file_config` makes the store match."""

    channels: Sequence[ChannelRecord]
    rules: Sequence[RuleRecord]
    """``spec["channels"]`` holds channel *names* of the same app (ids are assigned on sync)."""
    health_checks: Sequence[HealthCheckRecord]
