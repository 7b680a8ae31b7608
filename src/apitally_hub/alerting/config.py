"""Alerting configuration of one hub (a frozen value, the ``alerting`` section of
:class:`~apitally_hub.config.HubConfig`).

Public knobs are ``--alert-interval`` and ``--alerts-file``. The others are fixed by the product
(a minute is 60 s, health checks every 60 s with a 5 s timeout, retries for up to an hour) and
exist so that tests can run a rule's minutes, the uptime window and retries in seconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from apitally_hub.options import option

DEFAULT_ALERT_INTERVAL = 60.0


@dataclass(frozen=True)
class AlertingConfig:
    interval: float = option(
        DEFAULT_ALERT_INTERVAL,
        flag="--alert-interval",
        type=float,
        metavar="SECONDS",
        group="alerting",
        help="evaluate the alert rules every SECONDS (default: 60)",
    )
    """Seconds between evaluations."""
    rules_file: Path | None = option(
        None,
        flag="--alerts-file",
        type=Path,
        metavar="PATH",
        group="alerting",
        help="channels, rules and health checks as code (TOML), loaded at start (see the docs)",
    )
    """Channels, rules and health checks as code, loaded at start."""
    enabled: bool = True
    """Run the evaluator, health checks and deliveries (tests that drive them by hand turn it off)."""
    minute_seconds: float = 60.0
    """Seconds in a rule's minute (window, for, keep firing, repeat): tests use ~1."""
    uptime_min_window: float = 180.0
    """An app env is down after no sync for 3 sync intervals, but at least this long."""
    lease_seconds: float | None = None
    """How long the evaluator's leadership lasts without renewal (default: 3 intervals, ≥ 30 s)."""
    health_check_interval: float = 60.0
    health_check_timeout: float = 5.0
    delivery_timeout: float = 10.0
    retry_base_seconds: float = 5.0
    retry_max_seconds: float = 300.0
    retry_for_seconds: float = 3600.0
    """A notification is retried for up to this long, then marked failed."""
    max_pending_per_channel: int = 1000
    """Bound of a channel's queue: beyond it the oldest undelivered notifications are dropped."""
    max_instances_per_rule: int = 1000
    """A "for each" rule tracks at most this many label sets."""

    def __post_init__(self) -> None:
        for name in (
            "interval",
            "minute_seconds",
            "uptime_min_window",
            "health_check_interval",
            "health_check_timeout",
            "delivery_timeout",
            "retry_base_seconds",
            "retry_max_seconds",
            "retry_for_seconds",
        ):
            if not getattr(self, name) > 0:
                raise ValueError(f"alerting {name} must be positive")

    @property
    def lease(self) -> float:
        return self.lease_seconds if self.lease_seconds is not None else max(3 * self.interval, 30.0)
