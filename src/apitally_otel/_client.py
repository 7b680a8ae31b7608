"""HubClient: delivers hub messages from one background thread (hub-protocol §6).

Callers only enqueue; the thread does all network I/O, so neither the event loop nor the metric
reader ever waits on the hub. Unsent sync messages are kept, bounded in count and bytes, for at
most an hour after their timestamp, and resent oldest first with their original ``message_uuid``.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

import httpx
from opentelemetry.instrumentation.utils import suppress_instrumentation

from apitally_otel._config import HubSettings

_logger = logging.getLogger(__name__)

REQUEST_TIMEOUT = 10.0
MAX_MESSAGE_AGE = 3600.0
DEFAULT_MAX_QUEUED = 400
DEFAULT_MAX_QUEUED_BYTES = 32 * 1024 * 1024
MAX_BACKOFF = 300.0


class Outcome(Enum):
    SENT = "sent"
    RETRY = "retry"  # transient: keep the message
    REJECTED = "rejected"  # 422: the hub will never accept it
    DROPPED = "dropped"  # another 4xx: not retryable
    INVALID_CLIENT = "invalid_client"  # 404: stop for the life of the process


@dataclass(frozen=True)
class Result:
    outcome: Outcome
    status_code: int | None = None
    retry_after: float | None = None
    detail: str = ""


def classify(status_code: int) -> Outcome:
    if 200 <= status_code < 300:
        return Outcome.SENT
    if status_code == 404:
        return Outcome.INVALID_CLIENT
    if status_code == 422:
        return Outcome.REJECTED
    if status_code in (408, 429) or status_code >= 500:
        return Outcome.RETRY
    return Outcome.DROPPED


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return min(max(float(value), 0.0), MAX_MESSAGE_AGE)
    except ValueError:
        return None


@dataclass
class _Message:
    kind: str  # "startup" | "sync"
    body: bytes
    timestamp: float


class HubClient:
    def __init__(
        self,
        settings: HubSettings,
        *,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], float] = time.time,
        max_queued: int = DEFAULT_MAX_QUEUED,
        max_queued_bytes: int = DEFAULT_MAX_QUEUED_BYTES,
        max_age: float = MAX_MESSAGE_AGE,
    ) -> None:
        self.settings = settings
        self._transport = transport
        self._clock = clock
        self.max_queued = max_queued
        self.max_queued_bytes = max_queued_bytes
        self.max_age = max_age
        self._cond = threading.Condition()
        self._startup: _Message | None = None
        self._syncs: deque[_Message] = deque()
        self._queued_bytes = 0
        self._in_flight = False
        self._retry_at = 0.0
        self._failures = 0
        self._invalid_client = False
        self._closing = False
        self._http: httpx.Client | None = None
        self._thread: threading.Thread | None = None
        self.sent_count = 0
        self.dropped_count = 0

    # -- producer side (any thread) --------------------------------------------------------
    def set_startup(self, payload: dict[str, Any]) -> None:
        self._put(_Message("startup", _dump(payload), self._clock()))

    def enqueue_sync(self, payload: dict[str, Any]) -> bool:
        return self._put(_Message("sync", _dump(payload), float(payload.get("timestamp", self._clock()))))

    def _put(self, message: _Message) -> bool:
        with self._cond:
            if self._invalid_client or self._closing:
                return False
            if message.kind == "startup":
                self._startup = message
            else:
                self._syncs.append(message)
                self._queued_bytes += len(message.body)
                dropped = 0
                while len(self._syncs) > 1 and (
                    len(self._syncs) > self.max_queued or self._queued_bytes > self.max_queued_bytes
                ):
                    old = self._syncs.popleft()
                    self._queued_bytes -= len(old.body)
                    dropped += 1
                if dropped:
                    self.dropped_count += dropped
                    _logger.warning(
                        "apitally-otel: send queue full, dropped the %d oldest sync message(s)", dropped
                    )
            self._ensure_thread()
            self._cond.notify_all()
        return True

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="apitally-otel-hub", daemon=True)
            self._thread.start()

    @property
    def pending(self) -> int:
        with self._cond:
            return len(self._syncs) + (self._startup is not None) + int(self._in_flight)

    def flush(self, timeout: float = 5.0) -> bool:
        """Try to deliver everything queued now (ignoring backoff) within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self._cond:
            self._retry_at = 0.0
            self._failures = 0
            self._cond.notify_all()
            while self._has_work() or self._in_flight:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._invalid_client:
                    break
                if not self._in_flight and self._retry_at > self._clock():
                    break  # tried during this flush and failed: the hub is unreachable now
                self._cond.wait(min(remaining, 0.05))
            return not (self._has_work() or self._in_flight)

    def shutdown(self, timeout: float = 5.0) -> None:
        self.flush(timeout)
        with self._cond:
            self._closing = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=1.0)
        if self._syncs or self._startup:
            _logger.warning(
                "apitally-otel: %d message(s) not delivered before shutdown",
                len(self._syncs) + bool(self._startup),
            )

    # -- the background thread ---------------------------------------------------------------
    def _has_work(self) -> bool:
        return self._startup is not None or bool(self._syncs)

    def _run(self) -> None:
        # Our own HTTP calls must not be traced by an instrumented httpx (telemetry feedback loop).
        try:
            with suppress_instrumentation():
                self._loop()
        except Exception:  # the thread must survive anything; a dead sender loses all data
            _logger.exception("apitally-otel: hub sender thread failed")
        finally:
            if self._http is not None:
                self._http.close()
                self._http = None

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._closing and (
                    self._invalid_client or not self._has_work() or self._clock() < self._retry_at
                ):
                    wait = None if not self._has_work() else max(self._retry_at - self._clock(), 0.01)
                    self._cond.wait(wait if wait is None else min(wait, 1.0))
                if self._closing:
                    return
                message = self._startup or self._syncs[0]
                self._in_flight = True
            try:
                self._deliver(message)
            finally:
                with self._cond:
                    self._in_flight = False
                    self._cond.notify_all()
            with self._cond:
                if len(self._syncs) > 0 and not self._retry_at and not self._closing:
                    self._cond.wait(random.uniform(0.1, 0.5))  # spread resends (hub-protocol §6)

    def _deliver(self, message: _Message) -> None:
        if message.kind == "sync" and self._clock() - message.timestamp > self.max_age:
            self._drop_expired()
            return
        result = self._post(message)
        with self._cond:
            if result.outcome is Outcome.RETRY:
                self._failures += 1
                backoff = min(2.0 ** min(self._failures, 16), MAX_BACKOFF) * random.uniform(0.5, 1.0)
                self._retry_at = self._clock() + max(backoff, result.retry_after or 0.0)
                _logger.debug(
                    "apitally-otel: hub unavailable (%s), retrying in %.1f s", result.detail, backoff
                )
                return
            self._failures = 0
            self._retry_at = 0.0
            self._remove(message)
            if result.outcome is Outcome.SENT:
                self.sent_count += 1
            elif result.outcome is Outcome.INVALID_CLIENT:
                self._invalid_client = True
                self._startup = None
                self._syncs.clear()
                self._queued_bytes = 0
                _logger.error(
                    "apitally-otel: the hub does not know client id %s (404); stopped sending data",
                    self.settings.client_id,
                )
            else:
                self.dropped_count += 1
                log = _logger.warning if result.outcome is Outcome.REJECTED else _logger.error
                log(
                    "apitally-otel: hub rejected the %s message (%s): %s",
                    message.kind,
                    result.status_code,
                    result.detail,
                )

    def _remove(self, message: _Message) -> None:
        if self._startup is message:
            self._startup = None
        elif self._syncs and self._syncs[0] is message:
            self._syncs.popleft()
            self._queued_bytes -= len(message.body)

    def _drop_expired(self) -> None:
        with self._cond:
            now = self._clock()
            dropped = 0
            while self._syncs and now - self._syncs[0].timestamp > self.max_age:
                self._queued_bytes -= len(self._syncs.popleft().body)
                dropped += 1
        if dropped:
            self.dropped_count += dropped
            _logger.warning(
                "apitally-otel: dropped %d sync message(s) older than %d s", dropped, int(self.max_age)
            )

    def _post(self, message: _Message) -> Result:
        if self._http is None:
            self._http = httpx.Client(
                base_url=self.settings.hub_url, timeout=REQUEST_TIMEOUT, transport=self._transport
            )
        try:
            response = self._http.post(
                f"/{message.kind}", content=message.body, headers={"Content-Type": "application/json"}
            )
        except httpx.HTTPError as exc:
            return Result(Outcome.RETRY, detail=f"{type(exc).__name__}: {exc}")
        return Result(
            classify(response.status_code),
            response.status_code,
            _retry_after(response),
            response.text[:1000] if response.status_code >= 300 else "",
        )


def _dump(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
