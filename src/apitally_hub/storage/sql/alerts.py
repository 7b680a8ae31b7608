""":class:`SQLAlertStore`: the alerting part of the storage interface, written once for every SQL
backend over its ``read``/``write`` transactions (tables: :mod:`.alerts_schema`)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from apitally_hub.storage.alerts import (
    AlertStore,
    ChannelRecord,
    FileConfig,
    HealthCheckRecord,
    HealthEvent,
    HistoryRecord,
    InstanceRecord,
    LeaseLost,
    NameTaken,
    OutboxRecord,
    OutboxStatus,
    RuleRecord,
    SilenceRecord,
)
from apitally_hub.storage.base import AppKey
from apitally_hub.storage.sql.tx import Tx

if TYPE_CHECKING:
    from apitally_hub.storage.sql.store import SQLStorage

T = TypeVar("T")


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


_CHANNEL = "id, client_id, env, name, type, config, source, created_at, updated_at"
_RULE = "id, client_id, env, name, spec, enabled, source, created_at, updated_at"
_INSTANCE = (
    "rule_id, labels_key, client_id, env, state, value, pending_since, firing_since, last_true_at,"
    " last_eval_at, changed_at, notified, last_notified_at, resolved_at, episode"
)
_HISTORY = "id, rule_id, client_id, env, labels_key, at, from_state, to_state, value, note"
_SILENCE = "id, client_id, env, rule_id, starts_at, ends_at, comment, created_at"
_OUTBOX = (
    "id, channel_id, client_id, env, rule_id, event, payload, status, created_at, next_attempt_at,"
    " expires_at, attempts, last_error, sent_at"
)
_CHECK = (
    "client_id, env, url, config, source, updated_at, status, checked_at, status_code, latency_ms,"
    " error, changed_at"
)


def _channel(row: Sequence[Any]) -> ChannelRecord:
    id_, client_id, env, name, type_, config, source, created, updated = row
    return ChannelRecord(
        id_, AppKey(client_id, env), name, type_, json.loads(config), source, created, updated
    )


def _rule(row: Sequence[Any]) -> RuleRecord:
    id_, client_id, env, name, spec, enabled, source, created, updated = row
    return RuleRecord(
        id_, AppKey(client_id, env), name, json.loads(spec), bool(enabled), source, created, updated
    )


def _instance(row: Sequence[Any]) -> InstanceRecord:
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


def _history(row: Sequence[Any]) -> HistoryRecord:
    id_, rule_id, client_id, env, labels_key, at, from_state, to_state, value, note = row
    return HistoryRecord(
        id_, rule_id, AppKey(client_id, env), labels_key, at, from_state, to_state, value, note
    )


def _silence(row: Sequence[Any]) -> SilenceRecord:
    id_, client_id, env, rule_id, starts, ends, comment, created = row
    return SilenceRecord(id_, AppKey(client_id, env), rule_id, starts, ends, comment, created)


def _outbox(row: Sequence[Any]) -> OutboxRecord:
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


def _check(row: Sequence[Any]) -> HealthCheckRecord:
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


# -- statements used by several methods --------------------------------------------------------


def _check_name(tx: Tx, table: str, app: AppKey, name: str, id_: str) -> None:
    taken = tx.execute(
        f"SELECT id FROM {table} WHERE client_id = ? AND env = ? AND name = ? AND id != ?",
        (app.client_id, app.env, name, id_),
    ).fetchone()
    if taken is not None:
        raise NameTaken(name)


def _put_channel(tx: Tx, c: ChannelRecord) -> None:
    _check_name(tx, "alert_channels", c.app, c.name, c.id)
    tx.execute(
        f"INSERT INTO alert_channels ({_CHANNEL}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
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


def _put_rule(tx: Tx, r: RuleRecord) -> None:
    _check_name(tx, "alert_rules", r.app, r.name, r.id)
    tx.execute(
        f"INSERT INTO alert_rules ({_RULE}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE"
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


def _put_check(tx: Tx, c: HealthCheckRecord) -> None:
    # A changed URL starts from "unknown": the old results say nothing about the new target.
    tx.execute(
        f"INSERT INTO health_checks ({_CHECK}) VALUES (?, ?, ?, ?, ?, ?, NULL, NULL, NULL, NULL, NULL, NULL)"
        " ON CONFLICT (client_id, env) DO UPDATE SET config = excluded.config, source = excluded.source,"
        " updated_at = excluded.updated_at,"
        " status = CASE WHEN health_checks.url = excluded.url THEN health_checks.status END,"
        " checked_at = CASE WHEN health_checks.url = excluded.url THEN health_checks.checked_at END,"
        " url = excluded.url",
        (c.app.client_id, c.app.env, c.url, _json(dict(c.config)), c.source, c.updated_at),
    )


def _delete_rule(tx: Tx, rule_id: str) -> bool:
    tx.execute("DELETE FROM alert_instances WHERE rule_id = ?", (rule_id,))
    return tx.execute("DELETE FROM alert_rules WHERE id = ?", (rule_id,)).rowcount > 0


def _insert_outbox(tx: Tx, notifications: Sequence[OutboxRecord], max_pending: int) -> None:
    for n in notifications:
        tx.execute(
            f"INSERT INTO alert_outbox ({_OUTBOX}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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


class SQLAlertStore(AlertStore):
    def __init__(self, storage: SQLStorage) -> None:
        self._storage = storage
        self._dialect = storage.dialect

    def _read(self, work: Callable[[Tx], T]) -> T:
        return self._storage.read(work)

    def _write(self, work: Callable[[Tx], T]) -> T:
        return self._storage.write(work)

    def _all(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        return self._read(lambda tx: tx.execute(sql, params).fetchall())

    # -- channels -----------------------------------------------------------------------------

    def put_channel(self, channel: ChannelRecord) -> None:
        self._write(lambda tx: _put_channel(tx, channel))

    def channels(self, app: AppKey) -> list[ChannelRecord]:
        rows = self._all(
            f"SELECT {_CHANNEL} FROM alert_channels WHERE client_id = ? AND env = ? ORDER BY name, id",
            (app.client_id, app.env),
        )
        return [_channel(row) for row in rows]

    def channel(self, channel_id: str) -> ChannelRecord | None:
        rows = self._all(f"SELECT {_CHANNEL} FROM alert_channels WHERE id = ?", (channel_id,))
        return _channel(rows[0]) if rows else None

    def delete_channel(self, channel_id: str) -> bool:
        def work(tx: Tx) -> bool:
            tx.execute("DELETE FROM alert_outbox WHERE channel_id = ? AND status = 'pending'", (channel_id,))
            return tx.execute("DELETE FROM alert_channels WHERE id = ?", (channel_id,)).rowcount > 0

        return self._write(work)

    # -- rules --------------------------------------------------------------------------------

    def put_rule(self, rule: RuleRecord) -> None:
        self._write(lambda tx: _put_rule(tx, rule))

    def rules(self, app: AppKey | None = None) -> list[RuleRecord]:
        if app is None:
            rows = self._all(f"SELECT {_RULE} FROM alert_rules ORDER BY client_id, env, name, id")
        else:
            rows = self._all(
                f"SELECT {_RULE} FROM alert_rules WHERE client_id = ? AND env = ? ORDER BY name, id",
                (app.client_id, app.env),
            )
        return [_rule(row) for row in rows]

    def rule(self, rule_id: str) -> RuleRecord | None:
        rows = self._all(f"SELECT {_RULE} FROM alert_rules WHERE id = ?", (rule_id,))
        return _rule(rows[0]) if rows else None

    def delete_rule(self, rule_id: str) -> bool:
        return self._write(lambda tx: _delete_rule(tx, rule_id))

    def sync_file_config(self, config: FileConfig, now: float) -> dict[str, int]:
        def work(tx: Tx) -> dict[str, int]:
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
                _put_channel(tx, record)
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
                _put_rule(
                    tx, RuleRecord(rule_id, rule.app, rule.name, spec, rule.enabled, "file", created, now)
                )
                kept_rules.add(rule_id)
                counts["rules"] += 1
            kept_checks = set()
            for check in config.health_checks:
                _put_check(tx, check)
                kept_checks.add(check.app)
                counts["health_checks"] += 1
            for (rule_id,) in tx.execute("SELECT id FROM alert_rules WHERE source = 'file'").fetchall():
                if rule_id not in kept_rules:
                    counts["removed"] += _delete_rule(tx, rule_id)
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

        return self._write(work)

    # -- alert state --------------------------------------------------------------------------

    def instances(self, rule_id: str) -> list[InstanceRecord]:
        rows = self._all(
            f"SELECT {_INSTANCE} FROM alert_instances WHERE rule_id = ? ORDER BY labels_key", (rule_id,)
        )
        return [_instance(row) for row in rows]

    def app_instances(self, app: AppKey, states: Sequence[str] | None = None) -> list[InstanceRecord]:
        sql = f"SELECT {_INSTANCE} FROM alert_instances WHERE client_id = ? AND env = ?"
        params: list[Any] = [app.client_id, app.env]
        if states:
            sql += f" AND state IN ({', '.join('?' * len(states))})"
            params += list(states)
        rows = self._all(sql + " ORDER BY rule_id, labels_key", params)
        return [_instance(row) for row in rows]

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
        name, holder = lease

        def work(tx: Tx) -> None:
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
                    f"INSERT INTO alert_instances ({_INSTANCE})"
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
                    f"INSERT INTO alert_history ({_HISTORY}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
            _insert_outbox(tx, notifications, max_pending_per_channel)

        self._write(work)

    def history(
        self,
        app: AppKey,
        *,
        limit: int,
        before: tuple[float, str] | None = None,
        rule_id: str | None = None,
    ) -> list[HistoryRecord]:
        sql = f"SELECT {_HISTORY} FROM alert_history WHERE client_id = ? AND env = ?"
        params: list[Any] = [app.client_id, app.env]
        if rule_id is not None:
            sql += " AND rule_id = ?"
            params.append(rule_id)
        if before is not None:
            sql += " AND (at < ? OR (at = ? AND id < ?))"
            params += [before[0], before[0], before[1]]
        rows = self._all(sql + " ORDER BY at DESC, id DESC LIMIT ?", [*params, limit])
        return [_history(row) for row in rows]

    # -- silences -----------------------------------------------------------------------------

    def put_silence(self, silence: SilenceRecord) -> None:
        s = silence
        self._write(
            lambda tx: tx.execute(
                f"INSERT INTO alert_silences ({_SILENCE}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
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
        )

    def silences(self, app: AppKey | None = None, *, active_at: float | None = None) -> list[SilenceRecord]:
        sql, params = f"SELECT {_SILENCE} FROM alert_silences WHERE 1 = 1", list[Any]()
        if app is not None:
            sql += " AND client_id = ? AND env = ?"
            params += [app.client_id, app.env]
        if active_at is not None:
            sql += " AND starts_at <= ? AND ends_at > ?"
            params += [active_at, active_at]
        return [_silence(row) for row in self._all(sql + " ORDER BY ends_at DESC, id", params)]

    def delete_silence(self, silence_id: str) -> bool:
        return self._write(
            lambda tx: tx.execute("DELETE FROM alert_silences WHERE id = ?", (silence_id,)).rowcount > 0
        )

    # -- notification outbox ------------------------------------------------------------------

    def enqueue_notifications(
        self, notifications: Sequence[OutboxRecord], *, max_pending_per_channel: int
    ) -> None:
        self._write(lambda tx: _insert_outbox(tx, notifications, max_pending_per_channel))

    def claim_notifications(
        self,
        worker: str,
        *,
        now: float,
        limit: int,
        lease_seconds: float,
        exclude_channels: Sequence[str] = (),
    ) -> list[OutboxRecord]:
        excluded = set(exclude_channels)

        def work(tx: Tx) -> list[OutboxRecord]:
            # Each channel delivers in order: only its oldest pending notification may go, so a
            # resolved notice never overtakes the firing one that is still being retried.
            pending = tx.execute(
                "SELECT id, channel_id, next_attempt_at, claimed_until FROM alert_outbox"
                " WHERE status = 'pending' ORDER BY created_at, id" + self._dialect.lock_rows
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
                    "UPDATE alert_outbox SET claimed_by = ?, claimed_until = ?, attempts = attempts + 1"
                    " WHERE id = ?",
                    (worker, now + lease_seconds, id_),
                )
                claimed.append(id_)
            if not claimed:
                return []
            rows = tx.execute(
                f"SELECT {_OUTBOX} FROM alert_outbox WHERE id IN ({', '.join('?' * len(claimed))})"
                " ORDER BY created_at, id",
                claimed,
            ).fetchall()
            return [_outbox(row) for row in rows]

        return self._write(work)

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
        def work(tx: Tx) -> bool:
            cursor = tx.execute(
                "UPDATE alert_outbox SET status = ?, last_error = ?, claimed_by = NULL, claimed_until = NULL,"
                " next_attempt_at = coalesce(?, next_attempt_at), sent_at = ?"
                " WHERE id = ? AND claimed_by = ? AND status = 'pending'",
                (status, error, next_attempt_at, now if status == "sent" else None, notification_id, worker),
            )
            return cursor.rowcount == 1

        return self._write(work)

    def notifications(
        self, app: AppKey, *, limit: int, status: OutboxStatus | None = None
    ) -> list[OutboxRecord]:
        sql, params = (
            f"SELECT {_OUTBOX} FROM alert_outbox WHERE client_id = ? AND env = ?",
            [app.client_id, app.env],
        )
        if status is not None:
            sql += " AND status = ?"
            params.append(status)
        rows = self._all(sql + " ORDER BY created_at DESC, id DESC LIMIT ?", [*params, limit])
        return [_outbox(row) for row in rows]

    def notification(self, notification_id: str) -> OutboxRecord | None:
        rows = self._all(f"SELECT {_OUTBOX} FROM alert_outbox WHERE id = ?", (notification_id,))
        return _outbox(rows[0]) if rows else None

    # -- health checks ------------------------------------------------------------------------

    def put_health_check(self, check: HealthCheckRecord) -> None:
        self._write(lambda tx: _put_check(tx, check))

    def health_check(self, app: AppKey) -> HealthCheckRecord | None:
        rows = self._all(
            f"SELECT {_CHECK} FROM health_checks WHERE client_id = ? AND env = ?", (app.client_id, app.env)
        )
        return _check(rows[0]) if rows else None

    def health_checks(self) -> list[HealthCheckRecord]:
        return [
            _check(row) for row in self._all(f"SELECT {_CHECK} FROM health_checks ORDER BY client_id, env")
        ]

    def delete_health_check(self, app: AppKey) -> bool:
        return self._write(
            lambda tx: (
                tx.execute(
                    "DELETE FROM health_checks WHERE client_id = ? AND env = ?", (app.client_id, app.env)
                ).rowcount
                > 0
            )
        )

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
        def work(tx: Tx) -> bool:
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

        return self._write(work)

    def health_events(self, app: AppKey, since: float, until: float) -> list[HealthEvent]:
        columns = "id, client_id, env, at, status, status_code, error"
        a = (app.client_id, app.env)

        def work(tx: Tx) -> list[Any]:
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
            return [*before, *inside]

        return [
            HealthEvent(id_, AppKey(c, e), at, status, None if code is None else int(code), error)
            for id_, c, e, at, status, code, error in self._read(work)
        ]

    # -- retention ----------------------------------------------------------------------------

    def prune_alerting(self, now: float, *, history_seconds: float, outbox_seconds: float) -> dict[str, int]:
        steps: Mapping[str, tuple[str, Sequence[Any]]] = {
            "alert_history": ("DELETE FROM alert_history WHERE at < ?", (now - history_seconds,)),
            "health_check_events": ("DELETE FROM health_check_events WHERE at < ?", (now - history_seconds,)),
            "alert_outbox": (
                "DELETE FROM alert_outbox WHERE status != 'pending' AND created_at < ?",
                (now - outbox_seconds,),
            ),
            "alert_silences": ("DELETE FROM alert_silences WHERE ends_at < ?", (now - history_seconds,)),
            "alert_instances": (
                "DELETE FROM alert_instances WHERE rule_id NOT IN (SELECT id FROM alert_rules)"
                " OR (state = 'normal' AND labels_key != '{}' AND changed_at < ?)",
                (now - history_seconds,),
            ),
        }
        deleted = {}
        for kind, (sql, params) in steps.items():

            def step(tx: Tx, sql: str = sql, params: Sequence[Any] = params) -> int:
                return tx.execute(sql, params).rowcount

            deleted[kind] = max(self._write(step), 0)
        return deleted
