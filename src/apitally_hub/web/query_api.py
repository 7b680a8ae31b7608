"""Read-only JSON query API under ``/api/`` (GET only), a thin HTTP face on
:class:`~apitally_hub.query.service.QueryService`.

``/api/apps`` lists the apps — each env that reported or is in the apps registry, with its
``name``, ``framework`` and ``registered`` (the registry's own routes: :mod:`.apps_api`) —
(``stats=true``: each with its ``overview`` over the window — default the last 24 h — and its
``status`` now). Per app, under ``/api/{client_id}/{env}/``:
``overview``, ``settings``, ``endpoints``, ``timeseries`` (``percentiles=false``: without them),
``percentiles`` (per bucket), ``histogram``, ``sizes``,
``error-status-codes``, ``consumers`` and ``consumers/{identifier}``, ``consumer-groups``,
``validation-errors``, ``server-errors``, ``status``, ``uptime``, ``instances`` and
``instances/{instance_uuid}``, ``requests`` (the request log) and ``requests/{uuid}``, and
``rejections`` (messages the hub refused, for debugging a client).

Common parameters: ``since``/``until`` (see :mod:`.timewindow`; default the last hour), the
filters ``method``, ``path``, ``consumer``, ``group`` and ``status`` (``404`` or ``4xx``), and for
lists ``limit`` (1-1000, default 100) and ``cursor`` (the ``next_cursor`` of the previous page).
``endpoints`` takes ``sort`` (a key of :data:`~apitally_hub.query.endpoints.ENDPOINT_SORTS`) and ``order``
(``asc``/``desc``; default: the key's natural order); ``consumers`` takes ``sort=requests``
(default) or ``last_seen`` (cheap over long windows:
:meth:`~apitally_hub.query.service.QueryService.consumers`).
``apdex_ms`` defaults to the app's setting. ``requests`` also takes ``q`` (URL text), ``min_ms``/``max_ms``,
the size bounds, the body texts, ``client_ip`` and ``attribute`` (``key:value``) of :func:`log_filters`.
``format=csv`` on a table (``endpoints``, ``validation-errors``, ``server-errors``, ``consumers``,
``consumer-groups``, ``requests``) downloads all its rows as CSV (:mod:`.csv_export`).
Bad parameters give 422 naming ``["query", <name>]``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from apitally_hub.errors import HubError, field_error
from apitally_hub.protocol.log_lines import MAX_CLIENT_IP
from apitally_hub.protocol.messages import is_valid_env, normalize_client_id
from apitally_hub.query.app_settings import APDEX_MS_RANGE
from apitally_hub.query.cursors import BadCursor, Page
from apitally_hub.query.endpoints import ENDPOINT_SORTS
from apitally_hub.query.params import (
    MAX_TEXT,
    attribute_param,
    bool_param,
    int_param,
    status_param,
    text_param,
    window_params,
)
from apitally_hub.query.planner import CHART_STEPS
from apitally_hub.query.service import QueryService
from apitally_hub.query.timewindow import Window
from apitally_hub.storage.records import NO_CONSUMER, AppKey, LogQuery, TrafficFilter
from apitally_hub.web.context import HubContext
from apitally_hub.web.csv_export import CSV_PAGE_ROWS, TABLES, CsvTable, csv_response
from apitally_hub.web.csv_export import filename as csv_filename

MAX_LIMIT = 1000
CONSUMER_SORTS = ("requests", "last_seen")


def _first_page(handler: PagedHandler) -> Handler:
    """A table's JSON handler: its page from the request's ``limit`` and ``cursor``."""
    return lambda q, r: handler(q, r, None)


def status_filter(request: Request) -> tuple[int | None, int | None]:
    """(status code, status class) from ``status=404`` or ``status=4xx``."""
    status = status_param(request)
    if status is None:
        return None, None
    return (None, int(status[0])) if status.endswith("xx") else (int(status), None)


def traffic_filter(request: Request) -> TrafficFilter:
    code, status_class = status_filter(request)
    consumer = text_param(request, "consumer")
    return TrafficFilter(
        method=text_param(request, "method"),
        path=text_param(request, "path"),
        consumer=NO_CONSUMER if consumer == "-" else consumer,
        consumer_group=text_param(request, "group"),
        status_code=code,
        status_class=status_class,
    )


SIZE_FILTERS = ("min_request_size", "max_request_size", "min_response_size", "max_response_size")
BODY_FILTERS = ("request_body", "response_body")
MAX_BODY_SEARCH = 256
"""Longest body text to search for."""


def log_filters(request: Request, *, attribute: bool = True) -> dict[str, Any]:
    """The request log's filters on sizes (bytes, bounds included), on body text (a
    case-insensitive substring, over the newest :data:`~apitally_hub.storage.records.LOG_BODY_SCAN`
    requests matching the other filters), on the client IP and (``attribute``) on a custom
    attribute (``attribute=key:value``, exact, over the same newest requests): keywords of
    :class:`LogQuery`. The JSON API and the dashboard's request log read them alike (the dashboard
    reads ``attribute`` itself, to say a bad one next to its field)."""
    values: dict[str, Any] = {}
    for name in SIZE_FILTERS:
        value = int_param(request, name, -1, 0, 2**53)
        values[name] = None if value < 0 else value
    for name in BODY_FILTERS:
        values[name] = text_param(request, name, max_len=MAX_BODY_SEARCH)
    values["client_ip"] = client_ip_param(request)
    if attribute:
        values["attribute"] = attribute_param(request)
    return values


def client_ip_param(request: Request) -> str | None:
    """``client_ip``: an IPv4 or IPv6 address (exact match, in its normal text form), or None."""
    raw = text_param(request, "client_ip", max_len=MAX_CLIENT_IP)
    if raw is None:
        return None
    try:
        return str(ipaddress.ip_address(raw.strip()))
    except ValueError:
        raise field_error(("query", "client_ip"), "Should be an IPv4 or IPv6 address", "ip_address") from None


def page_param(request: Request) -> Page:
    return Page(int_param(request, "limit", 100, 1, MAX_LIMIT), text_param(request, "cursor"))


def app_param(request: Request) -> AppKey:
    client_id = normalize_client_id(request.path_params["client_id"])
    if client_id is None:
        raise HubError(404, "Malformed client id")
    env = request.path_params["env"]
    if not is_valid_env(env):
        raise field_error(
            ("path", "env"), "env should match ^[A-Za-z0-9_-]{1,32}$", "string_pattern_mismatch"
        )
    return AppKey(client_id, env)


def allowed_app(request: Request, context: HubContext) -> AppKey:
    """:func:`app_param`, and 404 for a client id outside the ``--client-id`` allow-list (like
    ingest: the hub knows nothing of it)."""
    app = app_param(request)
    if not context.config.is_allowed(app.client_id):
        raise HubError(404, "Unknown client id")
    return app


def bucket_param(request: Request) -> int | None:
    raw = text_param(request, "bucket")
    if raw is None:
        return None
    units = {"m": 60, "h": 3600, "d": 86400}
    try:
        seconds = int(raw[:-1]) * units[raw[-1]] if raw[-1:] in units else int(raw)
    except ValueError:
        seconds = -1
    if seconds not in CHART_STEPS:
        allowed = ", ".join(str(s) for s in CHART_STEPS)
        raise field_error(
            ("query", "bucket"), f"Should be one of {allowed} seconds (or 1m, 5m, 1h, 1d)", "bucket"
        )
    return seconds


def apdex_param(request: Request) -> int | None:
    """``apdex_ms``, or None for the app's own threshold."""
    value = int_param(request, "apdex_ms", -1, *APDEX_MS_RANGE)
    return None if value < 0 else value


def sort_param(request: Request) -> tuple[str, bool | None]:
    """(``sort`` key, descending: None for the key's natural order)."""
    sort = text_param(request, "sort") or "path"
    if sort not in ENDPOINT_SORTS:
        raise field_error(("query", "sort"), f"Should be one of {', '.join(ENDPOINT_SORTS)}", "enum")
    order = text_param(request, "order")
    if order not in (None, "asc", "desc"):
        raise field_error(("query", "order"), "Should be asc or desc", "enum")
    return sort, None if order is None else order == "desc"


Handler = Callable[[QueryService, Request], Any]
PagedHandler = Callable[[QueryService, Request, Page | None], Any]
"""A table's handler, given a page (None: the request's ``limit`` and ``cursor``): the CSV download
reads the table page by page through it."""


def format_param(request: Request, *, csv: bool) -> str:
    """``format=json`` (the default) or, for a table (``csv``), ``format=csv``."""
    value = text_param(request, "format") or "json"
    if value == "json" or (value == "csv" and csv):
        return value
    raise field_error(("query", "format"), f"Should be {'json or csv' if csv else 'json'}", "enum")


class QueryEndpoints:
    def __init__(self, context: HubContext) -> None:
        self.context = context

    def routes(self) -> list[Route]:
        app = "/api/{client_id}/{env}"
        table: list[tuple[str, Handler]] = [
            ("/api/apps", self._apps),
            (f"{app}/overview", self._overview),
            (f"{app}/settings", lambda q, r: {"settings": q.settings(app_param(r))}),
            (f"{app}/timeseries", self._timeseries),
            (f"{app}/percentiles", self._percentiles),
            (f"{app}/histogram", self._histogram),
            (f"{app}/sizes", self._sizes),
            (f"{app}/error-status-codes", self._error_status_codes),
            (f"{app}/consumers/{{identifier:path}}", self._consumer),
            (f"{app}/status", lambda q, r: q.uptime_status(app_param(r))),
            (f"{app}/uptime", self._uptime),
            (f"{app}/instances", lambda q, r: q.instances(app_param(r), page_param(r))),
            (f"{app}/instances/{{instance_uuid}}", self._instance),
            (f"{app}/requests/{{request_uuid}}", self._request_item),
            (f"{app}/rejections", lambda q, r: q.rejections(app_param(r), self._window(r), page_param(r))),
        ]
        tables: list[tuple[str, PagedHandler]] = [
            ("endpoints", self._endpoints),
            ("consumers", self._consumers),
            ("consumer-groups", self._consumer_groups),
            ("validation-errors", self._validation_errors),
            ("server-errors", self._server_errors),
            ("requests", self._requests),
        ]
        routes = [
            Route(path, self._endpoint(handler), methods=["GET"], name=f"api:{path}")
            for path, handler in table
        ]
        for name, paged in tables:
            path = f"{app}/{name}"
            endpoint = self._endpoint(_first_page(paged), csv=(TABLES[name], paged))
            routes.append(Route(path, endpoint, methods=["GET"], name=f"api:{path}"))
        return routes

    def _endpoint(
        self, handler: Handler, *, csv: tuple[CsvTable, PagedHandler] | None = None
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            if "client_id" in request.path_params:
                allowed_app(request, self.context)
            queries = self.context.queries
            if format_param(request, csv=csv is not None) == "csv" and csv is not None:
                return await self._csv(request, *csv)
            try:
                body = await self.context.run(lambda: handler(queries, request))
            except BadCursor as exc:
                raise field_error(("query", "cursor"), str(exc), "cursor") from None
            if body is None:
                raise HubError(404, "Not found")
            if "client_id" in request.path_params:
                app = app_param(request)
                body = {"client_id": app.client_id, "env": app.env, **body}
            return JSONResponse(body)

        return endpoint

    async def _csv(self, request: Request, table: CsvTable, handler: PagedHandler) -> Response:
        """The table as a CSV download, with the request's filters and sort: its first page read
        here (a bad parameter is a 422), the rest as the response streams."""
        queries = self.context.queries

        def read_page(cursor: str | None) -> dict[str, Any]:
            body: dict[str, Any] = handler(queries, request, Page(CSV_PAGE_ROWS, cursor))
            return body

        first = await self.context.run(lambda: read_page(None))  # the first page takes no cursor
        app = app_param(request)
        name = csv_filename(app, table, self.context.clock())
        return csv_response(self.context, table, first, read_page, download_name=name)

    def _window(self, request: Request) -> Window:
        return window_params(request, self.context.clock())

    def _windowed(self, request: Request, body: dict[str, Any]) -> dict[str, Any]:
        return {"window": self._window(request).as_dict(), **body}

    def _apps(self, q: QueryService, r: Request) -> dict[str, Any]:
        if not bool_param(r, "stats"):
            return q.apps(page_param(r))
        now = self.context.clock()
        window = window_params(r, now) if r.query_params.get("since") else Window(now - 86400.0, now)
        return {"window": window.as_dict(), **q.apps(page_param(r), window=window)}

    def _overview(self, q: QueryService, r: Request) -> dict[str, Any]:
        body = q.app_overview(app_param(r), self._window(r), flt=traffic_filter(r), apdex_ms=apdex_param(r))
        return self._windowed(r, body)

    def _endpoints(self, q: QueryService, r: Request, page: Page | None) -> dict[str, Any]:
        sort, descending = sort_param(r)
        body = q.endpoints(
            app_param(r),
            self._window(r),
            flt=traffic_filter(r),
            include_idle=bool_param(r, "include_idle"),
            show_excluded=bool_param(r, "show_excluded"),
            apdex_ms=apdex_param(r),
            sort=sort,
            descending=descending,
            page=page or page_param(r),
        )
        return self._windowed(r, body)

    def _timeseries(self, q: QueryService, r: Request) -> dict[str, Any]:
        body = q.timeseries(
            app_param(r),
            self._window(r),
            flt=traffic_filter(r),
            bucket_seconds=bucket_param(r),
            apdex_ms=apdex_param(r),
            percentiles=bool_param(r, "percentiles", default=True),
        )
        return self._windowed(r, body)

    def _percentiles(self, q: QueryService, r: Request) -> dict[str, Any]:
        body = q.percentiles(
            app_param(r), self._window(r), flt=traffic_filter(r), bucket_seconds=bucket_param(r)
        )
        return self._windowed(r, body)

    def _sizes(self, q: QueryService, r: Request) -> dict[str, Any]:
        return self._windowed(r, q.size_histograms(app_param(r), self._window(r), flt=traffic_filter(r)))

    def _error_status_codes(self, q: QueryService, r: Request) -> dict[str, Any]:
        rows = q.error_status_codes(app_param(r), self._window(r), flt=traffic_filter(r))
        return self._windowed(r, {"error_status_codes": rows})

    def _consumer(self, q: QueryService, r: Request) -> dict[str, Any] | None:
        identifier = r.path_params["identifier"]
        if len(identifier) > MAX_TEXT:
            raise field_error(
                ("path", "identifier"), f"Should have at most {MAX_TEXT} characters", "string_too_long"
            )
        found = q.consumer(app_param(r), identifier, self._window(r))
        return None if found is None else self._windowed(r, found)

    def _histogram(self, q: QueryService, r: Request) -> dict[str, Any]:
        bins = q.response_time_histogram(app_param(r), self._window(r), flt=traffic_filter(r))
        return self._windowed(r, {"response_times": bins})

    def _consumers(self, q: QueryService, r: Request, page: Page | None) -> dict[str, Any]:
        sort = text_param(r, "sort") or "requests"
        if sort not in CONSUMER_SORTS:
            raise field_error(("query", "sort"), f"Should be one of {', '.join(CONSUMER_SORTS)}", "enum")
        body = q.consumers(
            app_param(r), self._window(r), flt=traffic_filter(r), page=page or page_param(r), sort=sort
        )
        return self._windowed(r, body)

    def _validation_errors(self, q: QueryService, r: Request, page: Page | None) -> dict[str, Any]:
        body = q.validation_errors(
            app_param(r), self._window(r), flt=traffic_filter(r), page=page or page_param(r)
        )
        return self._windowed(r, body)

    def _server_errors(self, q: QueryService, r: Request, page: Page | None) -> dict[str, Any]:
        body = q.server_errors(
            app_param(r), self._window(r), flt=traffic_filter(r), page=page or page_param(r)
        )
        return self._windowed(r, body)

    def _uptime(self, q: QueryService, r: Request) -> dict[str, Any]:
        window = self._window(r)
        return {"window": window.as_dict(), **q.uptime(app_param(r), window)}

    def _instance(self, q: QueryService, r: Request) -> dict[str, Any] | None:
        return q.instance(app_param(r), r.path_params["instance_uuid"])

    def _consumer_groups(self, q: QueryService, r: Request, page: Page | None) -> dict[str, Any]:
        """Every group (one page: a few dozen at most)."""
        return {"groups": q.consumer_groups(app_param(r), self._window(r))}

    def _requests(self, q: QueryService, r: Request, page: Page | None) -> dict[str, Any]:
        window = self._window(r)
        code, status_class = status_filter(r)
        times = {}
        for name in ("min_ms", "max_ms"):
            value = int_param(r, name, -1, 0, 86_400_000)
            times[name] = None if value < 0 else value / 1000
        query = LogQuery(
            app_param(r),
            window.since,
            window.until,
            method=text_param(r, "method"),
            path=text_param(r, "path"),
            status_code=code,
            status_class=status_class,
            consumer=text_param(r, "consumer"),
            search=text_param(r, "q"),
            min_response_time=times["min_ms"],
            max_response_time=times["max_ms"],
            **log_filters(r),
            limit=page.limit if page else int_param(r, "limit", 100, 1, MAX_LIMIT),
            count=page is None,
        )
        cursor = page.cursor if page else text_param(r, "cursor")
        return self._windowed(r, q.request_log(query, cursor))

    def _request_item(self, q: QueryService, r: Request) -> dict[str, Any] | None:
        return q.request_log_item(app_param(r), r.path_params["request_uuid"])
