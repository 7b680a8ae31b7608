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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from apitally_hub.storage.base import AppKey

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


class AlertStore(abc.ABC):
    # -- channels -----------------------------------------------------------------------------

    @abc.abstractmethod
    def put_channel(self, channel: ChannelRecord) -> None:
        """Insert or replace (by id); raises :class:`NameTaken`."""

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
        """Insert or replace (by id); raises :class:`NameTaken`."""

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
        :class:`LeaseLost` (writing nothing) when the lease is not held by ``holder`` any more."""

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
