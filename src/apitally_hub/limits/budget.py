"""A process-wide budget for request bodies in flight.

Every ingest request reserves the bytes it will hold — its body (the declared ``Content-Length``,
or chunk by chunk when there is none) and, for ``/log``, the decompressed lines it keeps — before
it holds them, and gives them back when it is done. When the budget is spent the request is
answered **503 with Retry-After** (clients keep the message and retry) instead of being read: 32
concurrent 9.5 MB bodies used to take the hub to 1.6 GB.

Thread-safe: ``/log`` decompresses in a worker thread and grows its reservation from there.
"""

from __future__ import annotations

import threading

DEFAULT_BUDGET_BYTES = 64 * 1024 * 1024


class BudgetExhausted(Exception):
    """The reservation would take the budget over its capacity."""


class BodyBudget:
    def __init__(self, capacity: int = DEFAULT_BUDGET_BYTES) -> None:
        if capacity <= 0:
            raise ValueError("the body budget must be positive")
        self.capacity = capacity
        self._lock = threading.Lock()
        self._in_use = 0
        self.peak = 0

    @property
    def in_use(self) -> int:
        return self._in_use

    def reserve(self, size: int = 0) -> Reservation:
        """A reservation of ``size`` bytes; raises :class:`BudgetExhausted` when they are not free."""
        reservation = Reservation(self)
        reservation.grow(size)
        return reservation

    def _take(self, size: int) -> None:
        with self._lock:
            if size > 0 and self._in_use + size > self.capacity:
                raise BudgetExhausted
            self._in_use += size
            self.peak = max(self.peak, self._in_use)

    def _give_back(self, size: int) -> None:
        with self._lock:
            self._in_use -= size


class Reservation:
    """Bytes held by one request; :meth:`release` (idempotent) gives them all back."""

    def __init__(self, budget: BodyBudget) -> None:
        self._budget = budget
        self.size = 0

    def grow(self, size: int) -> None:
        """Hold ``size`` more bytes; raises :class:`BudgetExhausted` (holding nothing more)."""
        self._budget._take(size)
        self.size += size

    def release(self) -> None:
        size, self.size = self.size, 0
        self._budget._give_back(size)
