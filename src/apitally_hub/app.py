"""The hub's Starlette application: ingest routes, query API, the dashboard, and a lifespan that
opens the store (running its migrations), starts the folding worker and runs the background jobs
— behind the Host check and the read gate (:mod:`apitally_hub.security`)."""

from __future__ import annotations

import logging
import math
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import anyio
import anyio.to_thread
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from apitally_hub.alerting.api import AlertEndpoints
from apitally_hub.alerting.service import Alerting
from apitally_hub.alerting.settings import AlertSettings
from apitally_hub.context import HubContext
from apitally_hub.dashboard.site import Dashboard
from apitally_hub.errors import HubError, http_exception_handler, hub_error_handler, store_unavailable_handler
from apitally_hub.ingest.faults import FaultPlan
from apitally_hub.ingest.fold_process import FoldingProcess
from apitally_hub.ingest.routes import IngestEndpoints
from apitally_hub.ingest.worker import Folder, FoldingWorker
from apitally_hub.query.api import QueryEndpoints
from apitally_hub.security.access import PUBLIC_PATHS, PUBLIC_PREFIXES, AccessMiddleware, Authenticator
from apitally_hub.security.hosts import HostCheckMiddleware, HostPolicy
from apitally_hub.security.tokens import TokenSet
from apitally_hub.settings import (
    DEFAULT_BODY_TIMEOUT,
    DEFAULT_INGEST_BURST,
    DEFAULT_INGEST_RATE,
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_INFLIGHT_BODY_BYTES,
    DEFAULT_MAX_LOG_BYTES,
    DEFAULT_MAX_LOG_DECOMPRESSED_BYTES,
    DEFAULT_MAX_QUEUE_LAG,
    DEFAULT_PRUNE_INTERVAL,
    HubSettings,
    Retention,
    parse_allow_list,
)
from apitally_hub.storage import create_storage
from apitally_hub.storage.base import StoreUnavailable

_logger = logging.getLogger(__name__)

PRUNE_LEASE = "prune"


def create_app(
    db: str | Path,
    *,
    client_ids: Iterable[str] | None = None,
    tokens: Iterable[str] = (),
    allowed_hosts: Iterable[str] = (),
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    max_log_bytes: int = DEFAULT_MAX_LOG_BYTES,
    max_log_decompressed_bytes: int = DEFAULT_MAX_LOG_DECOMPRESSED_BYTES,
    retention: Retention | None = None,
    retention_days: float | None = None,
    prune_interval: float = DEFAULT_PRUNE_INTERVAL,
    allow_extra_fields: bool = False,
    fold_in_background: bool = True,
    fold_in_subprocess: bool = False,
    max_inflight_body_bytes: int = DEFAULT_MAX_INFLIGHT_BODY_BYTES,
    ingest_rate: float = DEFAULT_INGEST_RATE,
    ingest_burst: float = DEFAULT_INGEST_BURST,
    body_timeout: float = DEFAULT_BODY_TIMEOUT,
    max_queue_lag: float = DEFAULT_MAX_QUEUE_LAG,
    faults: FaultPlan | None = None,
    clock: Callable[[], float] | None = None,
    alerting: AlertSettings | None = None,
) -> Starlette:
    """Build the hub app; the store is opened (migrated, pruned) by its lifespan.

    ``db``: a SQLite file or a ``postgresql://`` URL. ``client_ids``: allow-list of client ids
    (None accepts any UUID). ``retention_days``: shorthand for ``Retention(minutes=...)``.
    ``tokens``: read tokens (none: reads are open, for a loopback bind). ``allowed_hosts``:
    ``Host`` names served besides the loopback ones (the bind address, ``--allowed-host``; see
    :mod:`.security.hosts`). ``max_inflight_body_bytes``, ``ingest_rate`` (0: off),
    ``ingest_burst``, ``body_timeout``: the ingest bounds (:mod:`.limits`).
    ``faults``: a plan whose entries make ingest calls fail on purpose (client tests).
    ``clock``: epoch-seconds source. ``alerting``: evaluation interval, rules file, and the
    periods tests shorten (:class:`~apitally_hub.alerting.settings.AlertSettings`).
    """
    if retention is None:
        retention = Retention() if retention_days is None else Retention(minutes=retention_days)
    settings = HubSettings(
        db=db if isinstance(db, str) and "://" in db else Path(db),
        client_ids=parse_allow_list(client_ids),
        max_body_bytes=max_body_bytes,
        max_log_bytes=max_log_bytes,
        max_log_decompressed_bytes=max_log_decompressed_bytes,
        retention=retention,
        prune_interval=prune_interval,
        allow_extra_fields=allow_extra_fields,
        fold_in_background=fold_in_background,
        fold_in_subprocess=fold_in_subprocess,
        alerting=alerting or AlertSettings(),
        max_inflight_body_bytes=max_inflight_body_bytes,
        ingest_rate=ingest_rate,
        ingest_burst=ingest_burst,
        body_timeout=body_timeout,
        max_queue_lag=max_queue_lag,
    )
    context = HubContext(settings=settings, faults=faults or FaultPlan(), tokens=TokenSet(tokens))
    if clock is not None:
        context.clock = clock
    dashboard = Dashboard(context)
    authenticator = Authenticator(
        context.tokens,
        public_paths=PUBLIC_PATHS | dashboard.public_paths,
        public_prefixes=PUBLIC_PREFIXES + dashboard.public_prefixes,
        credential_checks=[dashboard.authenticates],
        login_path=dashboard.login_path,
    )

    async def health(request: Request) -> Response:
        """Up, and how far folding lags behind ingest (pending messages, age of the oldest)."""
        storage = context.storage
        if storage is None:
            return JSONResponse({"status": "starting"}, status_code=503)
        try:
            stats = await context.run(storage.queue_stats)
        except Exception:  # the store is unreachable: say so (load balancers take the hub out)
            _logger.exception("Health check: the store does not answer")
            return JSONResponse({"status": "store unavailable"}, status_code=503)
        oldest = stats.oldest_received_at
        lag = round(max(0.0, context.clock() - oldest), 3) if oldest is not None else 0.0
        return JSONResponse({"status": "ok", "queue": {"pending": stats.pending, "lag_seconds": lag}})

    routes = [
        Route("/health", health, methods=["GET"]),
        *IngestEndpoints(context).routes(),
        *QueryEndpoints(context).routes(),
        *AlertEndpoints(context).routes(),
        *dashboard.routes(),
    ]
    app = Starlette(
        routes=routes,
        middleware=[
            Middleware(HostCheckMiddleware, policy=HostPolicy(allowed_hosts)),
            Middleware(AccessMiddleware, authenticator=authenticator),
        ],
        lifespan=_lifespan(context, startup=[dashboard.start]),
        exception_handlers={
            HubError: hub_error_handler,
            HTTPException: http_exception_handler,
            StoreUnavailable: store_unavailable_handler,
        },
    )
    app.state.hub = context
    return app


def _lifespan(
    context: HubContext, startup: Sequence[Callable[[], Awaitable[None]]] = ()
) -> Callable[[Starlette], AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        storage = create_storage(context.settings.db)
        version = await anyio.to_thread.run_sync(storage.open)
        _logger.info("Hub store %s at schema version %d", storage.url, version)
        worker: Folder = FoldingWorker(storage, clock=context.clock)
        if context.settings.fold_in_subprocess:
            worker = FoldingProcess(context.settings.db)
        context.storage, context.worker = storage, worker
        try:
            for hook in startup:
                await hook()
            await prune_now(context)
            if context.settings.fold_in_background:
                await anyio.to_thread.run_sync(worker.start)
            alerting = Alerting(
                storage, lambda: context.queries, context.settings.alerting, clock=context.clock
            )
            context.alerting = alerting
            await anyio.to_thread.run_sync(alerting.start)
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(_prune_periodically, context)
                tasks.start_soon(_watch_backlog, context)
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
    lease_seconds = max(context.settings.prune_interval, 60.0) * 2

    def work() -> dict[str, int]:
        if not store.try_lease(PRUNE_LEASE, _HOLDER, seconds=lease_seconds, now=now):
            return {}
        return store.prune(context.settings.retention.policy(), now)

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


async def _prune_periodically(context: HubContext) -> None:
    interval = context.settings.prune_interval
    while True:
        await anyio.sleep(interval if math.isfinite(interval) else 3600.0)
        try:
            await prune_now(context)
        except Exception:  # keep the hub serving; the next round retries
            _logger.exception("Periodic pruning failed")
