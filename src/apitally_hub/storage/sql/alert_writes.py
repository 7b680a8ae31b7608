"""The write side of alerting shared by the SQL backends: channels, rules and the
``--alerts-file`` sync, an evaluation's commit, silences, the notification outbox (enqueue,
claim, finish), health checks and their results, pruning.

Every function runs inside the caller's write transaction (``tx``); the tables are those of
:mod:`.alerts_schema`, their columns and rows as :mod:`.alert_rows` has them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from apitally_hub.storage.alert_records import (
    ChannelRecord,
    FileConfig,
    HealthCheckRecord,
    HistoryRecord,
    InstanceRecord,
    LeaseLost,
    NameTaken,
    OutboxRecord,
    OutboxStatus,
    RuleRecord,
    SilenceRecord,
)
from apitally_hub.storage.records import AppKey
from apitally_hub.storage.sql.alert_rows import (
    CHANNEL_COLUMNS,
    CHECK_COLUMNS,
    HISTORY_COLUMNS,
    INSTANCE_COLUMNS,
    OUTBOX_COLUMNS,
    RULE_COLUMNS,
    SILENCE_COLUMNS,
    outbox_from_row,
)
from apitally_hub.storage.sql.dialect import Dialect
from apitally_hub.storage.sql.tx import Tx


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def _check_name(tx: Tx, table: str, app: AppKey, name: str, id_: str) -> None:
    taken = tx.execute(
        f"SELECT id FROM {table} WHERE client_id = ? AND env = ? AND name = ? AND id != ?",
        (app.client_id, app.env, name, id_),
    ).fetchone()
    if taken is not None:
        raise NameTaken(name)


# -- channels ---------------------------------------------------------------------------------


def put_channel(tx: Tx, c: ChannelRecord) -> None:
    """Insert or replace (by id); raises :class:`~apitally_hub.storage.alerts.NameTaken`."""
    _check_name(tx, "alert_channels", c.app, c.name, c.id)
    tx.execute(
        f"INSERT INTO alert_channels ({CHANNEL_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (id) DO UPDATE SET name = excluded.name, type = excluded.type,"
        " config = excluded.config, source = excluded.source, updated_at = excluded.updated_at",
        (
            c.id,
            c.app.client_id,
            c.app.env,
            c.name,
            c.type,
            _json(dict(c.config)),
            c.source,
            c.created_at,
            c.updated_at,
        ),
    )


def delete_channel(tx: Tx, channel_id: str) -> bool:
    tx.execute("DELETE FROM alert_outbox WHERE channel_id = ? AND status = 'pending'", (channel_id,))
    return tx.execute("DELETE FROM alert_channels WHERE id = ?", (channel_id,)).rowcount > 0


# -- rules ------------------------------------------------------------------------------------


def put_rule(tx: Tx, r: RuleRecord) -> None:
    """Insert or replace (by id); raises :class:`~apitally_hub.storage.alerts.NameTaken`."""
    _check_name(tx, "alert_rules", r.app, r.name, r.id)
    tx.execute(
        f"INSERT INTO alert_rules ({RULE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (id) DO UPDATE"
        " SET name = excluded.name, spec = excluded.spec, enabled = excluded.enabled,"
        " source = excluded.source, updated_at = excluded.updated_at",
        (
            r.id,
            r.app.client_id,
            r.app.env,
            r.name,
            _json(dict(r.spec)),
            int(r.enabled),
            r.source,
            r.created_at,
            r.updated_at,
        ),
    )


def delete_rule(tx: Tx, rule_id: str) -> bool:
    tx.execute("DELETE FROM alert_instances WHERE rule_id = ?", (rule_id,))
    return tx.execute("DELETE FROM alert_rules WHERE id = ?", (rule_id,)).rowcount > 0


def sync_file_config(tx: Tx, config: FileConfig, now: float) -> dict[str, int]:
    """Upsert the file's entries by (app, name), keeping their ids, and delete the file-managed
    entries it no longer lists; counts per kind."""
    counts = {"channels": 0, "rules": 0, "health_checks": 0, "removed": 0}
    channel_ids: dict[tuple[AppKey, str], str] = {}
    for channel in config.channels:
        existing = tx.execute(
            "SELECT id, created_at FROM alert_channels WHERE client_id = ? AND env = ? AND name = ?",
            (channel.app.client_id, channel.app.env, channel.name),
        ).fetchone()
        record = channel
        if existing is not None:
            record = ChannelRecord(
                existing[0],
                channel.app,
                channel.name,
                channel.type,
                channel.config,
                "file",
                existing[1],
                now,
            )
        put_channel(tx, record)
        channel_ids[(channel.app, channel.name)] = record.id
        counts["channels"] += 1
    kept_rules: set[str] = set()
    for rule in config.rules:
        existing = tx.execute(
            "SELECT id, created_at FROM alert_rules WHERE client_id = ? AND env = ? AND name = ?",
            (rule.app.client_id, rule.app.env, rule.name),
        ).fetchone()
        spec = dict(rule.spec)
        spec["channels"] = [channel_ids[(rule.app, name)] for name in spec.get("channels", [])]
        rule_id, created = (existing[0], existing[1]) if existing else (rule.id, rule.created_at)
        put_rule(tx, RuleRecord(rule_id, rule.app, rule.name, spec, rule.enabled, "file", created, now))
        kept_rules.add(rule_id)
        counts["rules"] += 1
    kept_checks = set()
    for check in config.health_checks:
        put_health_check(tx, check)
        kept_checks.add(check.app)
        counts["health_checks"] += 1
    for (rule_id,) in tx.execute("SELECT id FROM alert_rules WHERE source = 'file'").fetchall():
        if rule_id not in kept_rules:
            counts["removed"] += delete_rule(tx, rule_id)
    kept_channels = set(channel_ids.values())
    for (channel_id,) in tx.execute("SELECT id FROM alert_channels WHERE source = 'file'").fetchall():
        if channel_id not in kept_channels:
            tx.execute("DELETE FROM alert_channels WHERE id = ?", (channel_id,))
            counts["removed"] += 1
    for client_id, env in tx.execute(
        "SELECT client_id, env FROM health_checks WHERE source = 'file'"
    ).fetchall():
        if AppKey(client_id, env) not in kept_checks:
            tx.execute("DELETE FROM health_checks WHERE client_id = ? AND env = ?", (client_id, env))
            counts["removed"] += 1
    return counts


# -- alert state ------------------------------------------------------------------------------


def commit_evaluation(
    tx: Tx,
    lease: tuple[str, str],
    now: float,
    lease_seconds: float,
    instances: Sequence[InstanceRecord],
    history: Sequence[HistoryRecord],
    notifications: Sequence[OutboxRecord],
    max_pending_per_channel: int,
) -> None:
    """Renew ``lease`` = (name, holder) and write one evaluation; raises
    :class:`~apitally_hub.storage.alerts.LeaseLost` when the lease is not held by ``holder``."""
    name, holder = lease
    # The fence: renewing the lease row also locks it (PostgreSQL), so a process taking
    # over waits for this commit, and a process that lost the lease writes nothing.
    renewed = tx.execute(
        "UPDATE leases SET expires_at = ? WHERE name = ? AND holder = ? AND expires_at >= ?",
        (now + lease_seconds, name, holder, now),
    )
    if renewed.rowcount != 1:
        raise LeaseLost(name)
    for i in instances:
        tx.execute(
            f"INSERT INTO alert_instances ({INSTANCE_COLUMNS})"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (rule_id, labels_key) DO UPDATE SET state = excluded.state,"
            " value = excluded.value, pending_since = excluded.pending_since,"
            " firing_since = excluded.firing_since, last_true_at = excluded.last_true_at,"
            " last_eval_at = excluded.last_eval_at, changed_at = excluded.changed_at,"
            " notified = excluded.notified, last_notified_at = excluded.last_notified_at,"
            " resolved_at = excluded.resolved_at, episode = excluded.episode",
            (
                i.rule_id,
                i.labels_key,
                i.app.client_id,
                i.app.env,
                i.state,
                i.value,
                i.pending_since,
                i.firing_since,
                i.last_true_at,
                i.last_eval_at,
                i.changed_at,
                int(i.notified),
                i.last_notified_at,
                i.resolved_at,
                i.episode,
            ),
        )
    for h in history:
        tx.execute(
            f"INSERT INTO alert_history ({HISTORY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                h.id,
                h.rule_id,
                h.app.client_id,
                h.app.env,
                h.labels_key,
                h.at,
                h.from_state,
                h.to_state,
                h.value,
                h.note,
            ),
        )
    enqueue_notifications(tx, notifications, max_pending_per_channel)


# -- silences ---------------------------------------------------------------------------------


def put_silence(tx: Tx, s: SilenceRecord) -> None:
    tx.execute(
        f"INSERT INTO alert_silences ({SILENCE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (id) DO UPDATE SET rule_id = excluded.rule_id, starts_at = excluded.starts_at,"
        " ends_at = excluded.ends_at, comment = excluded.comment",
        (
            s.id,
            s.app.client_id,
            s.app.env,
            s.rule_id,
            s.starts_at,
            s.ends_at,
            s.comment,
            s.created_at,
        ),
    )


def delete_silence(tx: Tx, silence_id: str) -> bool:
    return tx.execute("DELETE FROM alert_silences WHERE id = ?", (silence_id,)).rowcount > 0


# -- notification outbox ----------------------------------------------------------------------


def enqueue_notifications(tx: Tx, notifications: Sequence[OutboxRecord], max_pending: int) -> None:
    """Insert ``notifications``; a channel keeps at most ``max_pending`` pending ones (the oldest
    beyond that are ``dropped``)."""
    for n in notifications:
        tx.execute(
            f"INSERT INTO alert_outbox ({OUTBOX_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                n.id,
                n.channel_id,
                n.app.client_id,
                n.app.env,
                n.rule_id,
                n.event,
                n.payload,
                n.status,
                n.created_at,
                n.next_attempt_at,
                n.expires_at,
                n.attempts,
                n.last_error,
                n.sent_at,
            ),
        )
    for channel_id in sorted({n.channel_id for n in notifications}):
        pending = tx.execute(
            "SELECT id FROM alert_outbox WHERE channel_id = ? AND status = 'pending' ORDER BY created_at, id",
            (channel_id,),
        ).fetchall()
        for (stale,) in pending[: max(0, len(pending) - max_pending)]:
            tx.execute(
                "UPDATE alert_outbox SET status = 'dropped', last_error = ? WHERE id = ?",
                (f"the channel's queue is full ({max_pending} pending)", stale),
            )


def claim_notifications(
    tx: Tx,
    dialect: Dialect,
    worker: str,
    *,
    now: float,
    limit: int,
    lease_seconds: float,
    exclude_channels: Sequence[str],
) -> list[OutboxRecord]:
    excluded = set(exclude_channels)
    # Each channel delivers in order: only its oldest pending notification may go, so a
    # resolved notice never overtakes the firing one that is still being retried.
    pending = tx.execute(
        "SELECT id, channel_id, next_attempt_at, claimed_until FROM alert_outbox"
        " WHERE status = 'pending' ORDER BY created_at, id" + dialect.lock_rows
    ).fetchall()
    heads: dict[str, tuple[str, float, float | None]] = {}
    for id_, channel_id, due, claimed_until in pending:
        heads.setdefault(channel_id, (id_, due, claimed_until))
    claimed: list[str] = []
    for channel_id, (id_, due, claimed_until) in heads.items():
        if len(claimed) >= limit:
            break
        if channel_id in excluded or due > now or (claimed_until is not None and claimed_until > now):
            continue
        tx.execute(
            "UPDATE alert_outbox SET claimed_by = ?, claimed_until = ?, attempts = attempts + 1 WHERE id = ?",
            (worker, now + lease_seconds, id_),
        )
        claimed.append(id_)
    if not claimed:
        return []
    rows = tx.execute(
        f"SELECT {OUTBOX_COLUMNS} FROM alert_outbox WHERE id IN ({', '.join('?' * len(claimed))})"
        " ORDER BY created_at, id",
        claimed,
    ).fetchall()
    return [outbox_from_row(row) for row in rows]


def finish_notification(
    tx: Tx,
    notification_id: str,
    worker: str,
    *,
    status: OutboxStatus,
    now: float,
    error: str | None,
    next_attempt_at: float | None,
) -> bool:
    cursor = tx.execute(
        "UPDATE alert_outbox SET status = ?, last_error = ?, claimed_by = NULL, claimed_until = NULL,"
        " next_attempt_at = coalesce(?, next_attempt_at), sent_at = ?"
        " WHERE id = ? AND claimed_by = ? AND status = 'pending'",
        (status, error, next_attempt_at, now if status == "sent" else None, notification_id, worker),
    )
    return cursor.rowcount == 1


# -- health checks ----------------------------------------------------------------------------


def put_health_check(tx: Tx, c: HealthCheckRecord) -> None:
    # A changed URL starts from "unknown": the old results say nothing about the new target.
    tx.execute(
        f"INSERT INTO health_checks ({CHECK_COLUMNS})"
        " VALUES (?, ?, ?, ?, ?, ?, NULL, NULL, NULL, NULL, NULL, NULL)"
        " ON CONFLICT (client_id, env) DO UPDATE SET config = excluded.config, source = excluded.source,"
        " updated_at = excluded.updated_at,"
        " status = CASE WHEN health_checks.url = excluded.url THEN health_checks.status END,"
        " checked_at = CASE WHEN health_checks.url = excluded.url THEN health_checks.checked_at END,"
        " url = excluded.url",
        (c.app.client_id, c.app.env, c.url, _json(dict(c.config)), c.source, c.updated_at),
    )


def delete_health_check(tx: Tx, app: AppKey) -> bool:
    return (
        tx.execute(
            "DELETE FROM health_checks WHERE client_id = ? AND env = ?", (app.client_id, app.env)
        ).rowcount
        > 0
    )


def record_health_result(
    tx: Tx,
    app: AppKey,
    *,
    status: str,
    at: float,
    status_code: int | None,
    latency_ms: float | None,
    error: str | None,
    event_id: str,
) -> bool:
    """Store a check's result, and an event when its status changed; whether it did."""
    row = tx.execute(
        "SELECT status FROM health_checks WHERE client_id = ? AND env = ?", (app.client_id, app.env)
    ).fetchone()
    if row is None:  # deleted meanwhile
        return False
    changed = bool(row[0] != status)
    tx.execute(
        "UPDATE health_checks SET status = ?, checked_at = ?, status_code = ?, latency_ms = ?,"
        " error = ?, changed_at = CASE WHEN ? = 1 THEN ? ELSE changed_at END"
        " WHERE client_id = ? AND env = ?",
        (status, at, status_code, latency_ms, error, int(changed), at, app.client_id, app.env),
    )
    if changed:
        tx.execute(
            "INSERT INTO health_check_events (id, client_id, env, at, status, status_code, error)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (event_id, app.client_id, app.env, at, status, status_code, error),
        )
    return changed


# -- retention --------------------------------------------------------------------------------


def prune_steps(
    now: float, *, history_seconds: float, outbox_seconds: float
) -> list[tuple[str, str, Sequence[Any]]]:
    """(kind, statement, params) to run, each in a short transaction of its own."""
    return [
        ("alert_history", "DELETE FROM alert_history WHERE at < ?", (now - history_seconds,)),
        ("health_check_events", "DELETE FROM health_check_events WHERE at < ?", (now - history_seconds,)),
        (
            "alert_outbox",
            "DELETE FROM alert_outbox WHERE status != 'pending' AND created_at < ?",
            (now - outbox_seconds,),
        ),
        ("alert_silences", "DELETE FROM alert_silences WHERE ends_at < ?", (now - history_seconds,)),
        (
            "alert_instances",
            "DELETE FROM alert_instances WHERE rule_id NOT IN (SELECT id FROM alert_rules)"
            " OR (state = 'normal' AND labels_key != '{}' AND changed_at < ?)",
            (now - history_seconds,),
        ),
    ]
