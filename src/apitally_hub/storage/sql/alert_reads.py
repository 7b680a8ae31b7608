"""The read side of alerting shared by the SQL backends: channels, rules, alert state and
history, silences, the notification outbox, health checks and their events.

Every function runs inside the caller's read-only transaction (``tx``); the tables are those of
:mod:`.alerts_schema`, their columns and rows as :mod:`.alert_rows` has them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from apitally_hub.storage.alert_records import (
    ChannelRecord,
    HealthCheckRecord,
    HealthEvent,
    HistoryRecord,
    InstanceRecord,
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
    channel_from_row,
    check_from_row,
    history_from_row,
    instance_from_row,
    outbox_from_row,
    rule_from_row,
    silence_from_row,
)
from apitally_hub.storage.sql.tx import Tx

# -- channels ---------------------------------------------------------------------------------


def channels(tx: Tx, app: AppKey) -> list[ChannelRecord]:
    rows = tx.execute(
        f"SELECT {CHANNEL_COLUMNS} FROM alert_channels WHERE client_id = ? AND env = ? ORDER BY name, id",
        (app.client_id, app.env),
    ).fetchall()
    return [channel_from_row(row) for row in rows]


def channel(tx: Tx, channel_id: str) -> ChannelRecord | None:
    rows = tx.execute(f"SELECT {CHANNEL_COLUMNS} FROM alert_channels WHERE id = ?", (channel_id,)).fetchall()
    return channel_from_row(rows[0]) if rows else None


# -- rules ------------------------------------------------------------------------------------


def rules(tx: Tx, app: AppKey | None) -> list[RuleRecord]:
    if app is None:
        rows = tx.execute(
            f"SELECT {RULE_COLUMNS} FROM alert_rules ORDER BY client_id, env, name, id"
        ).fetchall()
    else:
        rows = tx.execute(
            f"SELECT {RULE_COLUMNS} FROM alert_rules WHERE client_id = ? AND env = ? ORDER BY name, id",
            (app.client_id, app.env),
        ).fetchall()
    return [rule_from_row(row) for row in rows]


def rule(tx: Tx, rule_id: str) -> RuleRecord | None:
    rows = tx.execute(f"SELECT {RULE_COLUMNS} FROM alert_rules WHERE id = ?", (rule_id,)).fetchall()
    return rule_from_row(rows[0]) if rows else None


# -- alert state ------------------------------------------------------------------------------


def instances(tx: Tx, rule_id: str) -> list[InstanceRecord]:
    rows = tx.execute(
        f"SELECT {INSTANCE_COLUMNS} FROM alert_instances WHERE rule_id = ? ORDER BY labels_key", (rule_id,)
    ).fetchall()
    return [instance_from_row(row) for row in rows]


def app_instances(tx: Tx, app: AppKey, states: Sequence[str] | None) -> list[InstanceRecord]:
    sql = f"SELECT {INSTANCE_COLUMNS} FROM alert_instances WHERE client_id = ? AND env = ?"
    params: list[Any] = [app.client_id, app.env]
    if states:
        sql += f" AND state IN ({', '.join('?' * len(states))})"
        params += list(states)
    rows = tx.execute(sql + " ORDER BY rule_id, labels_key", params).fetchall()
    return [instance_from_row(row) for row in rows]


def history(
    tx: Tx, app: AppKey, *, limit: int, before: tuple[float, str] | None, rule_id: str | None
) -> list[HistoryRecord]:
    sql = f"SELECT {HISTORY_COLUMNS} FROM alert_history WHERE client_id = ? AND env = ?"
    params: list[Any] = [app.client_id, app.env]
    if rule_id is not None:
        sql += " AND rule_id = ?"
        params.append(rule_id)
    if before is not None:
        sql += " AND (at < ? OR (at = ? AND id < ?))"
        params += [before[0], before[0], before[1]]
    rows = tx.execute(sql + " ORDER BY at DESC, id DESC LIMIT ?", [*params, limit]).fetchall()
    return [history_from_row(row) for row in rows]


# -- silences ---------------------------------------------------------------------------------


def silences(tx: Tx, app: AppKey | None, *, active_at: float | None) -> list[SilenceRecord]:
    sql, params = f"SELECT {SILENCE_COLUMNS} FROM alert_silences WHERE 1 = 1", list[Any]()
    if app is not None:
        sql += " AND client_id = ? AND env = ?"
        params += [app.client_id, app.env]
    if active_at is not None:
        sql += " AND starts_at <= ? AND ends_at > ?"
        params += [active_at, active_at]
    rows = tx.execute(sql + " ORDER BY ends_at DESC, id", params).fetchall()
    return [silence_from_row(row) for row in rows]


# -- notification outbox ----------------------------------------------------------------------


def notifications(tx: Tx, app: AppKey, *, limit: int, status: OutboxStatus | None) -> list[OutboxRecord]:
    sql, params = (
        f"SELECT {OUTBOX_COLUMNS} FROM alert_outbox WHERE client_id = ? AND env = ?",
        [app.client_id, app.env],
    )
    if status is not None:
        sql += " AND status = ?"
        params.append(status)
    rows = tx.execute(sql + " ORDER BY created_at DESC, id DESC LIMIT ?", [*params, limit]).fetchall()
    return [outbox_from_row(row) for row in rows]


def notification(tx: Tx, notification_id: str) -> OutboxRecord | None:
    rows = tx.execute(
        f"SELECT {OUTBOX_COLUMNS} FROM alert_outbox WHERE id = ?", (notification_id,)
    ).fetchall()
    return outbox_from_row(rows[0]) if rows else None


# -- health checks ----------------------------------------------------------------------------


def health_check(tx: Tx, app: AppKey) -> HealthCheckRecord | None:
    rows = tx.execute(
        f"SELECT {CHECK_COLUMNS} FROM health_checks WHERE client_id = ? AND env = ?", (app.client_id, app.env)
    ).fetchall()
    return check_from_row(rows[0]) if rows else None


def health_checks(tx: Tx) -> list[HealthCheckRecord]:
    rows = tx.execute(f"SELECT {CHECK_COLUMNS} FROM health_checks ORDER BY client_id, env").fetchall()
    return [check_from_row(row) for row in rows]


def health_events(tx: Tx, app: AppKey, since: float, until: float) -> list[HealthEvent]:
    """Events in ``[since, until]`` plus the last one before ``since`` (the state at the start)."""
    columns = "id, client_id, env, at, status, status_code, error"
    a = (app.client_id, app.env)
    before = tx.execute(
        f"SELECT {columns} FROM health_check_events WHERE client_id = ? AND env = ? AND at < ?"
        " ORDER BY at DESC, id DESC LIMIT 1",
        (*a, since),
    ).fetchall()
    inside = tx.execute(
        f"SELECT {columns} FROM health_check_events WHERE client_id = ? AND env = ? AND at >= ?"
        " AND at <= ? ORDER BY at, id",
        (*a, since, until),
    ).fetchall()
    return [
        HealthEvent(id_, AppKey(c, e), at, status, None if code is None else int(code), error)
        for id_, c, e, at, status, code, error in [*before, *inside]
    ]
