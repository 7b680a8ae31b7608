"""``/apps/{client_id}/{env}/instances``: the env's up/down timeline over the window (from its
heartbeats and health checks: :meth:`QueryService.uptime`, the alerting's definition), its
uptime per day, and its instances with their versions and status. Before the env was first seen
the timeline is grey (unknown)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from apitally_hub.query.cursors import Page
from apitally_hub.query.service import QueryService
from apitally_hub.web.dashboard.pages.common import chrome
from apitally_hub.web.dashboard.site import Dashboard, env_switch


async def instances(dash: Dashboard, request: Request) -> Response:
    view = dash.view(request, default_range="24h")
    if (redirect := env_switch(request, view, "instances")) is not None:
        return redirect
    assert view.app is not None
    app, window = view.app, view.window

    def data(q: QueryService) -> dict[str, Any]:
        uptime = q.uptime(app, window)
        until = min(window.until, q.clock())
        known = uptime["observed_since"] if uptime["observed_since"] is not None else until
        spans: list[dict[str, Any]] = []
        if known > window.since:
            spans.append({"status": "unknown", "start": window.since, "end": known})
        spans += uptime["timeline"]
        extent = max(window.until - window.since, 1.0)
        bars = [
            {
                **span,
                "x": (span["start"] - window.since) / extent,
                "w": (span["end"] - span["start"]) / extent,
            }
            for span in spans
        ]
        return {
            **chrome(q, view),
            "uptime": uptime,
            "bars": bars,
            "instances": q.instances(app, Page(200)),
        }

    return await dash.render(
        request,
        "instances.html",
        data,
        view=view,
        active="instances",
        page_title="Instances & uptime",
        show_filters=False,
    )


def routes(dash: Dashboard) -> list[Route]:
    return [dash.page("/apps/{client_id}/{env}/instances", instances, name="instances")]
