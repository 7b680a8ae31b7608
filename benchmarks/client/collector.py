"""What the garbage collector does in a process: collections and their time, per generation.

Standard library only: the throughput benchmark's server imports it in the peers' virtual
environments too.
"""

from __future__ import annotations

import gc
import time
from typing import Any


class Collections:
    """Counts the collections of each generation, their CPU time (``thread_time``: a collection runs
    on the thread that triggered it, holding the GIL) and the longest pause since the last snapshot.
    ``with Collections() as c:`` or :meth:`start` for the process's lifetime."""

    def __init__(self) -> None:
        self.counts = [0, 0, 0]
        self.cpu_s = [0.0, 0.0, 0.0]
        self.longest = [0.0, 0.0, 0.0]
        self._wall = 0.0
        self._cpu = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._wall = time.perf_counter()
            self._cpu = time.thread_time()
            return
        generation = info["generation"]
        self.counts[generation] += 1
        self.cpu_s[generation] += time.thread_time() - self._cpu
        self.longest[generation] = max(self.longest[generation], time.perf_counter() - self._wall)

    def start(self) -> Collections:
        gc.callbacks.append(self)
        return self

    def stop(self) -> None:
        gc.callbacks.remove(self)

    def __enter__(self) -> Collections:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def snapshot(self) -> dict[str, Any]:
        """The totals so far, and the longest pauses since the previous snapshot (then reset)."""
        taken = {"counts": list(self.counts), "cpu_s": list(self.cpu_s), "longest_s": list(self.longest)}
        self.longest = [0.0, 0.0, 0.0]
        return taken


def difference(before: dict[str, Any], after: dict[str, Any], requests: float) -> dict[str, Any]:
    """The collector's work between two snapshots, per 1 000 requests and per request."""
    requests = max(requests, 1.0)
    counts = [a - b for a, b in zip(after["counts"], before["counts"], strict=True)]
    cpu = [a - b for a, b in zip(after["cpu_s"], before["cpu_s"], strict=True)]
    return {
        "counts": counts,
        "collections_per_1k": [round(c / requests * 1000, 2) for c in counts],
        "gc_us_per_request": sum(cpu) / requests * 1e6,
        "longest_ms": [round(s * 1e3, 1) for s in after["longest_s"]],
    }
