"""The hub's Starlette application: every route the hub serves — ``/health``, ingest
(:mod:`.ingest`), the JSON query API (:mod:`.query_api`), the apps registry's API
(:mod:`.apps_api`), the alerting API (:mod:`.alerts_api`)
and the dashboard (:mod:`.dashboard`) — behind the Host check and the read gate
(:mod:`apitally_hub.security`), with the lifespan of :mod:`.lifespan` (store, folding, jobs)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from apitally_hub.config import HubConfig
from apitally_hub.errors import HubError
from apitally_hub.ingest.faults import FaultPlan
from apitally_hub.security.access import PUBLIC_PATHS, PUBLIC_PREFIXES, AccessMiddleware, Authenticator
from apitally_hub.security.hosts import HostCheckMiddleware, HostPolicy
from apitally_hub.security.tokens import TokenSet
from apitally_hub.storage.records import StoreUnavailable
from apitally_hub.web.alerts_api import AlertEndpoints
from apitally_hub.web.apps_api import AppEndpoints
from apitally_hub.web.consumers_api import ConsumerEndpoints
from apitally_hub.web.context import HubContext
from apitally_hub.web.dashboard.routes import dashboard_routes
from apitally_hub.web.dashboard.site import Dashboard
from apitally_hub.web.endpoint_settings_api import EndpointSettingEndpoints
from apitally_hub.web.errors import http_exception_handler, hub_error_handler, store_unavailable_handler
from apitally_hub.web.ingest import IngestEndpoints
from apitally_hub.web.lifespan import hub_lifespan
from apitally_hub.web.otlp import OtlpEndpoints
from apitally_hub.web.query_api import QueryEndpoints

_logger = logging.getLogger(__name__)


def create_app(
    config: HubConfig, *, faults: FaultPlan | None = None, clock: Callable[[], float] | None = None
) -> Starlette:
    """Build the hub app from its configuration; the store is opened (migrated, pruned) by its
    lifespan. ``faults``: a plan whose entries make ingest calls fail on purpose (client tests).
    ``clock``: epoch-seconds source (tests)."""
    context = HubContext(
        config=config,
        faults=faults or FaultPlan(),
        tokens=TokenSet(config.tokens, viewers=config.viewer_tokens),
    )
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
        *OtlpEndpoints(context).routes(),
        # writes on paths the query API reads too (…/consumers/{identifier:path}): by method
        *ConsumerEndpoints(context).routes(),
        *EndpointSettingEndpoints(context).routes(),
        *QueryEndpoints(context).routes(),
        *AppEndpoints(context).routes(),
        *AlertEndpoints(context).routes(),
        *dashboard_routes(dashboard),
    ]
    app = Starlette(
        routes=routes,
        middleware=[
            Middleware(HostCheckMiddleware, policy=HostPolicy(config.allowed_hosts)),
            Middleware(AccessMiddleware, authenticator=authenticator),
        ],
        lifespan=hub_lifespan(context, startup=[dashboard.start]),
        exception_handlers={
            HubError: hub_error_handler,
            HTTPException: http_exception_handler,
            StoreUnavailable: store_unavailable_handler,
        },
    )
    app.state.hub = context
    return app
