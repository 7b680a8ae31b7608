"""The hub's Starlette application: ingest routes, query API, lifespan (database + retention),
behind the Host check and the read gate (:mod:`apitally_hub.security`)."""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator, Callable, Iterable
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

from apitally_hub.context import HubContext
from apitally_hub.errors import HubError, http_exception_handler, hub_error_handler
from apitally_hub.ingest.faults import FaultPlan
from apitally_hub.ingest.routes import IngestEndpoints
from apitally_hub.query.api import QueryEndpoints
from apitally_hub.security.access import AccessMiddleware, Authenticator
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
    DEFAULT_PRUNE_INTERVAL,
    DEFAULT_RETENTION_DAYS,
    HubSettings,
    parse_allow_list,
)
from apitally_hub.storage.sqlite.database import Database
from apitally_hub.storage.sqlite.retention import prune

_logger = logging.getLogger(__name__)


def create_app(
    db_path: str | Path,
    *,
    client_ids: Iterable[str] | None = None,
    tokens: Iterable[str] = (),
    allowed_hosts: Iterable[str] = (),
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    max_log_bytes: int = DEFAULT_MAX_LOG_BYTES,
    max_log_decompressed_bytes: int = DEFAULT_MAX_LOG_DECOMPRESSED_BYTES,
    retention_days: float = DEFAULT_RETENTION_DAYS,
    prune_interval: float = DEFAULT_PRUNE_INTERVAL,
    allow_extra_fields: bool = False,
    max_inflight_body_bytes: int = DEFAULT_MAX_INFLIGHT_BODY_BYTES,
    ingest_rate: float = DEFAULT_INGEST_RATE,
    ingest_burst: float = DEFAULT_INGEST_BURST,
    body_timeout: float = DEFAULT_BODY_TIMEOUT,
    faults: FaultPlan | None = None,
    clock: Callable[[], float] | None = None,
) -> Starlette:
    """Build the hub app; the database is opened (and migrated, and pruned) by its lifespan.

    ``client_ids``: allow-list of client ids (None accepts any UUID). ``tokens``: read tokens
    (none: reads are open, for a loopback bind). ``allowed_hosts``: ``Host`` names served besides
    the loopback ones (the bind address, ``--allowed-host``; see :mod:`.security.hosts`).
    ``max_inflight_body_bytes``, ``ingest_rate`` (0: off), ``ingest_burst``, ``body_timeout``:
    the ingest bounds (:mod:`.limits`).
    ``faults``: a plan whose entries make ingest calls fail on purpose (client tests).
    ``clock``: epoch-seconds source.
    """
    settings = HubSettings(
        db_path=Path(db_path),
        client_ids=parse_allow_list(client_ids),
        max_body_bytes=max_body_bytes,
        max_log_bytes=max_log_bytes,
        max_log_decompressed_bytes=max_log_decompressed_bytes,
        retention_days=retention_days,
        prune_interval=prune_interval,
        allow_extra_fields=allow_extra_fields,
        max_inflight_body_bytes=max_inflight_body_bytes,
        ingest_rate=ingest_rate,
        ingest_burst=ingest_burst,
        body_timeout=body_timeout,
    )
    context = HubContext(settings=settings, faults=faults or FaultPlan())
    if clock is not None:
        context.clock = clock

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok" if context.db is not None else "starting"})

    routes = [
        Route("/health", health, methods=["GET"]),
        *IngestEndpoints(context).routes(),
        *QueryEndpoints(context).routes(),
    ]
    app = Starlette(
        routes=routes,
        middleware=[
            Middleware(HostCheckMiddleware, policy=HostPolicy(allowed_hosts)),
            Middleware(AccessMiddleware, authenticator=Authenticator(TokenSet(tokens))),
        ],
        lifespan=_lifespan(context),
        exception_handlers={HubError: hub_error_handler, HTTPException: http_exception_handler},
    )
    app.state.hub = context
    return app


def _lifespan(context: HubContext) -> Callable[[Starlette], AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        db = Database(context.settings.db_path)
        version = await anyio.to_thread.run_sync(db.open)
        _logger.info("Hub database %s at schema version %d", db.path, version)
        context.db = db
        try:
            await prune_now(context)
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(_prune_periodically, context)
                try:
                    yield
                finally:
                    tasks.cancel_scope.cancel()
        finally:
            context.db = None
            await anyio.to_thread.run_sync(db.close)

    return lifespan


async def prune_now(context: HubContext) -> dict[str, int]:
    """Delete data older than the retention window; returns rows deleted per table."""
    cutoff = context.clock() - context.settings.retention_seconds
    deleted = await context.database.awrite(lambda conn: prune(conn, cutoff))
    total = sum(deleted.values())
    if total:
        _logger.info("Pruned %d rows older than %.1f days", total, context.settings.retention_days)
    return deleted


async def _prune_periodically(context: HubContext) -> None:
    interval = context.settings.prune_interval
    while True:
        await anyio.sleep(interval if math.isfinite(interval) else 3600.0)
        try:
            await prune_now(context)
        except Exception:  # keep the hub serving; the next round retries
            _logger.exception("Periodic pruning failed")
