"""Health checks: the hub GETs each app env's configured URL every 60 s (5 s timeout); a status
among the accepted ones (default 2xx) is up, anything else — after one retry — is down.

Only http(s), only the configured host: a redirect is followed (up to 5) only to the same host
(or an http -> https upgrade of it); a redirect elsewhere counts as a failure. Checks run in
the process holding the ``health-checks`` lease, in parallel, on threads of their own.

Each attempt has one total deadline (the 5 s timeout: connect, TLS, write and reads together)
and reads at most 64 kB of the response (:mod:`apitally_hub.alerting.outgoing`); a check still
running when its next round comes is skipped that round, never waited for, so one slow target
never holds up the checks of other apps.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass
from typing import Any

import httpx

from apitally_hub.alerting import outgoing
from apitally_hub.alerting.config import AlertingConfig
from apitally_hub.alerting.urls import same_origin
from apitally_hub.alerting.validation import status_accepted
from apitally_hub.storage.alert_records import HealthCheckRecord
from apitally_hub.storage.base import Storage

_logger = logging.getLogger(__name__)

LEASE = "health-checks"
MAX_REDIRECTS = 5
ATTEMPTS = 2
"""One retry before "down"."""
CHECKERS = 16
"""Checks in flight at once."""


@dataclass(frozen=True)
class CheckResult:
    up: bool
    status_code: int | None
    latency_ms: float | None
    error: str | None


def probe(client: httpx.Client, url: str, accepted: list[str], timeout: float) -> CheckResult:
    """One GET of ``url``, following same-host redirects only, all within ``timeout`` seconds."""
    target = httpx.URL(url)
    started = time.perf_counter()
    try:
        for _ in range(MAX_REDIRECTS + 1):
            left = timeout - (time.perf_counter() - started)
            if left <= 0:
                raise httpx.TimeoutException("the check's deadline passed")
            response = outgoing.call(client, "GET", target, seconds=left)
            code = response.status_code
            location = response.headers.get("location")
            if response.is_redirect and location and not status_accepted(code, accepted):
                following = target.join(location)
                if not same_origin(target, following):
                    return CheckResult(
                        False, code, _ms(started), f"redirect to another host ({following.host})"
                    )
                target = following
                continue
            ok = status_accepted(code, accepted)
            return CheckResult(ok, code, _ms(started), None if ok else f"HTTP {code}")
        return CheckResult(False, None, _ms(started), "too many redirects")
    except httpx.TimeoutException:
        return CheckResult(False, None, _ms(started), f"timed out after {timeout:g} s")
    except httpx.HTTPError as exc:
        return CheckResult(False, None, _ms(started), f"{type(exc).__name__}: {exc}"[:300])


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)


def check(client: httpx.Client, url: str, config: Mapping[str, Any], timeout: float) -> CheckResult:
    accepted = list(config.get("accepted_status_codes") or ["2xx"])
    result = probe(client, url, accepted, timeout)
    for _ in range(ATTEMPTS - 1):
        if result.up:
            break
        result = probe(client, url, accepted, timeout)
    return result


class HealthChecker:
    def __init__(
        self,
        storage: Storage,
        config: AlertingConfig,
        *,
        holder: str,
        clock: Callable[[], float] = time.time,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.storage = storage
        self.config = config
        self.holder = holder
        self.clock = clock
        self._client = outgoing.client(transport, "apitally-otel-hub health check")
        self._pool = ThreadPoolExecutor(CHECKERS, thread_name_prefix="hub-health")
        self._in_flight: dict[str, Future[None]] = {}
        self._lock = threading.Lock()
        self._leader = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self, *, wait: bool = True) -> int:
        """Start a check of every enabled health check not still running (if this process holds
        the lease); returns how many started. With ``wait`` (tests), wait for them, at most as
        long as one check can last; the checker's thread does not: its rounds keep their pace."""
        lease = max(self.config.health_check_interval * 3, 30.0)
        if not self.storage.try_lease(LEASE, self.holder, seconds=lease, now=self.clock()):
            return 0
        self._leader = True
        checks = [c for c in self.storage.alerts.health_checks() if c.config.get("enabled", True)]
        started: list[Future[None]] = []
        with self._lock:
            for record in checks:
                if self._stop.is_set():  # stopping: the pool takes no more work
                    break
                key = f"{record.app.client_id}/{record.app.env}"
                running = self._in_flight.get(key)
                if running is not None and not running.done():
                    continue  # still on its last round (a slow target): not queued twice
                future = self._pool.submit(self._check_one, record)
                self._in_flight[key] = future
                started.append(future)
        if wait:
            wait_futures(started, timeout=self.config.health_check_timeout * ATTEMPTS + 1.0)
        return len(started)

    def _check_one(self, record: HealthCheckRecord) -> None:
        try:
            result = check(self._client, record.url, record.config, self.config.health_check_timeout)
            status = "up" if result.up else "down"
            changed = self.storage.alerts.record_health_result(
                record.app,
                status=status,
                at=self.clock(),
                status_code=result.status_code,
                latency_ms=result.latency_ms,
                error=result.error,
                event_id=str(uuid.uuid4()),
            )
            if changed:
                log = _logger.info if result.up else _logger.warning
                log(
                    "Health check of %s/%s is %s (%s)",
                    record.app.client_id,
                    record.app.env,
                    status,
                    result.error or result.status_code,
                )
        except Exception:  # one check's failure (e.g. the store) must not stop the others
            _logger.exception("Health check of %s/%s failed", record.app.client_id, record.app.env)

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="hub-health-checks", daemon=True)
            self._thread.start()

    def request_stop(self) -> None:
        """Start stopping (no new work); :meth:`stop` waits for it."""
        self._stop.set()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop, waiting for the checks in flight at most ``timeout`` seconds (then abandoning
        them, logged: they end at their deadline); idempotent."""
        end = time.monotonic() + timeout
        self._stop.set()
        if self._thread is not None:
            self._thread.join(max(end - time.monotonic(), 0.0))
            self._thread = None
        if self._leader:
            self._leader = False
            try:
                self.storage.release_lease(LEASE, self.holder)
            except Exception:  # stopping anyway: the lease then simply expires
                _logger.exception("Releasing the health-check lease failed")
        self._pool.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            futures = list(self._in_flight.items())
        for key, future in futures:
            try:
                future.result(max(end - time.monotonic(), 0.0))
            except FutureTimeout:
                _logger.warning("Stopping: abandoned the health check of %s in flight", key)
            except CancelledError:
                pass
        self._client.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self.run_once(wait=False)
            except Exception:  # the store is unavailable: try again next round
                _logger.exception("Health-check round failed")
            self._stop.wait(max(self.config.health_check_interval - (time.monotonic() - started), 0.05))
