"""Fault injection for client tests: make the next N ingest calls answer with a chosen status.

``plan.add("sync", 503, times=2)`` makes the next two ``/sync`` calls fail with 503 before the
body is read (nothing is stored), so a client's retry path can be tested against the real hub.
Use ``"*"`` for any ingest endpoint. Thread-safe: tests add faults from their own thread.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

ENDPOINTS = frozenset({"startup", "sync", "log", "*"})


@dataclass(frozen=True)
class Fault:
    status_code: int
    headers: Mapping[str, str] = field(default_factory=dict)
    body: Any = None


class FaultPlan:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queues: dict[str, deque[Fault]] = {}

    def add(
        self,
        endpoint: str,
        status_code: int,
        *,
        times: int = 1,
        headers: Mapping[str, str] | None = None,
        body: Any = None,
    ) -> None:
        if endpoint not in ENDPOINTS:
            raise ValueError(f"endpoint must be one of {sorted(ENDPOINTS)}")
        if not 200 <= status_code <= 599 or times < 1:
            raise ValueError("status_code must be 200-599 and times >= 1")
        fault = Fault(
            status_code, dict(headers or {}), body if body is not None else {"detail": "injected fault"}
        )
        with self._lock:
            self._queues.setdefault(endpoint, deque()).extend([fault] * times)

    def take(self, endpoint: str) -> Fault | None:
        """The next fault for ``endpoint`` (its own queue first, then ``"*"``), consumed."""
        with self._lock:
            for key in (endpoint, "*"):
                queue = self._queues.get(key)
                if queue:
                    return queue.popleft()
        return None

    def clear(self) -> None:
        with self._lock:
            self._queues.clear()
