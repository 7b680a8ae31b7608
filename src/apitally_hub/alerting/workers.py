"""The alerting side of one hub process: the rules file, the evaluator, health checks and the
delivery worker, started and stopped together by the app's lifespan; and the notices the API
sends outside evaluation (test notifications, rules deleted while firing)."""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from apitally_hub.alerting import rulesfile
from apitally_hub.alerting.config import AlertingConfig
from apitally_hub.alerting.evaluator import GROUP_AFTER, Evaluator
from apitally_hub.alerting.healthcheck import HealthChecker
from apitally_hub.alerting.model import Rule, Scope, labels_of
from apitally_hub.alerting.notifiers import formats
from apitally_hub.alerting.notifiers.delivery import DeliveryWorker
from apitally_hub.query.service import QueryService
from apitally_hub.storage.alert_records import ChannelRecord, InstanceRecord, OutboxRecord
from apitally_hub.storage.base import Storage
from apitally_hub.storage.records import AppKey

_logger = logging.getLogger(__name__)

STOP_SECONDS = 5.0
""":meth:`Alerting.stop` returns within about this long, whatever its threads are doing (a thread
still busy then is abandoned, logged: each outgoing attempt ends at its own deadline)."""


class Alerting:
    def __init__(
        self,
        storage: Storage,
        queries: Callable[[], QueryService],
        config: AlertingConfig,
        *,
        clock: Callable[[], float],
    ) -> None:
        self.storage = storage
        self.config = config
        self.clock = clock
        holder = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.delivery = DeliveryWorker(storage, config, clock=clock)
        self.evaluator = Evaluator(
            queries, config, clock=clock, on_notifications=self.delivery.notify, holder=holder
        )
        self.health = HealthChecker(storage, config, holder=holder, clock=clock)

    def load_rules_file(self) -> None:
        path = self.config.rules_file
        if path is None:
            return
        counts = self.storage.alerts.sync_file_config(rulesfile.load(path, self.clock()), self.clock())
        _logger.info(
            "Alerts file %s: %d channels, %d rules, %d health checks (%d stale entries removed)",
            path,
            counts["channels"],
            counts["rules"],
            counts["health_checks"],
            counts["removed"],
        )

    def start(self) -> None:
        self.load_rules_file()
        if self.config.enabled:
            self.delivery.start()
            self.evaluator.start()
            self.health.start()

    def stop(self, timeout: float = STOP_SECONDS) -> None:
        """Stop evaluating, checking and delivering, in at most about ``timeout`` seconds."""
        end = time.monotonic() + timeout

        def left(share: float) -> float:
            return max((end - time.monotonic()) * share, 0.1)

        started = time.monotonic()
        for part in (self.evaluator, self.health, self.delivery):
            part.request_stop()  # all wind down at once
        self.evaluator.stop(left(0.3))
        self.health.stop(left(0.5))
        self.delivery.stop(left(1.0))
        _logger.debug("Alerting stopped in %.1f s", time.monotonic() - started)

    # -- notices outside evaluation -----------------------------------------------------------

    def enqueue(
        self, app: AppKey, rule_id: str | None, event: str, doc: dict[str, object], channels: Sequence[str]
    ) -> list[str]:
        now = self.clock()
        payload = json.dumps(doc, separators=(",", ":"), ensure_ascii=False)
        records = [
            OutboxRecord(
                str(uuid.uuid4()),
                channel_id,
                app,
                rule_id,
                event,
                payload,
                "pending",
                now,
                now,
                now + self.config.retry_for_seconds,
            )
            for channel_id in channels
        ]
        self.storage.alerts.enqueue_notifications(
            records, max_pending_per_channel=self.config.max_pending_per_channel
        )
        self.delivery.notify()
        return [r.id for r in records]

    def test_channel(self, channel: ChannelRecord) -> list[str]:
        rule = Rule(
            id="test",
            app=channel.app,
            name=f"Test notification for channel {channel.name!r}",
            metric="server_errors",
            condition=">",
            threshold=0.0,
            window_minutes=1.0,
            for_minutes=0.0,
            keep_firing_minutes=0.0,
            repeat_minutes=0.0,
            no_data="keep",
            min_requests=1,
            apdex_ms=500,
            scope=Scope(),
            channels=(channel.id,),
            enabled=True,
            description="A test notification sent from the hub.",
        )
        return self.test_rule(rule, [channel.id])

    def test_rule(self, rule: Rule, channels: Sequence[str]) -> list[str]:
        now = self.clock()
        doc = formats.document(
            rule,
            event="firing",
            labels={},
            value=None,
            state="firing",
            alert_id=None,
            started_at=now,
            resolved_at=None,
            at=now,
            test=True,
        )
        return self.enqueue(rule.app, None if rule.id == "test" else rule.id, "test", doc, channels)

    def resolve_deleted(self, rule: Rule, instances: Sequence[InstanceRecord]) -> None:
        """A rule deleted while its alerts fire: close them with resolved notices."""
        now = self.clock()
        docs: list[dict[str, Any]] = []
        for instance in instances:
            if instance.state == "firing" and instance.notified:
                doc = formats.document(
                    rule,
                    event="resolved",
                    labels=labels_of(instance.labels_key),
                    value=instance.value,
                    state="normal",
                    alert_id=instance.episode,
                    started_at=instance.firing_since,
                    resolved_at=now,
                    at=now,
                )
                docs.append(doc)
        if len(docs) > GROUP_AFTER:
            docs = [formats.grouped_document(docs)]
        for doc in docs:
            doc["summary"] += " (the rule was deleted)"
            self.enqueue(rule.app, rule.id, "resolved", doc, rule.channels)
