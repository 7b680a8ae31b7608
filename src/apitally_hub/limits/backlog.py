"""Backpressure from the folding queue: when folding falls behind, the clients that put most of
the backlog there are asked to come back later (503 + ``Retry-After``; clients keep unsent syncs
for an hour and resend them), the others are not.

Ingest only commits raw messages, so it can take bodies faster than folding turns them into
aggregates (a few clients posting valid 8 MB syncs back to back do). Without a bound the queue —
and the time before data shows up in queries — would grow for as long as they keep at it. Here
the queue's age bounds it: once the oldest pending message is ``max_lag`` seconds old, a client
whose pending bytes are more than its fair share of the backlog (total / clients with anything
pending) is refused until the backlog is back under the bound. The figures come from the store
about once a second (:meth:`Backlog.refresh`, off the event loop); each admission check is a
dictionary lookup.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field

DEFAULT_MAX_LAG = 30.0
"""Seconds the oldest pending message may wait before heavy clients are held back."""

RETRY_AFTER = 15


@dataclass
class Backlog:
    max_lag: float = DEFAULT_MAX_LAG
    _heavy: frozenset[str] = field(default_factory=frozenset)
    _behind: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def refresh(self, pending: dict[str, tuple[int, float]], now: float) -> None:
        """``pending``: client id -> (bytes pending, oldest received_at) from the store."""
        heavy: frozenset[str] = frozenset()
        behind = False
        if pending and math.isfinite(self.max_lag):
            oldest = min(received for _, received in pending.values())
            behind = now - oldest > self.max_lag / 2
            if now - oldest > self.max_lag:
                share = sum(size for size, _ in pending.values()) / len(pending)
                heavy = frozenset(client for client, (size, _) in pending.items() if size >= share)
        with self._lock:
            self._heavy = heavy
            self._behind = behind

    @property
    def behind(self) -> bool:
        """Folding is behind (the oldest pending message waited over half the allowed lag): OTLP
        clients are asked to export less often."""
        return self._behind

    def holds_back(self, client_id: str) -> bool:
        return client_id in self._heavy
