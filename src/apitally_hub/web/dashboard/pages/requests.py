"""The request log: newest first, filtered and paged with the query layer's cursor; one
request's page with its headers, bodies, exception, log records and the waterfall of its
trace's spans."""

from __future__ import annotations

import re
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from apitally_hub.errors import HubError
from apitally_hub.query.params import attribute_param
from apitally_hub.query.service import QueryService
from apitally_hub.storage.records import LOG_BODY_SCAN, LogQuery
from apitally_hub.web.dashboard.pages.common import chrome
from apitally_hub.web.dashboard.pages.request_item import present_item
from apitally_hub.web.dashboard.site import Dashboard, env_switch
from apitally_hub.web.dashboard.views import BadView
from apitally_hub.web.query_api import BODY_FILTERS, SIZE_FILTERS, log_filters

PAGE_SIZE = 50
_STATUS_RE = re.compile(r"[1-5](?:xx|\d\d)")
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
LOG_FILTERS = (
    "method",
    "status",
    "q",
    "client_ip",
    "attribute",
    "min_ms",
    "max_ms",
    *SIZE_FILTERS,
    *BODY_FILTERS,
)


def _attribute_filter(request: Request) -> tuple[tuple[str, str] | None, str | None]:
    """(the ``attribute`` filter, or None; what is wrong with it, said next to its field, or None)."""
    try:
        return attribute_param(request), None
    except HubError as exc:
        if exc.status_code != 422:
            raise
        return None, str(exc.detail[0]["msg"])


def _milliseconds(view_value: str | None, name: str) -> float | None:
    if view_value is None:
        return None
    if not view_value.isascii() or not view_value.isdigit() or len(view_value) > 9:
        raise BadView(f"{name} should be a whole number of milliseconds")
    return int(view_value) / 1000


async def requests(dash: Dashboard, request: Request) -> Response:
    view = dash.view(request)
    if (redirect := env_switch(request, view, "requests")) is not None:
        return redirect
    assert view.app is not None
    status = view.param("status")
    code = status_class = None
    if status is not None:
        if _STATUS_RE.fullmatch(status.lower()) is None:
            raise BadView("status should be a status code (404) or a class (4xx)")
        code, status_class = (None, int(status[0])) if status.lower().endswith("xx") else (int(status), None)
    method, path = view.endpoint or (view.param("method"), None)
    if method is not None and (not method.isalpha() or len(method) > 16):
        raise BadView("method should be an HTTP method")
    consumer = view.consumer
    attribute, attribute_error = _attribute_filter(request)
    query = LogQuery(
        view.app,
        view.window.since,
        view.window.until,
        method=method,
        path=path,
        status_code=code,
        status_class=status_class,
        consumer=None if consumer == "-" else consumer,
        search=view.param("q"),
        min_response_time=_milliseconds(view.param("min_ms"), "min_ms"),
        max_response_time=_milliseconds(view.param("max_ms"), "max_ms"),
        **log_filters(request, attribute=False),
        attribute=attribute,
        limit=PAGE_SIZE,
    )
    cursor = view.param("cursor")
    csv_href = view.csv_link(
        "requests",
        method=method,
        path=path,
        consumer=query.consumer,
        **{
            name: view.param(name)
            for name in LOG_FILTERS
            if name != "method" and not (name == "attribute" and attribute_error)
        },
    )

    def data(q: QueryService) -> dict[str, Any]:
        if attribute_error is not None:  # nothing is searched until the filter is put right
            log: dict[str, Any] = {"total": 0, "limit": PAGE_SIZE, "items": [], "next_cursor": None}
            return {**chrome(q, view), "log": log}
        return {**chrome(q, view), "log": q.request_log(query, cursor)}

    return await dash.render(
        request,
        "requests.html",
        data,
        view=view,
        active="requests",
        page_title="Request log",
        methods=METHODS,
        custom_time=True,
        extra_filtered=any(view.param(name) for name in LOG_FILTERS),
        csv_href=csv_href,
        body_scan=LOG_BODY_SCAN if query.request_body or query.response_body else None,
        attribute_scan=LOG_BODY_SCAN if attribute is not None else None,
        filter_errors={"attribute": attribute_error} if attribute_error else {},
        status_code=422 if attribute_error else 200,
    )


async def request_item(dash: Dashboard, request: Request) -> Response:
    view = dash.view(request)
    assert view.app is not None
    request_uuid = request.path_params["request_uuid"]
    app = view.app

    def data(q: QueryService) -> dict[str, Any]:
        found = q.request_log_item(app, request_uuid)
        if found is None:
            raise HubError(404, "This request is not in the log (it may be older than the log's retention).")
        title = f"{found['method']} {found['path'] or found['url']}"
        return {**chrome(q, view), "entry": found, "item": present_item(found["item"]), "page_title": title}

    return await dash.render(
        request,
        "request.html",
        data,
        view=view,
        active="requests",
        page_title="Request",
        show_controls=False,
    )


def routes(dash: Dashboard) -> list[Route]:
    return [
        dash.page("/apps/{client_id}/{env}/requests", requests, name="requests"),
        dash.page("/apps/{client_id}/{env}/requests/{request_uuid}", request_item, name="request"),
    ]
