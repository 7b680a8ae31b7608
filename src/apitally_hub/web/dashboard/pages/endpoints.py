"""Endpoints: the sortable table (with the app's Apdex threshold, settable here; excluded endpoints
left out unless ``excluded=show``), and one endpoint's page — response-time percentiles over time,
its histogram, status codes, sizes, validation errors, server errors and top consumers — where
admins set its own Apdex threshold and exclude or include it
(:mod:`~apitally_hub.query.endpoint_settings`)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from apitally_hub.query.app_settings import APDEX_MS, InvalidSetting, write_apdex_ms
from apitally_hub.query.cursors import Page
from apitally_hub.query.endpoint_settings import (
    InvalidEndpointSetting,
    settings_by_endpoint,
    write_endpoint_setting,
)
from apitally_hub.query.endpoints import ENDPOINT_SORTS
from apitally_hub.query.service import QueryService
from apitally_hub.storage.records import TrafficFilter
from apitally_hub.web.dashboard.pages.common import chrome, histogram_bars, percentiles_chart, requests_chart
from apitally_hub.web.dashboard.site import Dashboard, app_path, env_switch
from apitally_hub.web.dashboard.views import BadView, View, parse_endpoint

PAGE_SIZE = 100
COLUMNS = (
    ("method", "Method", False),
    ("path", "Path", False),
    ("requests", "Requests", True),
    ("client_errors", "4xx", True),
    ("server_errors", "5xx", True),
    ("error_rate", "Error rate", True),
    ("p50", "p50", True),
    ("p75", "p75", True),
    ("p95", "p95", True),
    ("p99", "p99", True),
    ("apdex", "Apdex", True),
    ("request_bytes", "Bytes in", True),
    ("response_bytes", "Bytes out", True),
)


async def endpoints(dash: Dashboard, request: Request) -> Response:
    view = dash.view(request)
    if (redirect := env_switch(request, view, "endpoints")) is not None:
        return redirect
    assert view.app is not None
    app, window, flt = view.app, view.window, view.filter
    sort = view.param("sort") or "path"
    if sort not in ENDPOINT_SORTS:
        raise BadView(f"sort should be one of {', '.join(ENDPOINT_SORTS)}")
    order = view.param("order")
    if order not in (None, "asc", "desc"):
        raise BadView("order should be asc or desc")
    natural = ENDPOINT_SORTS[sort][1]
    descending = natural if order is None else order == "desc"
    cursor = view.param("cursor")
    show_excluded = view.param("excluded") == "show"

    def data(q: QueryService) -> dict[str, Any]:
        table = q.endpoints(
            app,
            window,
            flt=flt,
            include_idle=True,
            sort=sort,
            descending=descending,
            page=Page(PAGE_SIZE, cursor),
            show_excluded=show_excluded,
        )
        return {
            **chrome(q, view),
            "table": table,
            "settings": q.settings(app),
            "span_counted": q.span_counted_instances(app),
        }

    return await dash.render(
        request,
        "endpoints.html",
        data,
        view=view,
        active="endpoints",
        page_title="Endpoints",
        columns=COLUMNS,
        sort=sort,
        descending=descending,
        show_excluded=show_excluded,
        extra_hidden=["sort", "order", "excluded"],
        saved=request.query_params.get("saved"),
        setting_error=None,
    )


async def save_settings(dash: Dashboard, request: Request) -> Response:
    view = dash.view(request)
    assert view.app is not None
    form = request.state.form
    store, now = dash.context.store, dash.context.clock()
    back = _local_back(form.get("back"), app_path(request, "endpoints", view.app))
    try:
        await dash.context.run(lambda: write_apdex_ms(store, view.app, form.get("apdex_ms", ""), now=now))  # type: ignore[arg-type]
    except InvalidSetting as exc:
        raise BadView(str(exc)) from None
    separator = "&" if "?" in back else "?"
    return RedirectResponse(f"{back}{separator}saved=apdex", status_code=303)


def _local_back(value: str | None, default: str) -> str:
    if not value or not value.startswith("/apps/") or "//" in value or "\\" in value or len(value) > 4096:
        return default
    return value


async def endpoint(dash: Dashboard, request: Request) -> Response:
    view = dash.view(request)
    if (redirect := env_switch(request, view, "endpoint")) is not None:
        return redirect
    return await _render_endpoint(dash, request, _endpoint_view(view))


def _endpoint_view(view: View) -> View:
    assert view.app is not None
    if view.endpoint is None:  # also reachable as ?method=GET&path=/items
        method, path = view.param("method"), view.param("path")
        if method is None or path is None:
            raise BadView("Which endpoint? The page needs endpoint=METHOD /path.")
        view.endpoint = parse_endpoint(f"{method} {path}")
    return view


async def _render_endpoint(
    dash: Dashboard,
    request: Request,
    view: View,
    *,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    assert view.app is not None and view.endpoint is not None
    method, path = view.endpoint
    app, window, flt = view.app, view.window, view.filter
    endpoint_only = TrafficFilter(method=method, path=path)

    def data(q: QueryService) -> dict[str, Any]:
        summary = q.endpoints(app, window, flt=flt, include_idle=True)["endpoints"]
        series = q.timeseries(app, window, flt=flt, bucket_seconds=view.bucket, percentiles=False)
        times = q.percentiles(app, window, flt=flt, bucket_seconds=view.percentile_bucket)
        histogram = q.response_time_histogram(app, window, flt=flt)
        settings = q.settings(app)
        own = settings_by_endpoint(q.storage, app).get((method, path))
        own_apdex = None if own is None else own.apdex_ms
        return {
            **chrome(q, view),
            "summary": summary[0] if summary else None,
            "series": series,
            "charts": {"times": percentiles_chart(times, view), "requests": requests_chart(series, view)},
            "histogram": histogram,
            "bars": histogram_bars(histogram),
            "sizes": q.size_histograms(app, window, flt=endpoint_only),
            "validation": q.validation_errors(app, window, flt=flt, page=Page(50)),
            "server_errors": q.server_errors(app, window, flt=flt, page=Page(20)),
            "consumers": q.consumers(
                app, window, flt=endpoint_only, page=Page(10), history=False, count=False
            ),
            "settings": settings,
            "own": {
                "apdex_ms": own_apdex,
                "excluded": own is not None and own.excluded,
                "threshold": settings[APDEX_MS] if own_apdex is None else own_apdex,
            },
            "values": values or {"apdex_ms": "" if own_apdex is None else str(own_apdex)},
        }

    return await dash.render(
        request,
        "endpoint.html",
        data,
        view=view,
        active="endpoints",
        page_title=f"{method} {path}",
        method=method,
        path=path,
        errors=errors or {},
        saved=request.query_params.get("saved"),
        status_code=status_code,
    )


async def save_endpoint(dash: Dashboard, request: Request) -> Response:
    """The endpoint page's settings form: its Apdex threshold (``action=save``; empty: the app
    env's), or ``action=exclude`` / ``action=include``; errors next to the field (422)."""
    view = _endpoint_view(dash.view(request))
    assert view.app is not None and view.endpoint is not None
    app, (method, path) = view.app, view.endpoint
    form = request.state.form
    action = form.get("action", "save")
    body: dict[str, Any] = {"method": method, "path": path}
    if action in ("exclude", "include"):
        body["excluded"] = action == "exclude"
    else:
        body["apdex_ms"] = form.get("apdex_ms", "")
    store, now = dash.context.store, dash.context.clock()
    try:
        await dash.context.run(lambda: write_endpoint_setting(store, app, body, now=now))
    except InvalidEndpointSetting as exc:
        values = {"apdex_ms": form.get("apdex_ms", "")}
        return await _render_endpoint(
            dash, request, view, values=values, errors=exc.by_field(), status_code=422
        )
    back = app_path(request, "endpoint", app, endpoint=f"{method} {path}", saved=action)
    return RedirectResponse(back, status_code=303)


def routes(dash: Dashboard) -> list[Route]:
    return [
        dash.page("/apps/{client_id}/{env}/endpoints", endpoints, name="endpoints"),
        dash.page("/apps/{client_id}/{env}/endpoint", endpoint, name="endpoint"),
        dash.page("/apps/{client_id}/{env}/endpoint", save_endpoint, name="endpoint_save", methods=("POST",)),
        dash.page("/apps/{client_id}/{env}/settings", save_settings, name="settings", methods=("POST",)),
    ]
