"""Folding in a process of its own, next to the hub's event loop rather than inside it.

Folding is CPU-bound Python (decode a message, fold thousands of items, build rows). In the hub's
process it would compete with the event loop for the GIL: with a few clients posting 8 MB syncs,
a normal client's tiny sync waited seconds. A child process gets its own interpreter; the OS
shares the cores between it and the event loop fairly. It opens its own connection to the store
and runs the same :class:`~.worker.FoldingWorker` — to the store it is one more worker, claiming
with leases like the workers of other hub processes.

Ingest wakes it through a process-shared event; it also polls. It stops when told, and on its
own when the hub's process is gone (it checks its parent every poll), so a killed hub leaves no
folding process behind.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.synchronize
import os
from pathlib import Path

from apitally_hub.ingest.worker import DEFAULT_POLL_SECONDS, FoldingWorker, run_until

_logger = logging.getLogger(__name__)

START_TIMEOUT = 30.0


class FoldingProcess:
    """``start()`` / ``notify()`` / ``stop()``, as :class:`~.worker.FoldingWorker`'s thread."""

    def __init__(self, db: str | Path, *, poll_seconds: float = DEFAULT_POLL_SECONDS) -> None:
        self.db = str(db)
        self.poll_seconds = poll_seconds
        # spawn, not fork: the hub's process has threads (and an event loop) a fork would copy
        self._context = multiprocessing.get_context("spawn")
        self._wake = self._context.Event()
        self._stop = self._context.Event()
        self._process: multiprocessing.process.BaseProcess | None = None

    def start(self) -> None:
        if self._process is not None:
            return
        self._stop.clear()
        level = logging.getLogger("apitally_hub").getEffectiveLevel()
        self._process = self._context.Process(
            target=_main,
            args=(self.db, self._wake, self._stop, os.getpid(), self.poll_seconds, level),
            name="apitally-hub-folding",
            daemon=True,
        )
        self._process.start()

    def notify(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop after the apply in progress; safe to call twice."""
        process, self._process = self._process, None
        if process is None:
            return
        self._stop.set()
        self._wake.set()
        process.join(timeout)
        if process.is_alive():
            _logger.warning("The folding process did not stop within %.1f s; terminating it", timeout)
            process.terminate()
            process.join(5)

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.is_alive()


def _main(
    db: str,
    wake: multiprocessing.synchronize.Event,
    stop: multiprocessing.synchronize.Event,
    parent_pid: int,
    poll_seconds: float,
    log_level: int,
) -> None:
    from apitally_hub.storage import create_storage  # in the child only

    logging.basicConfig(level=log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    storage = create_storage(db)
    storage.open()
    worker = FoldingWorker(storage, poll_seconds=poll_seconds)

    def stopped() -> bool:
        return stop.is_set() or os.getppid() != parent_pid  # told to, or the hub is gone

    worker.stopping = stopped
    try:
        run_until(worker, stopped, wake)
    finally:
        storage.close()
