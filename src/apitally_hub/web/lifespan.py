"""The hub app's lifespan: open the store (running its migrations), start folding (a thread, or a
child process) and alerting, and run the background jobs — pruning what retention no longer
keeps, and keeping ingest admission's view of the folding backlog current — until shutdown."""

from __future__ import annotations

import logging
import math
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import anyio
import anyio.to_thread
from starlette.applications import Starlette

from apitally_hub.alerting.workers import Alerting
from apitally_hub.ingest.fold_process import FoldingProcess
from apitally_hub.ingest.otlp import held
from apitally_hub.ingest.worker import Folder, FoldingWorker
from apitally_hub.storage import create_storage
from apitally_hub.web.context import HubContext

_logger = logging.getLogger(__name__)

PRUNE_LEASE = "prune"


def hub_lifespan(
    context: HubContext, startup: Sequence[Callable[[], Awaitable[None]]] = ()
) -> Callable[[Starlette], AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        storage = create_storage(context.config.db)
        version = await anyio.to_thread.run_sync(storage.open)
        _logger.info("Hub store %s at schema version %d", storage.url, version)
        worker: Folder = FoldingWorker(storage, clock=context.clock)
        if context.config.fold_in_subprocess:
            worker = FoldingProcess(context.config.db)
        context.storage, context.worker = storage, worker
        try:
            for hook in startup:
                await hook()
            await prune_now(context)
            if context.config.fold_in_background:
                await anyio.to_thread.run_sync(worker.start)
            alerting = Alerting(
                storage, lambda: context.queries, context.config.alerting, clock=context.clock
            )
            context.alerting = alerting
            await anyio.to_thread.run_sync(alerting.start)
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(_prune_periodically, context)
                tasks.start_soon(_watch_backlog, context)
                tasks.start_soon(_release_held_spans, context)
                try:
                    yield
                finally:
                    tasks.cancel_scope.cancel()
        finally:
            if context.alerting is not None:
                await anyio.to_thread.run_sync(context.alerting.stop)
                context.alerting = None
            await anyio.to_thread.run_sync(worker.stop)
            context.storage = context.worker = None
            await anyio.to_thread.run_sync(storage.close)

    return lifespan


_HOLDER = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"


async def prune_now(context: HubContext) -> dict[str, int]:
    """Delete what the retention no longer keeps (one hub process at a time); rows deleted per kind."""
    store, now = context.store, context.clock()
    lease_seconds = max(context.config.prune_interval, 60.0) * 2

    def work() -> dict[str, int]:
        if not store.try_lease(PRUNE_LEASE, _HOLDER, seconds=lease_seconds, now=now):
            return {}
        return store.prune(context.config.retention.policy(), now)

    deleted = await context.run(work)
    total = sum(deleted.values())
    if total:
        _logger.info(
            "Pruned %d rows past their retention: %s", total, {k: v for k, v in deleted.items() if v}
        )
    return deleted


BACKLOG_REFRESH = 1.0


async def _watch_backlog(context: HubContext) -> None:
    """Keep the ingest admission's view of the folding backlog current (see :mod:`.limits.backlog`)."""
    while True:
        try:
            pending = await context.run(context.store.pending_by_client)
            context.admission.queue.refresh(pending, context.clock())
        except Exception:  # the store is unavailable: ingest answers 503 by itself; try again
            _logger.debug("Could not read the folding backlog", exc_info=True)
        await anyio.sleep(BACKLOG_REFRESH)


HELD_LEASE = "otlp-held"


async def _release_held_spans(context: HubContext) -> None:
    """Queue the request counts held from OTLP senders' spans once no HTTP metrics came for them
    (:mod:`~apitally_hub.ingest.otlp.held`); one hub process at a time (a lease)."""
    hold = context.config.otlp_span_hold
    interval = min(15.0, hold / 3)
    lease_seconds = max(interval * 4, 60.0)

    def work() -> int:
        store, now = context.store, context.clock()
        if not store.try_lease(HELD_LEASE, _HOLDER, seconds=lease_seconds, now=now):
            return 0
        return held.release_due(store, now, hold)

    while True:
        await anyio.sleep(interval)
        try:
            released = await context.run(work)
        except Exception:  # keep the hub serving; the next round retries
            _logger.exception("Releasing held OTLP span counts failed")
            continue
        if released and context.worker is not None:
            context.worker.notify()


async def _prune_periodically(context: HubContext) -> None:
    interval = context.config.prune_interval
    while True:
        await anyio.sleep(interval if math.isfinite(interval) else 3600.0)
        try:
            await prune_now(context)
        except Exception:  # keep the hub serving; the next round retries
            _logger.exception("Periodic pruning failed")
