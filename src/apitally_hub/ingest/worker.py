"""The folding worker: claims queued messages, folds them (off any transaction) and applies the
result in bounded chunks, on a thread of its own.

Each apply adds at most ``chunk_items`` items, so the store's write lock is never held long
whatever a client sends (a big sync is applied in several chunks, its ``fold_offset`` advancing
in the same transaction as the rows it covers). Several workers — threads or hub processes —
may run against one store: claims carry a lease, and an apply that finds its claim taken over
raises :class:`~apitally_hub.storage.records.ClaimLost` and writes nothing.

Ingest calls :meth:`FoldingWorker.notify` after each commit, so new data is folded at once
rather than at the next poll.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from apitally_hub.ingest import folding
from apitally_hub.storage.base import Storage
from apitally_hub.storage.records import AppDelta, AppKey, ClaimedMessage, ClaimLost, FoldProgress

_logger = logging.getLogger(__name__)

DEFAULT_LEASE_SECONDS = 60.0
DEFAULT_POLL_SECONDS = 1.0


@dataclass
class _Work:
    claimed: ClaimedMessage
    total: int
    sync: dict[str, object] | None = None
    lines: list[str] | None = None
    error: str | None = None


def _prepare(claimed: ClaimedMessage) -> _Work:
    message = claimed.message
    try:
        data = folding.decode_body(message)
        if message.kind == "log":
            lines = folding.log_lines(data)
            return _Work(claimed, len(lines), lines=lines)
        body = json.loads(data)
        total = folding.item_count(body) if message.kind == "sync" else 1
        return _Work(claimed, total, sync=body)
    except Exception as exc:  # validated at ingest: a failure here is a bug; never block the queue on it
        _logger.exception("Cannot fold %s message %s; skipping it", message.kind, message.message_uuid)
        return _Work(claimed, 0, error=f"{type(exc).__name__}: {exc}"[:500])


def _fold(delta: AppDelta, work: _Work, start: int, stop: int) -> None:
    message = work.claimed.message
    if message.kind == "log":
        assert work.lines is not None
        folding.fold_log(delta, message.message_uuid, work.lines, start, stop)
    elif message.kind == "sync":
        assert work.sync is not None
        folding.fold_sync(delta, message, work.sync, start, stop)
    else:
        assert work.sync is not None
        folding.fold_startup(delta, message, work.sync)


class FoldingWorker:
    def __init__(
        self,
        storage: Storage,
        *,
        chunk_items: int | None = None,
        claim_limit: int | None = None,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        poll_seconds: float = DEFAULT_POLL_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.storage = storage
        # the store's own sizes by default (small batches where a write locks the whole store)
        self.chunk_items = chunk_items or storage.fold_chunk_items
        self.claim_limit = claim_limit or storage.fold_claim_limit
        self.lease_seconds = lease_seconds
        self.poll_seconds = poll_seconds
        self.clock = clock
        self.name = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.stopping: Callable[[], bool] = self._stop.is_set
        """Checked between applies: a stop does not wait for a whole claimed batch (what is left of
        it is claimed again once its lease expires, by this or another worker)."""

    # -- one round (also used directly by tests and benchmarks) -------------------------------

    def fold_pending(self) -> int:
        """Claim and fold what is pending now; returns the number of messages finished."""
        claimed = self.storage.claim(
            self.name, limit=self.claim_limit, lease_seconds=self.lease_seconds, now=self.clock()
        )
        if not claimed:
            return 0
        finished = 0
        deltas: dict[AppKey, AppDelta] = {}
        progress: list[FoldProgress] = []
        room = self.chunk_items
        try:
            for work in map(_prepare, claimed):
                message = work.claimed.message
                offset = work.claimed.fold_offset
                while True:
                    stop = min(work.total, offset + max(room, 1))
                    if work.error is None:
                        _fold(deltas.setdefault(message.app, AppDelta()), work, offset, stop)
                    done = stop >= work.total
                    progress.append(
                        FoldProgress(
                            message.app,
                            message.kind,
                            message.message_uuid,
                            offset,
                            stop,
                            done,
                            work.error,
                        )
                    )
                    room -= max(stop - offset, 1)
                    offset = stop
                    if room <= 0:
                        self._apply(deltas, progress)
                        finished += sum(p.done for p in progress)
                        deltas, progress, room = {}, [], self.chunk_items
                        if self.stopping():
                            return finished
                    if done:
                        break
            if progress:
                self._apply(deltas, progress)
                finished += sum(p.done for p in progress)
        except ClaimLost:
            _logger.info("A folding claim expired and was taken over; another worker folds the rest")
        return finished

    def _apply(self, deltas: dict[AppKey, AppDelta], progress: list[FoldProgress]) -> None:
        self.storage.apply(self.name, deltas, progress)
        pause = self.storage.fold_pause_seconds
        if pause:  # let writers of other processes in (SQLite has one write lock per file)
            time.sleep(pause)

    def drain(self, timeout: float = 10.0) -> None:
        """Fold until nothing is pending (tests, the demo, shutdown)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.fold_pending() == 0 and self.storage.queue_stats().pending == 0:
                return
        raise TimeoutError("the queue did not drain in time")

    # -- the thread ---------------------------------------------------------------------------

    def notify(self) -> None:
        self._wake.set()

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="hub-folding", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the thread (after the round in progress); safe to call twice."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                _logger.warning("The folding worker did not stop within %.1f s", timeout)
            self._thread = None

    def _run(self) -> None:
        run_until(self, self._stop.is_set, self._wake)

    def __repr__(self) -> str:
        return f"FoldingWorker({self.storage.url!r}, name={self.name!r})"


class Folder(Protocol):
    """What runs folding for a hub: a :class:`FoldingWorker`'s thread, or a
    :class:`~.fold_process.FoldingProcess`."""

    def start(self) -> None: ...

    def notify(self) -> None: ...

    def stop(self, timeout: float = 10.0) -> None: ...


class _Event(Protocol):
    def wait(self, timeout: float | None = None) -> bool: ...

    def clear(self) -> None: ...


def run_until(worker: FoldingWorker, stopped: Callable[[], bool], wake: _Event) -> None:
    """Fold until ``stopped()``, waking on ``wake`` or every poll period (a thread's or a process's
    loop alike)."""
    failures = 0
    while not stopped():
        wake.clear()
        try:
            busy = worker.fold_pending() > 0
            failures = 0
        except Exception:  # a database error: keep the hub serving, retry with backoff
            failures += 1
            busy = False
            if failures <= 3 or failures % 60 == 0:
                _logger.exception("Folding failed (%d in a row); retrying", failures)
        if not busy:
            wake.wait(min(worker.poll_seconds * 2 ** min(failures, 5), 30.0))
