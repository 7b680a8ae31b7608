"""Per-client ingest rate limit: a token bucket of bytes, keyed by client id, in memory.

Each client id may send ``burst`` bytes at once and ``rate`` bytes/s on average. Bytes are
charged after the fact (a ``/log`` file is charged its compressed size plus the lines the hub
keeps), which may take a bucket into debt; a client in debt gets **429 with Retry-After** (the
time until the debt is paid) before its next body is read. So valid but huge syncs cannot grow
the database faster than ``rate`` per client id. The defaults are far above what a real client
sends (one sync a minute, request-log files of at most 1 MB compressed).

The table of buckets is bounded (least recently used client ids are forgotten first; a forgotten
bucket starts full again). One process, one table: several hub processes each have their own.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

DEFAULT_RATE = 4 * 1024 * 1024
"""Bytes per second per client id, on average."""

DEFAULT_BURST = 256 * 1024 * 1024
"""Bytes a client id may send at once (several 50 MB request-log files after an outage)."""

MAX_CLIENTS = 65_536


class IngestRateLimiter:
    def __init__(
        self,
        rate: float = DEFAULT_RATE,
        burst: float = DEFAULT_BURST,
        *,
        max_clients: int = MAX_CLIENTS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not rate > 0 or not burst > 0:
            raise ValueError("the ingest rate and burst must be positive")
        self.rate, self.burst = float(rate), float(burst)
        self.max_clients = max_clients
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (tokens, at)

    def _tokens(self, key: str, now: float) -> float:
        tokens, at = self._buckets.get(key, (self.burst, now))
        return min(self.burst, tokens + (now - at) * self.rate)

    def retry_after(self, key: str) -> int | None:
        """Seconds until ``key`` may send again, or None when it may send now."""
        with self._lock:
            tokens = self._tokens(key, self._clock())
        return None if tokens > 0 else max(1, math.ceil(-tokens / self.rate))

    def charge(self, key: str, size: int) -> None:
        with self._lock:
            now = self._clock()
            self._buckets[key] = (self._tokens(key, now) - size, now)
            self._buckets.move_to_end(key)
            while len(self._buckets) > self.max_clients:
                self._buckets.popitem(last=False)
