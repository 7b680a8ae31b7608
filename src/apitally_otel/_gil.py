"""Keeping large background work from stalling the event loop.

The reader's thread converts a whole interval at once. Pure Python code gives up the GIL every few
milliseconds, but three things do not: a full garbage collection (triggered by the churn of a large
conversion; it walks the whole heap, the app's included), one ``json.dumps`` of a multi-megabyte
payload, and freeing a large structure in one decref cascade. Measured with 10 000 series: 150 ms,
80 ms and ~30 ms stalls of the event loop. Hence: no automatic garbage collection during the
conversion (its temporary objects are freed by reference counting, so nothing is put off), JSON
encoded in chunks, and large lists released in slices, each step yielding the GIL.
"""

from __future__ import annotations

import gc
import json
import time
from collections.abc import Iterator, MutableSequence
from contextlib import contextmanager
from typing import Any

CHUNK = 250


@contextmanager
def gc_paused() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def yield_gil() -> None:
    time.sleep(0)  # lets the event loop's thread run between two slices of work


def dumps_chunked(payload: dict[str, Any]) -> bytes:
    """``json.dumps(payload)`` (compact, UTF-8) with long lists encoded a chunk at a time."""
    parts: list[str] = []
    for key, value in payload.items():
        name = json.dumps(key, ensure_ascii=False)
        if isinstance(value, list) and len(value) > CHUNK:
            chunks = []
            for start in range(0, len(value), CHUNK):
                chunks.append(_dumps(value[start : start + CHUNK])[1:-1])
                yield_gil()
            parts.append(f"{name}:[{','.join(chunks)}]")
        else:
            parts.append(f"{name}:{_dumps(value)}")
    return ("{" + ",".join(parts) + "}").encode("utf-8")


def release(items: MutableSequence[Any]) -> None:
    """Empty a large list a slice at a time, so freeing it never holds the GIL for long."""
    while items:
        del items[-CHUNK:]
        yield_gil()


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
