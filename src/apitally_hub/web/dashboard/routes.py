"""Every route of the dashboard: each page family's (one module of :mod:`.pages` each), then the
static files (styles, scripts, the vendored chart library)."""

from __future__ import annotations

from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles

from apitally_hub.web.dashboard.pages import (
    alert_forms,
    alerts,
    app_setup,
    apps,
    consumers,
    endpoints,
    errors,
    instances,
    login,
    requests,
    traffic,
)
from apitally_hub.web.dashboard.site import Dashboard

PAGE_FAMILIES = (
    apps,
    app_setup,
    traffic,
    endpoints,
    errors,
    consumers,
    requests,
    instances,
    alerts,
    alert_forms,
    login,
)


def dashboard_routes(dashboard: Dashboard) -> list[BaseRoute]:
    routes: list[BaseRoute] = []
    for family in PAGE_FAMILIES:
        routes += family.routes(dashboard)
    static = StaticFiles(packages=[("apitally_hub.web.dashboard", "static")])
    routes.append(Mount("/static", static, name="static"))
    return routes
