"""Consumers: the paged table (most recently seen first, or by requests), the groups, and one
consumer's page with its endpoints and traffic over time. The table by last sighting reads only
the page's consumers' traffic, so it stays fast over 30 days of 150 000 consumers; the groups'
traffic needs every consumer's and has a page of its own. On a consumer's page, admins set its
name and group (kept over the client's until reset there: :mod:`~apitally_hub.query.consumer_names`)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from apitally_hub.errors import HubError
from apitally_hub.query import consumer_names
from apitally_hub.query.consumer_names import InvalidConsumer
from apitally_hub.query.cursors import Page
from apitally_hub.query.service import QueryService
from apitally_hub.storage.records import TrafficFilter
from apitally_hub.web.dashboard.pages.common import chrome, percentiles_chart, requests_chart
from apitally_hub.web.dashboard.site import Dashboard, app_path, env_switch
from apitally_hub.web.dashboard.views import BadView, View

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
    return await _render_consumer(dash, request, view)


async def _render_consumer(
    dash: Dashboard,
    request: Request,
    view: View,
    *,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    assert view.app is not None
    identifier = _identifier(view)
    app, window = view.app, view.window
    method, path = view.endpoint or (None, None)
    flt = TrafficFilter(method=method, path=path, consumer=identifier)

    def data(q: QueryService) -> dict[str, Any]:
        found = q.consumer(app, identifier, window)
        if found is None:
            raise HubError(404, f"This app env has no consumer {identifier!r}.")
        series = q.timeseries(app, window, flt=flt, bucket_seconds=view.bucket, percentiles=False)
        times = q.percentiles(app, window, flt=flt, bucket_seconds=view.percentile_bucket)
        # the dashboard's own values; the client's show as the fields' placeholders
        shown = values or {"name": found["dashboard_name"] or "", "group": found["dashboard_group"] or ""}
        return {
            **chrome(q, view),
            "consumer": found,
            "values": shown,
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
        errors=errors or {},
        saved=request.query_params.get("saved"),
        status_code=status_code,
    )


def _identifier(view: View) -> str:
    identifier = view.consumer
    if identifier is None or identifier == "-":
        raise BadView("Which consumer? The page needs consumer=<identifier>.")
    return identifier


async def save_consumer(dash: Dashboard, request: Request) -> Response:
    """The consumer page's form: Save (``action=save``: the name and group) or Reset
    (``action=reset``: back to the client's); errors are shown next to their fields (422)."""
    view = dash.view(request)
    assert view.app is not None
    app, identifier = view.app, _identifier(view)
    form = request.state.form
    store, now = dash.context.store, dash.context.clock()
    values = {key: form.get(key, "") for key in consumer_names.FIELDS}
    try:
        if form.get("action") == "reset":
            found = await dash.context.run(
                lambda: consumer_names.reset_consumer(store, app, identifier, now=now)
            )
        else:
            found = await dash.context.run(
                lambda: consumer_names.set_consumer(store, app, identifier, values, now=now)
            )
    except InvalidConsumer as exc:
        return await _render_consumer(
            dash, request, view, values=values, errors=exc.by_field(), status_code=422
        )
    if found is None:
        raise HubError(404, f"This app env has no consumer {identifier!r}.")
    saved = "reset" if form.get("action") == "reset" else "consumer"
    return RedirectResponse(
        app_path(request, "consumer", app, consumer=identifier, saved=saved), status_code=303
    )


def routes(dash: Dashboard) -> list[Route]:
    return [
        dash.page("/apps/{client_id}/{env}/consumers", consumers, name="consumers"),
        dash.page("/apps/{client_id}/{env}/groups", groups, name="groups"),
        dash.page("/apps/{client_id}/{env}/consumer", consumer, name="consumer"),
        dash.page("/apps/{client_id}/{env}/consumer", save_consumer, name="consumer_save", methods=("POST",)),
    ]
