"""The alerting tables, in DDL both SQLite and PostgreSQL accept (defined once; each backend's
migration list applies :data:`ALERTING_DDL` as one migration).

Portable on purpose: TEXT ids (UUIDs, made by the hub, never autoincrement), BIGINT counters and
0/1 flags, DOUBLE PRECISION epoch seconds, JSON documents as TEXT.
"""

from __future__ import annotations

ALERTING_DDL: tuple[str, ...] = (
    """CREATE TABLE alert_channels (
    id TEXT PRIMARY KEY, client_id TEXT NOT NULL, env TEXT NOT NULL, name TEXT NOT NULL,
    type TEXT NOT NULL, config TEXT NOT NULL, source TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL, updated_at DOUBLE PRECISION NOT NULL,
    UNIQUE (client_id, env, name)
)""",
    """CREATE TABLE alert_rules (
    id TEXT PRIMARY KEY, client_id TEXT NOT NULL, env TEXT NOT NULL, name TEXT NOT NULL,
    spec TEXT NOT NULL, enabled BIGINT NOT NULL, source TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL, updated_at DOUBLE PRECISION NOT NULL,
    UNIQUE (client_id, env, name)
)""",
    """CREATE TABLE alert_instances (
    rule_id TEXT NOT NULL, labels_key TEXT NOT NULL, client_id TEXT NOT NULL, env TEXT NOT NULL,
    state TEXT NOT NULL, value DOUBLE PRECISION, pending_since DOUBLE PRECISION,
    firing_since DOUBLE PRECISION, last_true_at DOUBLE PRECISION, last_eval_at DOUBLE PRECISION,
    changed_at DOUBLE PRECISION, notified BIGINT NOT NULL, last_notified_at DOUBLE PRECISION,
    resolved_at DOUBLE PRECISION, episode TEXT,
    PRIMARY KEY (rule_id, labels_key)
)""",
    "CREATE INDEX alert_instances_app ON alert_instances (client_id, env, state)",
    """CREATE TABLE alert_history (
    id TEXT PRIMARY KEY, rule_id TEXT NOT NULL, client_id TEXT NOT NULL, env TEXT NOT NULL,
    labels_key TEXT NOT NULL, at DOUBLE PRECISION NOT NULL, from_state TEXT NOT NULL,
    to_state TEXT NOT NULL, value DOUBLE PRECISION, note TEXT
)""",
    "CREATE INDEX alert_history_app ON alert_history (client_id, env, at)",
    "CREATE INDEX alert_history_at ON alert_history (at)",
    """CREATE TABLE alert_silences (
    id TEXT PRIMARY KEY, client_id TEXT NOT NULL, env TEXT NOT NULL, rule_id TEXT,
    starts_at DOUBLE PRECISION NOT NULL, ends_at DOUBLE PRECISION NOT NULL, comment TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL
)""",
    "CREATE INDEX alert_silences_app ON alert_silences (client_id, env, ends_at)",
    """CREATE TABLE alert_outbox (
    id TEXT PRIMARY KEY, channel_id TEXT NOT NULL, client_id TEXT NOT NULL, env TEXT NOT NULL,
    rule_id TEXT, event TEXT NOT NULL, payload TEXT NOT NULL, status TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL, next_attempt_at DOUBLE PRECISION NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL, attempts BIGINT NOT NULL, claimed_by TEXT,
    claimed_until DOUBLE PRECISION, last_error TEXT, sent_at DOUBLE PRECISION
)""",
    "CREATE INDEX alert_outbox_due ON alert_outbox (status, next_attempt_at)",
    "CREATE INDEX alert_outbox_channel ON alert_outbox (channel_id, status)",
    """CREATE TABLE health_checks (
    client_id TEXT NOT NULL, env TEXT NOT NULL, url TEXT NOT NULL, config TEXT NOT NULL,
    source TEXT NOT NULL, status TEXT, checked_at DOUBLE PRECISION, status_code BIGINT,
    latency_ms DOUBLE PRECISION, error TEXT, changed_at DOUBLE PRECISION,
    updated_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (client_id, env)
)""",
    """CREATE TABLE health_check_events (
    id TEXT PRIMARY KEY, client_id TEXT NOT NULL, env TEXT NOT NULL, at DOUBLE PRECISION NOT NULL,
    status TEXT NOT NULL, status_code BIGINT, error TEXT
)""",
    "CREATE INDEX health_check_events_app ON health_check_events (client_id, env, at)",
)
"""One statement per entry (drivers differ on running several at once)."""
