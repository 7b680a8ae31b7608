"""``/``: every app/env with its instances online, requests, error rate and p95 over 24 h, its
last sync and whether it is up."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from apitally_hub.query.cursors import Page
from apitally_hub.query.service import QueryService
from apitally_hub.query.timewindow import Window
from apitally_hub.storage.records import DAY
from apitally_hub.web.dashboard.site import Dashboard

PAGE_SIZE = 50


async def apps(dash: Dashboard, request: Request) -> Response:
    view = dash.view(request)
    now = dash.context.clock()
    window = Window(now - DAY, now)
    cursor = view.param("cursor")

    def data(q: QueryService) -> dict[str, Any]:
        return {"apps": q.apps(Page(PAGE_SIZE, cursor), window=window), "window": window}

    return await dash.render(request, "apps.html", data, view=view)


def routes(dash: Dashboard) -> list[Route]:
    return [dash.page("/", apps, name="apps")]
