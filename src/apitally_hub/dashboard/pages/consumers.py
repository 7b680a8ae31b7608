"""Consumers: the paged table (by requests in the window) and the groups; one consumer's page
with its endpoints and traffic over time."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from apitally_hub.dashboard.pages.common import chrome, percentiles_chart, requests_chart
from apitally_hub.dashboard.site import Dashboard, env_switch
from apitally_hub.dashboard.views import BadView
from apitally_hub.errors import HubError
from apitally_hub.query.service import Page, QueryService
from apitally_hub.storage.base import TrafficFilter

PAGE_SIZE = 50


async def consumers(dash: Dashboard, request: Request) -> Response:
    view = dash.view(request)
    if (redirect := env_switch(request, view, "consumers")) is not None:
        return redirect
    assert view.app is not None
    app, window, flt = view.app, view.window, view.filter
    cursor = view.param("cursor")

    def data(q: QueryService) -> dict[str, Any]:
        return {
            **chrome(q, view),
            "table": q.consumers(app, window, flt=flt, page=Page(PAGE_SIZE, cursor), history=False),
            "groups": q.consumer_groups(app, window),
        }

    return await dash.render(
        request, "consumers.html", data, view=view, active="consumers", page_title="Consumers"
    )


async def consumer(dash: Dashboard, request: Request) -> Response:
    view = dash.view(request)
    if (redirect := env_switch(request, view, "consumer")) is not None:
        return redirect
    assert view.app is not None
    identifier = view.consumer
    if identifier is None or identifier == "-":
        raise BadView("Which consumer? The page needs consumer=<identifier>.")
    app, window = view.app, view.window
    method, path = view.endpoint or (None, None)
    flt = TrafficFilter(method=method, path=path, consumer=identifier)

    def data(q: QueryService) -> dict[str, Any]:
        found = q.consumer(app, identifier, window)
        if found is None:
            raise HubError(404, f"This app env has no consumer {identifier!r}.")
        series = q.timeseries(app, window, flt=flt, bucket_seconds=view.bucket)
        return {
            **chrome(q, view),
            "consumer": found,
            "endpoints": q.endpoints(app, window, flt=flt, sort="requests", page=Page(100)),
            "series": series,
            "charts": {"requests": requests_chart(series, view), "times": percentiles_chart(series, view)},
        }

    return await dash.render(
        request,
        "consumer.html",
        data,
        view=view,
        active="consumers",
        page_title=f"Consumer {identifier}",
        identifier=identifier,
    )


def routes(dash: Dashboard) -> list[Route]:
    return [
        dash.page("/apps/{client_id}/{env}/consumers", consumers, name="consumers"),
        dash.page("/apps/{client_id}/{env}/consumer", consumer, name="consumer"),
    ]
