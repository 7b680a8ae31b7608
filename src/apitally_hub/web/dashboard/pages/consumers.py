"""Consumers: the paged table (most recently seen first, or by requests), the groups, and one
consumer's page with its endpoints and traffic over time. The table by last sighting reads only
the page's consumers' traffic, so it stays fast over 30 days of 150 000 consumers; the groups'
traffic needs every consumer's and has a page of its own."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from apitally_hub.errors import HubError
from apitally_hub.query.cursors import Page
from apitally_hub.query.service import QueryService
from apitally_hub.storage.records import TrafficFilter
from apitally_hub.web.dashboard.pages.common import chrome, percentiles_chart, requests_chart
from apitally_hub.web.dashboard.site import Dashboard, env_switch
from apitally_hub.web.dashboard.views import BadView

PAGE_SIZE = 50


async def consumers(dash: Dashboard, request: Request) -> Response:
    view = dash.view(request)
    if (redirect := env_switch(request, view, "consumers")) is not None:
        return redirect
    assert view.app is not None
    app, window, flt = view.app, view.window, view.filter
    cursor = view.param("cursor")
    sort = view.param("sort") or "last_seen"
    if sort not in ("last_seen", "requests"):
        raise BadView("sort should be last_seen or requests")

    def data(q: QueryService) -> dict[str, Any]:
        table = q.consumers(app, window, flt=flt, page=Page(PAGE_SIZE, cursor), history=False, sort=sort)
        return {**chrome(q, view), "table": table, "group_sizes": q.storage.consumer_groups(app)}

    return await dash.render(
        request,
        "consumers.html",
        data,
        view=view,
        active="consumers",
        page_title="Consumers",
        extra_hidden=["sort"],
    )


async def groups(dash: Dashboard, request: Request) -> Response:
    view = dash.view(request)
    if (redirect := env_switch(request, view, "groups")) is not None:
        return redirect
    assert view.app is not None
    app, window = view.app, view.window

    def data(q: QueryService) -> dict[str, Any]:
        return {**chrome(q, view), "groups": q.consumer_groups(app, window)}

    return await dash.render(
        request, "groups.html", data, view=view, active="consumers", page_title="Consumer groups"
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
        series = q.timeseries(app, window, flt=flt, bucket_seconds=view.bucket, percentiles=False)
        times = q.percentiles(app, window, flt=flt, bucket_seconds=view.percentile_bucket)
        return {
            **chrome(q, view),
            "consumer": found,
            "endpoints": q.endpoints(app, window, flt=flt, sort="requests", page=Page(100)),
            "series": series,
            "charts": {"requests": requests_chart(series, view), "times": percentiles_chart(times, view)},
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
        dash.page("/apps/{client_id}/{env}/groups", groups, name="groups"),
        dash.page("/apps/{client_id}/{env}/consumer", consumer, name="consumer"),
    ]
