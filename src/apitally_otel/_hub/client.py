"""HubClient: delivers hub messages from one background thread (hub-protocol §6).

Callers only enqueue (a dict → JSON bytes, a lock, a deque append); the thread does all network
I/O, so neither the event loop nor the metric reader ever waits on the hub, however slow it is.

Bounds, per process (a hub that is down or hangs cannot grow memory past them):

- at most **400** unsent sync messages (``DEFAULT_MAX_QUEUED``: over an hour at the 0.x client's
  10 s interval) and **16 MiB** of their JSON (``DEFAULT_MAX_QUEUED_BYTES``); past either bound the
  oldest are dropped (never the one being sent, always keeping the newest);
- a sync message is kept at most **1 hour** after its ``timestamp`` (``MAX_MESSAGE_AGE``);
- one startup message (a newer one replaces an unsent one), one request in flight;
- each request ends within its deadline (``request_timeout``, 10 s: connect, TLS, send and answer
  in all, however slowly the hub trickles), and at most 64 kB of an answer is read (``_hub.http``).

Each drop reason gets one warning stating how many were dropped; further drops until the hub
answers again are added up and reported then (or at shutdown) in one more warning.

Delivery: startup first, then syncs oldest first, each with its original ``message_uuid`` (the hub
deduplicates), 0.1-0.5 s of random spacing between two sends from a backlog. Outcomes:

====================================  ==========================================================
2xx                                   done
404                                   unknown client id: one error, nothing more is sent by
                                      this process
422                                   the hub rejected it: warning with the hub's answer, dropped
408, 429, 5xx, deadline, network      kept; the queue waits: exponential backoff from
                                      ``min_backoff`` (1 s) doubling up to ``max_backoff`` (the
                                      exporter uses its sync interval), times 0.5-1 jitter, and
                                      never before the hub's ``Retry-After``
other status                          logged and dropped
====================================  ==========================================================

A warning (422, other 4xx) is logged once per distinct answer; repeats go to debug. An outage
(transient failures in a row) is one warning. What the hub says is quoted at most ~200 characters
long, control characters escaped.

:meth:`HubClient.flush` skips the backoff (not ``Retry-After``) and gives up at the first failed
attempt or at its timeout; a request still hanging after one flush's timeout is not waited for by
the next flush (so lifespan shutdown + interpreter-exit shutdown stay within one deadline).
Connections (:class:`apitally_otel._hub.http.HubConnection`) honour the standard proxy variables
(``HTTPS_PROXY``, ``NO_PROXY``...) and ``SSL_CERT_FILE``/``SSL_CERT_DIR``, or an explicit
``proxy``; certificates are always verified.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
from opentelemetry.instrumentation.utils import suppress_instrumentation

from apitally_otel._config import DEFAULT_HUB_TIMEOUT, HubSettings
from apitally_otel._gil import dumps_chunked
from apitally_otel._hub.http import HubConnection, HubUnreachable
from apitally_otel._hub.status import MAX_MESSAGE_AGE, Outcome, Result, classify, parse_retry_after

_logger = logging.getLogger(__name__)

DEFAULT_MAX_QUEUED = 400
DEFAULT_MAX_QUEUED_BYTES = 16 * 1024 * 1024
DEFAULT_MIN_BACKOFF = 1.0
DEFAULT_MAX_BACKOFF = 60.0
MAX_BACKOFF_CAP = 300.0
SEND_SPACING = (0.1, 0.5)
_MAX_REMEMBERED_ANSWERS = 64
_JSON = {"Content-Type": "application/json"}

_DROP_MESSAGES = {
    "expired": "apitally-otel: dropped %d sync message(s) older than %s s that the hub did not accept",
    "overflow": "apitally-otel: send queue full, dropped the %d oldest sync message(s) (bounds: %s)",
}


@dataclass(eq=False)
class _Message:
    kind: str  # "startup" | "sync"
    body: bytes
    timestamp: float


class HubClient:
    """Queue and deliver messages for one ``(client_id, env)``; never raises to its callers.

    ``clock`` (epoch seconds) ages sync messages against their ``timestamp``; waiting uses
    ``time.monotonic``. ``transport``, ``send_spacing`` and the bounds are test seams.
    """

    def __init__(
        self,
        settings: HubSettings,
        *,
        transport: httpx.BaseTransport | None = None,
        proxy: str | None = None,
        clock: Callable[[], float] = time.time,
        max_queued: int = DEFAULT_MAX_QUEUED,
        max_queued_bytes: int = DEFAULT_MAX_QUEUED_BYTES,
        max_age: float = MAX_MESSAGE_AGE,
        min_backoff: float = DEFAULT_MIN_BACKOFF,
        max_backoff: float = DEFAULT_MAX_BACKOFF,
        send_spacing: tuple[float, float] = SEND_SPACING,
        request_timeout: float = DEFAULT_HUB_TIMEOUT,
    ) -> None:
        self.settings = settings
        self._proxy = proxy
        self._clock = clock
        self.max_queued = max_queued
        self.max_queued_bytes = max_queued_bytes
        self.max_age = max_age
        self.min_backoff = min_backoff
        self.max_backoff = max(max_backoff, min_backoff)
        self.send_spacing = send_spacing
        # Our own generator: the app's global ``random`` state is not ours to consume (and a forked
        # worker builds a new client, so workers do not retry in lockstep).
        self._random = random.Random()
        self._cond = threading.Condition()
        self._startup: _Message | None = None
        self._syncs: deque[_Message] = deque()
        self._queued_bytes = 0
        self._in_flight: _Message | None = None
        self._stalled: _Message | None = None  # outlasted a flush deadline: not waited for again
        self._backoff_until = 0.0  # time.monotonic()
        self._not_before = 0.0  # Retry-After, time.monotonic()
        self._spacing_until = 0.0
        self._failures = 0  # consecutive transient failures (the current outage)
        self._failed_attempts = 0  # all transient failures, for flush()
        self._flushing = 0
        self._stopped = False  # 404: for the life of the process
        self._closing = False
        self._shut_down = False
        self._connection = HubConnection(
            settings.hub_url, timeout=request_timeout, proxy=proxy, transport=transport
        )
        self._thread: threading.Thread | None = None
        self._answers_logged: set[tuple[str, int | None, str]] = set()
        self._drops_warned: set[str] = set()
        self._drops_unreported: Counter[str] = Counter()
        self.sent_count = 0
        self.dropped: Counter[str] = Counter()  # reason -> messages: expired, overflow, rejected, ...

    @property
    def request_timeout(self) -> float:
        """The deadline of one request to the hub, in seconds."""
        return self._connection.timeout

    # -- producer side (any thread) --------------------------------------------------------
    def set_startup(self, payload: dict[str, Any]) -> bool:
        return self._put(_Message("startup", _dump(payload), self._clock()))

    def enqueue_sync(self, payload: dict[str, Any]) -> bool:
        timestamp = payload.get("timestamp")
        stamp = float(timestamp) if isinstance(timestamp, (int, float)) else self._clock()
        return self._put(_Message("sync", _dump(payload), stamp))

    @property
    def stopped(self) -> bool:
        """True once the hub said it does not know the client id (404) or after shutdown."""
        return self._stopped or self._closing

    @property
    def dropped_count(self) -> int:
        return sum(self.dropped.values())

    @property
    def pending(self) -> int:
        """Messages not yet accepted by the hub (including the one in flight)."""
        with self._cond:
            return self._pending()

    def _pending(self) -> int:
        return len(self._syncs) + (self._startup is not None)

    def _put(self, message: _Message) -> bool:
        with self._cond:
            if self._stopped or self._closing:
                return False
            if message.kind == "startup":
                self._startup = message
            else:
                self._syncs.append(message)
                self._queued_bytes += len(message.body)
                self._drop_expired()
                self._enforce_bounds()
            self._ensure_thread()
            self._cond.notify_all()
        return True

    def _enforce_bounds(self) -> None:
        dropped = 0
        while len(self._syncs) > 1 and (
            len(self._syncs) > self.max_queued or self._queued_bytes > self.max_queued_bytes
        ):
            index = 1 if self._syncs[0] is self._in_flight else 0
            if index >= len(self._syncs) - 1:
                break  # only the message in flight and the newest are left
            old = self._syncs[index]
            del self._syncs[index]
            self._queued_bytes -= len(old.body)
            dropped += 1
        if dropped:
            self._note_dropped(
                "overflow", dropped, f"{self.max_queued} messages, {self.max_queued_bytes} bytes"
            )

    def _drop_expired(self) -> None:
        oldest_allowed = self._clock() - self.max_age
        if not self._syncs or self._syncs[0].timestamp >= oldest_allowed:
            return
        kept = deque(m for m in self._syncs if m.timestamp >= oldest_allowed or m is self._in_flight)
        dropped = len(self._syncs) - len(kept)
        self._syncs = kept
        self._queued_bytes = sum(len(m.body) for m in kept)
        if dropped:
            self._note_dropped("expired", dropped, f"{self.max_age:g}")

    def _note_dropped(self, reason: str, count: int, bound: str) -> None:
        self.dropped[reason] += count
        if reason in self._drops_warned:
            self._drops_unreported[reason] += count
            return
        self._drops_warned.add(reason)
        _logger.warning(_DROP_MESSAGES[reason], count, bound)

    def _report_drops(self) -> None:
        """The hub answers again: one summary per reason of what was dropped since the first warning."""
        for reason, count in sorted(self._drops_unreported.items()):
            _logger.warning("apitally-otel: in all, %d more sync message(s) dropped (%s)", count, reason)
        self._drops_unreported.clear()
        self._drops_warned.clear()

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="apitally-otel-hub", daemon=True)
            self._thread.start()

    def flush(self, timeout: float = 5.0) -> bool:
        """Deliver what is queued now, within ``timeout`` seconds; True when nothing is left.

        Skips the backoff delay but honours ``Retry-After``; stops at the first failed attempt
        (the hub is unreachable now) and does not wait again for a request that already outlasted
        an earlier flush.
        """
        deadline = time.monotonic() + max(timeout, 0.0)
        with self._cond:
            if not self._pending():
                return True
            if self._stopped or self._closing:
                return False
            if self._in_flight is not None and self._in_flight is self._stalled:
                return False
            failed_before = self._failed_attempts
            self._flushing += 1
            self._backoff_until = self._spacing_until = 0.0
            self._ensure_thread()
            self._cond.notify_all()
            try:
                while self._pending() and not self._stopped:
                    if self._failed_attempts > failed_before or self._not_before > deadline:
                        break
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        self._stalled = self._in_flight
                        break
                    self._cond.wait(remaining)
            finally:
                self._flushing -= 1
            return not self._pending()

    def shutdown(self, timeout: float = 5.0) -> bool:
        """A last :meth:`flush`, then stop; True when everything was delivered. Idempotent."""
        with self._cond:
            if self._shut_down:
                return not self._pending()
            self._shut_down = True
        delivered = self.flush(timeout)
        with self._cond:
            self._closing = True
            left = self._pending()
            busy = self._in_flight is not None
            self._report_drops()
            self._cond.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread() and not busy:
            thread.join(1.0)  # a request still hanging is not waited for: the thread is a daemon
        if left and not self._stopped:
            _logger.warning("apitally-otel: %d message(s) not delivered to the hub before shutdown", left)
        return delivered

    # -- the background thread ---------------------------------------------------------------
    def _run(self) -> None:
        # Our own HTTP calls must not be traced by an instrumented httpx (telemetry feedback loop).
        try:
            with suppress_instrumentation():
                self._loop()
        except Exception:  # the thread must survive anything; a dead sender loses all data
            _logger.exception("apitally-otel: hub sender thread failed")
        finally:
            self._connection.close()

    def _loop(self) -> None:
        while True:
            with self._cond:
                message = self._next_message()
                if message is None:
                    return
                self._in_flight = message
            result = Result(Outcome.DROPPED, detail="the client failed to send it")
            try:
                result = self._post(message)
            except Exception:  # a bug or a broken custom transport: drop the message, keep the thread
                _logger.exception("apitally-otel: failed to send a %s message", message.kind)
            finally:
                with self._cond:  # one critical section: the bounds must not drop what was just sent
                    self._in_flight = None
                    if self._stalled is message:
                        self._stalled = None
                    self._handle(message, result)
                    self._cond.notify_all()

    def _next_message(self) -> _Message | None:
        """Wait (holding the condition) until a message may be sent; None to stop the thread."""
        while True:
            if self._closing or self._stopped:
                return None
            self._drop_expired()
            if self._startup is None and not self._syncs:
                self._cond.notify_all()  # wakes a flush waiting for an expiry
                self._cond.wait()
                continue
            delay = max(self._backoff_until, self._not_before, self._spacing_until) - time.monotonic()
            if delay > 0:
                self._cond.wait(delay)
                continue
            return self._startup if self._startup is not None else self._syncs[0]

    def _handle(self, message: _Message, result: Result) -> None:
        now = time.monotonic()
        if result.retry_after is not None:
            self._not_before = now + result.retry_after
        if result.outcome is Outcome.RETRY:
            self._failures += 1
            self._failed_attempts += 1
            backoff = min(self.min_backoff * 2 ** min(self._failures - 1, 30), self.max_backoff)
            self._backoff_until = now + backoff * self._random.uniform(0.5, 1.0)
            log = _logger.warning if self._failures == 1 else _logger.debug
            log(
                "apitally-otel: hub unavailable (%s%s); keeping %d message(s) and retrying",
                f"HTTP {result.status_code}: " if result.status_code else "",
                result.detail,
                self._pending(),
            )
            return
        if self._failures:
            _logger.info("apitally-otel: the hub answers again after %d failed attempt(s)", self._failures)
        if self._drops_warned:
            self._report_drops()
        self._failures = 0
        self._backoff_until = 0.0
        self._remove(message)
        if result.outcome is Outcome.SENT:
            self.sent_count += 1
            if self._syncs and not self._flushing:
                self._spacing_until = now + self._random.uniform(*self.send_spacing)
        elif result.outcome is Outcome.INVALID_CLIENT:
            self._stopped = True
            self.dropped["invalid_client"] += self._pending() + 1
            self._startup = None
            self._syncs.clear()
            self._queued_bytes = 0
            _logger.error(
                "apitally-otel: the hub does not know client id %s (404); "
                "nothing more will be sent by this process",
                self.settings.client_id,
            )
        else:
            rejected = result.outcome is Outcome.REJECTED
            self.dropped["rejected" if rejected else "refused"] += 1
            key = (message.kind, result.status_code, result.detail)
            first = key not in self._answers_logged
            if first and len(self._answers_logged) < _MAX_REMEMBERED_ANSWERS:
                self._answers_logged.add(key)
            log = (_logger.warning if rejected else _logger.error) if first else _logger.debug
            log(
                "apitally-otel: the hub rejected a %s message (%s), dropped it: %s",
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

    def _post(self, message: _Message) -> Result:
        try:
            answer = self._connection.post(f"/{message.kind}", message.body, headers=_JSON)
        except HubUnreachable as exc:
            return Result(Outcome.RETRY, detail=str(exc))
        status = answer.status_code
        detail = "" if status < 300 else answer.quoted()
        return Result(classify(status), status, parse_retry_after(answer.retry_after), detail)


def _dump(payload: dict[str, Any]) -> bytes:
    return dumps_chunked(payload)  # a large sync must not hold the GIL in one json.dumps call
