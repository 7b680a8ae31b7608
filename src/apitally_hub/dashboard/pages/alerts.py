"""``/apps/{client_id}/{env}/alerts``: the place of alerting in the navigation. Until the
alerting pages exist, it says that alerting is not configured (the alerting package replaces
this module's routes with its own)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from apitally_hub.dashboard.site import Dashboard


async def alerts(dash: Dashboard, request: Request) -> Response:
    view = dash.view(request)
    return await dash.render(
        request, "alerts.html", view=view, active="alerts", page_title="Alerts", show_controls=False
    )


def routes(dash: Dashboard) -> list[Route]:
    return [dash.page("/apps/{client_id}/{env}/alerts", alerts, name="alerts")]
