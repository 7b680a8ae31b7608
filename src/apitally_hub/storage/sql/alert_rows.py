"""The alert tables' columns (:mod:`.alerts_schema`), as every statement of :mod:`.alert_reads` and
:mod:`.alert_writes` lists them, and how a row so selected becomes a record."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from apitally_hub.storage.alert_records import (
    ChannelRecord,
    HealthCheckRecord,
    HistoryRecord,
    InstanceRecord,
    OutboxRecord,
    RuleRecord,
    SilenceRecord,
)
from apitally_hub.storage.records import AppKey

CHANNEL_COLUMNS = "id, client_id, env, name, type, config, source, created_at, updated_at"
RULE_COLUMNS = "id, client_id, env, name, spec, enabled, source, created_at, updated_at"
INSTANCE_COLUMNS = (
    "rule_id, labels_key, client_id, env, state, value, pending_since, firing_since, last_true_at,"
    " last_eval_at, changed_at, notified, last_notified_at, resolved_at, episode"
)
HISTORY_COLUMNS = "id, rule_id, client_id, env, labels_key, at, from_state, to_state, value, note"
SILENCE_COLUMNS = "id, client_id, env, rule_id, starts_at, ends_at, comment, created_at"
OUTBOX_COLUMNS = (
    "id, channel_id, client_id, env, rule_id, event, payload, status, created_at, next_attempt_at,"
    " expires_at, attempts, last_error, sent_at"
)
CHECK_COLUMNS = (
    "client_id, env, url, config, source, updated_at, status, checked_at, status_code, latency_ms,"
    " error, changed_at"
)


def channel_from_row(row: Sequence[Any]) -> ChannelRecord:
    id_, client_id, env, name, type_, config, source, created, updated = row
    return ChannelRecord(
        id_, AppKey(client_id, env), name, type_, json.loads(config), source, created, updated
    )


def rule_from_row(row: Sequence[Any]) -> RuleRecord:
    id_, client_id, env, name, spec, enabled, source, created, updated = row
    return RuleRecord(
        id_, AppKey(client_id, env), name, json.loads(spec), bool(enabled), source, created, updated
    )


def instance_from_row(row: Sequence[Any]) -> InstanceRecord:
    return InstanceRecord(
        row[0],
        row[1],
        AppKey(row[2], row[3]),
        row[4],
        row[5],
        row[6],
        row[7],
        row[8],
        row[9],
        row[10],
        bool(row[11]),
        row[12],
        row[13],
        row[14],
    )


def history_from_row(row: Sequence[Any]) -> HistoryRecord:
    id_, rule_id, client_id, env, labels_key, at, from_state, to_state, value, note = row
    return HistoryRecord(
        id_, rule_id, AppKey(client_id, env), labels_key, at, from_state, to_state, value, note
    )


def silence_from_row(row: Sequence[Any]) -> SilenceRecord:
    id_, client_id, env, rule_id, starts, ends, comment, created = row
    return SilenceRecord(id_, AppKey(client_id, env), rule_id, starts, ends, comment, created)


def outbox_from_row(row: Sequence[Any]) -> OutboxRecord:
    return OutboxRecord(
        row[0],
        row[1],
        AppKey(row[2], row[3]),
        row[4],
        row[5],
        row[6],
        row[7],
        row[8],
        row[9],
        row[10],
        int(row[11]),
        row[12],
        row[13],
    )


def check_from_row(row: Sequence[Any]) -> HealthCheckRecord:
    client_id, env, url, config, source, updated, status, checked, code, latency, error, changed = row
    return HealthCheckRecord(
        AppKey(client_id, env),
        url,
        json.loads(config),
        source,
        updated,
        status,
        checked,
        None if code is None else int(code),
        latency,
        error,
        changed,
    )
