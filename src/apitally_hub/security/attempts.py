"""Back-off for guesses: after a few failed logins a minute, from one client address or from
all of them together, further attempts are refused (429) until the oldest failure ages out.

A token has at least 96 bits of entropy to guess, so this is not what keeps a token safe; it keeps
a guesser from burning CPU and filling the log, and makes a leaked-but-mistyped token noisy.
State is per hub process, bounded (:data:`MAX_CLIENTS` addresses, ``overall`` timestamps).
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable

MAX_CLIENTS = 10_000


class FailureLimit:
    """At most ``per_client`` failures per client address and ``overall`` failures in all per
    ``window`` seconds."""

    def __init__(
        self,
        *,
        per_client: int = 5,
        overall: int = 50,
        window: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if per_client < 1 or overall < 1 or window <= 0:
            raise ValueError("per_client and overall must be at least 1, window positive")
        self.per_client, self.overall, self.window = per_client, overall, window
        self._clock = clock
        self._lock = threading.Lock()
        self._clients: OrderedDict[str, deque[float]] = OrderedDict()
        self._all: deque[float] = deque(maxlen=overall)

    def _wait(self, failures: deque[float], limit: int, now: float) -> float:
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        return failures[0] + self.window - now if len(failures) >= limit else 0.0

    def retry_after(self, client: str) -> int | None:
        """Seconds before ``client`` may try again (at least 1), or None: it may try now."""
        now = self._clock()
        with self._lock:
            own = self._clients.get(client)
            wait = max(
                self._wait(own, self.per_client, now) if own is not None else 0.0,
                self._wait(self._all, self.overall, now),
            )
        return max(1, math.ceil(wait)) if wait > 0 else None

    def failed(self, client: str) -> None:
        now = self._clock()
        with self._lock:
            own = self._clients.pop(client, None) or deque(maxlen=self.per_client)
            own.append(now)
            self._clients[client] = own  # the most recent last
            while len(self._clients) > MAX_CLIENTS:
                self._clients.popitem(last=False)
            self._all.append(now)

    def succeeded(self, client: str) -> None:
        with self._lock:
            self._clients.pop(client, None)
