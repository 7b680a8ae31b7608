"""The alerting changes both the JSON API (:mod:`.alerts_api`) and the dashboard's Alerts forms
(:mod:`.dashboard.pages.alert_forms`) make: one copy of each rule.

Each function is synchronous (callers run it on a worker thread with ``HubContext.run``), takes a
JSON-like ``body`` and checks it with the parsers of :mod:`apitally_hub.alerting.validation`.
Bad input raises :class:`~apitally_hub.alerting.validation.Invalid` (its field errors, a 422) or
:class:`Conflict` (a name already taken, a 409 naming the field); a missing thing is a
:class:`~apitally_hub.errors.HubError` 404, an entry of the ``--alerts-file`` a 409 (read-only),
the alerting service not running a 503.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from apitally_hub.alerting.model import rule_from_record
from apitally_hub.alerting.urls import target_host
from apitally_hub.alerting.validation import (
    MAX_SILENCE_MINUTES,
    Invalid,
    parse_channel,
    parse_health_check,
    parse_rule,
    parse_silence,
    rule_document,
)
from apitally_hub.alerting.workers import Alerting
from apitally_hub.errors import HubError
from apitally_hub.protocol.checker import FieldError
from apitally_hub.storage.alert_records import (
    ChannelRecord,
    HealthCheckRecord,
    NameTaken,
    RuleRecord,
    SilenceRecord,
)
from apitally_hub.storage.records import AppKey
from apitally_hub.web.context import HubContext
from apitally_hub.web.masking import unmask_channel_body

_logger = logging.getLogger(__name__)

FILE_MANAGED = "This {} is managed by the alerts file"


class Conflict(Invalid):
    """A field's value clashes with what is stored (another channel or rule has this name): 409."""

    status_code = 409


def alerting_service(context: HubContext) -> Alerting:
    service: Alerting | None = getattr(context, "alerting", None)
    if service is None:
        raise HubError(503, "The hub is starting or stopping", {"Retry-After": "1"})
    return service


def writable(source: str, kind: str) -> None:
    """Refuse (409) a change to an entry of the ``--alerts-file``."""
    if source == "file":
        raise HubError(409, FILE_MANAGED.format(kind))


# -- channels -----------------------------------------------------------------------------------


def channel_of(context: HubContext, app: AppKey, channel_id: str) -> ChannelRecord:
    channel = context.store.alerts.channel(channel_id)
    if channel is None or channel.app != app:
        raise HubError(404, "No such channel")
    return channel


def save_channel(
    context: HubContext, app: AppKey, body: Any, current: ChannelRecord | None = None
) -> ChannelRecord:
    """Create a channel (``current`` None) or replace ``current``'s settings with ``body``; masked
    values sent back (see :mod:`.masking`) keep the stored ones."""
    now = context.clock()
    if current is None:
        parsed = parse_channel(body)
        record = ChannelRecord(
            str(uuid.uuid4()), app, parsed["name"], parsed["type"], parsed["config"], "api", now, now
        )
    else:
        writable(current.source, "channel")
        if isinstance(body, dict):
            body = {k: v for k, v in body.items() if k not in ("secret_set", "password_set")}
        parsed = parse_channel(unmask_channel_body(body, current.config), existing=current.config)
        record = ChannelRecord(
            current.id, app, parsed["name"], parsed["type"], parsed["config"], "api", current.created_at, now
        )
    try:
        context.store.alerts.put_channel(record)
    except NameTaken:
        raise Conflict(
            [FieldError(("body", "name"), "Another channel of this app env has this name", "unique")]
        ) from None
    where = record.config.get("smtp_host") or target_host(record.config["url"])
    _logger.info(
        "Channel %r (%s to %s) saved for %s/%s", record.name, record.type, where, app.client_id, app.env
    )
    return record


def delete_channel(context: HubContext, app: AppKey, channel_id: str) -> None:
    channel = channel_of(context, app, channel_id)
    writable(channel.source, "channel")
    store = context.store.alerts
    users = [r.name for r in store.rules(app) if channel.id in r.spec.get("channels", [])]
    if users:
        raise HubError(409, f"Channel used by rule(s) {', '.join(sorted(users))}: remove it from them first")
    store.delete_channel(channel.id)


def test_channel(context: HubContext, app: AppKey, channel_id: str) -> list[str]:
    """Queue a test notification to the channel: its notification ids."""
    return alerting_service(context).test_channel(channel_of(context, app, channel_id))


# -- rules --------------------------------------------------------------------------------------


def rule_of(context: HubContext, app: AppKey, rule_id: str) -> RuleRecord:
    rule = context.store.alerts.rule(rule_id)
    if rule is None or rule.app != app:
        raise HubError(404, "No such alert rule")
    return rule


def save_rule(context: HubContext, app: AppKey, body: Any, current: RuleRecord | None = None) -> RuleRecord:
    """Create a rule (``current`` None) or replace ``current`` with ``body``."""
    store, now = context.store.alerts, context.clock()
    if current is not None:
        writable(current.source, "rule")
    parsed = parse_rule(body, channel_ids=[c.id for c in store.channels(app)])
    if current is None:
        record = RuleRecord(
            str(uuid.uuid4()), app, parsed["name"], parsed["spec"], parsed["enabled"], "api", now, now
        )
    else:
        record = RuleRecord(
            current.id, app, parsed["name"], parsed["spec"], parsed["enabled"], "api", current.created_at, now
        )
    try:
        store.put_rule(record)
    except NameTaken:
        raise Conflict(
            [FieldError(("body", "name"), "Another rule of this app env has this name", "unique")]
        ) from None
    return record


def set_rule_enabled(context: HubContext, app: AppKey, rule_id: str, enabled: bool) -> RuleRecord:
    """Enable or disable a rule (what a PATCH ``{"enabled": ...}`` does)."""
    current = rule_of(context, app, rule_id)
    body = {**rule_document(current.name, current.enabled, current.spec), "enabled": enabled}
    return save_rule(context, app, body, current)


def delete_rule(context: HubContext, app: AppKey, rule_id: str) -> None:
    """Delete a rule; its firing alerts get resolved notices."""
    record = rule_of(context, app, rule_id)
    writable(record.source, "rule")
    service, store = alerting_service(context), context.store.alerts
    instances = store.instances(record.id)
    store.delete_rule(record.id)
    service.resolve_deleted(rule_from_record(record), instances)


def test_rule(context: HubContext, app: AppKey, rule_id: str) -> list[str]:
    """Queue a test notification to the rule's channels: their notification ids."""
    rule = rule_from_record(rule_of(context, app, rule_id))
    if not rule.channels:
        raise HubError(409, "The rule has no channels")
    return alerting_service(context).test_rule(rule, rule.channels)


# -- silences -----------------------------------------------------------------------------------


def create_silence(context: HubContext, app: AppKey, body: Any) -> SilenceRecord:
    now = context.clock()
    parsed = parse_silence(body, now)
    if parsed["ends_at"] - parsed["starts_at"] > MAX_SILENCE_MINUTES * 60:
        raise Invalid(
            [
                FieldError(
                    ("body", "ends_at"),
                    f"A silence lasts at most {MAX_SILENCE_MINUTES // 1440} days",
                    "silence",
                )
            ]
        )
    store = context.store.alerts
    if parsed["rule_id"] is not None:
        rule = store.rule(parsed["rule_id"])
        if rule is None or rule.app != app:
            raise Invalid([FieldError(("body", "rule_id"), "No such rule in this app env", "rule")])
    record = SilenceRecord(
        str(uuid.uuid4()),
        app,
        parsed["rule_id"],
        parsed["starts_at"],
        parsed["ends_at"],
        parsed["comment"],
        now,
    )
    store.put_silence(record)
    return record


def end_silence(context: HubContext, app: AppKey, silence_id: str) -> None:
    store = context.store.alerts
    if not any(s.id == silence_id for s in store.silences(app)):
        raise HubError(404, "No such silence")
    store.delete_silence(silence_id)


# -- the health check ---------------------------------------------------------------------------


def put_health_check(context: HubContext, app: AppKey, body: Any) -> HealthCheckRecord:
    parsed = parse_health_check(body)
    store = context.store.alerts
    current = store.health_check(app)
    if current is not None:
        writable(current.source, "health check")
    record = HealthCheckRecord(app, parsed["url"], parsed["config"], "api", context.clock())
    store.put_health_check(record)
    _logger.info("Health check for %s/%s set to %s", app.client_id, app.env, target_host(record.url))
    return record


def delete_health_check(context: HubContext, app: AppKey) -> None:
    store = context.store.alerts
    current = store.health_check(app)
    if current is None:
        raise HubError(404, "No health check configured for this app env")
    writable(current.source, "health check")
    store.delete_health_check(app)
