"""``/apps/{client_id}/{env}/alerts``: the app env's active alerts, rules, silences and recent
history, and its uptime status (the data: :mod:`apitally_hub.alerting.pages`)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from apitally_hub.alerting.pages import alert_page_data
from apitally_hub.dashboard.pages.common import chrome
from apitally_hub.dashboard.site import Dashboard, env_switch
from apitally_hub.query.service import QueryService


async def alerts(dash: Dashboard, request: Request) -> Response:
    view = dash.view(request)
    if (redirect := env_switch(request, view, "alerts")) is not None:
        return redirect
    assert view.app is not None
    app, context = view.app, dash.context

    def data(q: QueryService) -> dict[str, Any]:
        return {**chrome(q, view), **alert_page_data(context, app)}

    return await dash.render(
        request, "alerts.html", data, view=view, active="alerts", page_title="Alerts", show_controls=False
    )


def routes(dash: Dashboard) -> list[Route]:
    return [dash.page("/apps/{client_id}/{env}/alerts", alerts, name="alerts")]
