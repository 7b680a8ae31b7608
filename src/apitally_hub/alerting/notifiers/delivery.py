"""The delivery worker: sends what the outbox holds, on threads of its own, so a channel that is
down never slows ingest or evaluation.

One dispatcher thread claims due notifications (at most one in flight per channel, so each
channel receives its notifications in order) and hands them to a small pool. An attempt that
fails with a retryable error (connection error, timeout, 408/425/429/5xx, SMTP 4xx) is retried
with exponential backoff and jitter (honouring ``Retry-After``) until the notification is
``retry_for_seconds`` old (an hour), then it is ``failed``; other errors fail it at once.
Several hub processes may run workers against one store: claims are exclusive. A worker that
dies mid-send leaves a claim that expires, and the notification is sent again (at least once:
receivers can deduplicate on its ``id``, the same on every attempt). Whatever goes wrong with a
notification itself (a document that cannot be formatted, say) is a failed attempt with its error
on record; a notification is not attempted past its ``expires_at``; so one bad notification
never blocks the ones behind it on its channel.

Every attempt has one total deadline (``delivery_timeout``); :meth:`DeliveryWorker.stop` waits
for the attempts in flight at most its ``timeout``, then abandons them (their threads end at
their deadline; the claims expire and the notifications are sent again by the next worker).
"""

from __future__ import annotations

import json
import logging
import os
import random
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

import httpx

from apitally_hub.alerting import outgoing
from apitally_hub.alerting.config import AlertingConfig
from apitally_hub.alerting.notifiers.senders import Attempt, deliver
from apitally_hub.alerting.urls import target_host
from apitally_hub.storage.alert_records import OutboxRecord
from apitally_hub.storage.base import Storage

_logger = logging.getLogger(__name__)

SENDERS = 4
POLL_SECONDS = 1.0


def backoff(attempts: int, config: AlertingConfig, retry_after: float | None, rng: random.Random) -> float:
    """Seconds until the next attempt after ``attempts`` failed ones."""
    delay = min(config.retry_base_seconds * 2 ** max(attempts - 1, 0), config.retry_max_seconds)
    delay *= rng.uniform(0.8, 1.2)
    return float(max(delay, retry_after or 0.0))


class DeliveryWorker:
    def __init__(
        self,
        storage: Storage,
        config: AlertingConfig,
        *,
        clock: Callable[[], float] = time.time,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.storage = storage
        self.config = config
        self.clock = clock
        self.name = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._client = outgoing.client(transport, "apitally-otel-hub")
        self._pool = ThreadPoolExecutor(SENDERS, thread_name_prefix="hub-delivery")
        self._in_flight: dict[str, Future[None]] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._rng = random.Random()

    @property
    def claim_seconds(self) -> float:
        """A claim outlives the slowest attempt (so it expires only when the worker died)."""
        return max(self.config.delivery_timeout, 60.0) * 2

    # -- one round (also driven directly by tests) --------------------------------------------

    def dispatch(self) -> int:
        """Claim what is due and start sending it; returns how many sends started."""
        with self._lock:
            busy = [channel for channel, future in self._in_flight.items() if not future.done()]
            room = SENDERS - len(busy)
        if room <= 0 or self._stop.is_set():  # stopping: the pool takes no more work
            return 0
        claimed = self.storage.alerts.claim_notifications(
            self.name, now=self.clock(), limit=room, lease_seconds=self.claim_seconds, exclude_channels=busy
        )
        for notification in claimed:
            future = self._pool.submit(self._send, notification)
            future.add_done_callback(lambda _: self._wake.set())
            with self._lock:
                self._in_flight[notification.channel_id] = future
        return len(claimed)

    def _send(self, notification: OutboxRecord) -> None:
        try:
            self._attempt(notification)
        except Exception as exc:  # a bug or a store error: record it, don't let the claim loop
            _logger.exception("Delivering notification %s failed unexpectedly", notification.id)
            error = f"attempt {notification.attempts}: {type(exc).__name__}: {exc}"[:300]
            try:
                self.storage.alerts.finish_notification(
                    notification.id, self.name, status="failed", now=self.clock(), error=error
                )
            except Exception:  # the store is down: the claim expires and the notification is retried
                _logger.exception("Recording the failure of notification %s failed", notification.id)

    def _attempt(self, notification: OutboxRecord) -> None:
        alerts, now = self.storage.alerts, self.clock()
        channel = alerts.channel(notification.channel_id)
        if channel is None:
            alerts.finish_notification(
                notification.id, self.name, status="failed", now=now, error="channel deleted"
            )
            return
        if now >= notification.expires_at:
            error = f"expired after {notification.attempts - 1} attempts"
            if notification.last_error:
                error += f"; {notification.last_error}"
            alerts.finish_notification(
                notification.id, self.name, status="failed", now=now, error=error[:500]
            )
            return
        doc = json.loads(notification.payload)
        attempt: Attempt = deliver(
            self._client,
            channel.type,
            channel.config,
            doc,
            notification.id,
            timeout=self.config.delivery_timeout,
            now=now,
        )
        now = self.clock()
        where = channel.config.get("smtp_host") or target_host(channel.config.get("url", "http://-/"))
        if attempt.ok:
            # the last failure stays on record: "sent after 3 attempts, the last failure was ..."
            alerts.finish_notification(
                notification.id, self.name, status="sent", now=now, error=notification.last_error
            )
            _logger.info(
                "Sent %s notification %s to %s channel %r (%s)",
                notification.event,
                notification.id,
                channel.type,
                channel.name,
                where,
            )
            return
        error = f"attempt {notification.attempts}: {attempt.detail}"
        retry_at = now + backoff(notification.attempts, self.config, attempt.retry_after, self._rng)
        if attempt.retryable and retry_at < notification.expires_at:
            alerts.finish_notification(
                notification.id, self.name, status="pending", now=now, error=error, next_attempt_at=retry_at
            )
            _logger.warning(
                "Notification %s to %s channel %r (%s) failed (%s); retrying in %.1f s",
                notification.id,
                channel.type,
                channel.name,
                where,
                attempt.detail,
                retry_at - now,
            )
            return
        alerts.finish_notification(notification.id, self.name, status="failed", now=now, error=error)
        _logger.error(
            "Notification %s to %s channel %r (%s) failed for good: %s",
            notification.id,
            channel.type,
            channel.name,
            where,
            error,
        )

    def wait_idle(self, timeout: float = 10.0) -> None:
        """Wait for the sends in flight (tests)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                futures = list(self._in_flight.values())
            if all(f.done() for f in futures):
                return
            time.sleep(0.01)

    # -- the thread ---------------------------------------------------------------------------

    def notify(self) -> None:
        """New notifications were committed: look now rather than at the next poll."""
        self._wake.set()

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="hub-delivery", daemon=True)
            self._thread.start()

    def request_stop(self) -> None:
        """Start stopping (no new work); :meth:`stop` waits for it."""
        self._stop.set()
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop claiming, let the sends in flight finish for at most ``timeout`` seconds, then
        abandon them (logged; their claims expire, so they are sent again); idempotent."""
        end = time.monotonic() + timeout
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(max(end - time.monotonic(), 0.0))
            self._thread = None
        self._pool.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            futures = list(self._in_flight.items())
        for channel_id, future in futures:
            try:
                future.result(max(end - time.monotonic(), 0.0))
            except FutureTimeout:
                _logger.warning(
                    "Stopping: abandoned a notification in flight to channel %s (sent again later)",
                    channel_id,
                )
            except CancelledError:
                pass
        self._client.close()

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            self._wake.clear()
            try:
                started = self.dispatch()
                failures = 0
            except Exception:  # the store is unavailable: keep the worker alive, back off
                failures += 1
                started = 0
                if failures <= 3 or failures % 60 == 0:
                    _logger.exception("Claiming notifications failed (%d in a row)", failures)
            if not started:
                self._wake.wait(min(POLL_SECONDS * 2 ** min(failures, 5), 30.0))
