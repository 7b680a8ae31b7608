"""Read-only JSON query API under ``/api/`` (GET only), a thin HTTP face on
:class:`~apitally_hub.query.service.QueryService`.

``/api/apps`` lists the apps. Per app, under ``/api/{client_id}/{env}/``: ``overview``,
``endpoints``, ``timeseries``, ``histogram``, ``consumers``, ``consumer-groups``,
``validation-errors``, ``server-errors``, ``uptime``, ``instances`` and
``instances/{instance_uuid}``, ``requests`` (the request log) and ``requests/{uuid}``, and
``rejections`` (messages the hub refused, for debugging a client).

Common parameters: ``since``/``until`` (see :mod:`.timewindow`; default the last hour), the
filters ``method``, ``path``, ``consumer``, ``group`` and ``status`` (``404`` or ``4xx``), and for
lists ``limit`` (1-1000, default 100) and ``cursor`` (the ``next_cursor`` of the previous page).
Bad parameters give 422 naming ``["query", <name>]``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from apitally_hub.context import HubContext
from apitally_hub.errors import HubError, field_error
from apitally_hub.protocol.messages import is_valid_env
from apitally_hub.query.params import bool_param, int_param, status_param, text_param, window_params
from apitally_hub.query.planner import CHART_STEPS
from apitally_hub.query.service import BadCursor, Page, QueryService
from apitally_hub.query.stats import DEFAULT_APDEX_MS
from apitally_hub.query.timewindow import Window
from apitally_hub.settings import normalize_client_id
from apitally_hub.storage.base import NO_CONSUMER, AppKey, LogQuery, TrafficFilter

_SORTS = ("path", "requests", "errors", "error_rate", "p95")
MAX_LIMIT = 1000


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


Handler = Callable[[QueryService, Request], Any]


class QueryEndpoints:
    def __init__(self, context: HubContext) -> None:
        self.context = context

    def routes(self) -> list[Route]:
        app = "/api/{client_id}/{env}"
        table: list[tuple[str, Handler]] = [
            ("/api/apps", lambda q, r: q.apps(page_param(r))),
            (f"{app}/overview", self._overview),
            (f"{app}/endpoints", self._endpoints),
            (f"{app}/timeseries", self._timeseries),
            (f"{app}/histogram", self._histogram),
            (f"{app}/consumers", self._consumers),
            (
                f"{app}/consumer-groups",
                lambda q, r: {"groups": q.consumer_groups(app_param(r), self._window(r))},
            ),
            (f"{app}/validation-errors", self._validation_errors),
            (f"{app}/server-errors", self._server_errors),
            (f"{app}/uptime", self._uptime),
            (f"{app}/instances", lambda q, r: q.instances(app_param(r), page_param(r))),
            (f"{app}/instances/{{instance_uuid}}", self._instance),
            (f"{app}/requests", self._requests),
            (f"{app}/requests/{{request_uuid}}", self._request_item),
            (f"{app}/rejections", lambda q, r: q.rejections(app_param(r), self._window(r), page_param(r))),
        ]
        return [Route(path, self._endpoint(handler), methods=["GET"]) for path, handler in table]

    def _endpoint(self, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            queries = self.context.queries
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

    def _window(self, request: Request) -> Window:
        return window_params(request, self.context.clock())

    def _windowed(self, request: Request, body: dict[str, Any]) -> dict[str, Any]:
        return {"window": self._window(request).as_dict(), **body}

    def _overview(self, q: QueryService, r: Request) -> dict[str, Any]:
        apdex_ms = int_param(r, "apdex_ms", DEFAULT_APDEX_MS, 1, 60_000)
        return self._windowed(r, q.app_overview(app_param(r), self._window(r), apdex_ms=apdex_ms))

    def _endpoints(self, q: QueryService, r: Request) -> dict[str, Any]:
        sort = text_param(r, "sort") or "path"
        if sort not in _SORTS:
            raise field_error(("query", "sort"), f"Should be one of {', '.join(_SORTS)}", "enum")
        body = q.endpoints(
            app_param(r),
            self._window(r),
            flt=traffic_filter(r),
            include_idle=bool_param(r, "include_idle"),
            apdex_ms=int_param(r, "apdex_ms", DEFAULT_APDEX_MS, 1, 60_000),
            sort=sort,
            page=page_param(r),
        )
        return self._windowed(r, body)

    def _timeseries(self, q: QueryService, r: Request) -> dict[str, Any]:
        body = q.timeseries(
            app_param(r), self._window(r), flt=traffic_filter(r), bucket_seconds=bucket_param(r)
        )
        return self._windowed(r, body)

    def _histogram(self, q: QueryService, r: Request) -> dict[str, Any]:
        bins = q.response_time_histogram(app_param(r), self._window(r), flt=traffic_filter(r))
        return self._windowed(r, {"response_times": bins})

    def _consumers(self, q: QueryService, r: Request) -> dict[str, Any]:
        body = q.consumers(app_param(r), self._window(r), flt=traffic_filter(r), page=page_param(r))
        return self._windowed(r, body)

    def _validation_errors(self, q: QueryService, r: Request) -> dict[str, Any]:
        body = q.validation_errors(app_param(r), self._window(r), flt=traffic_filter(r), page=page_param(r))
        return self._windowed(r, body)

    def _server_errors(self, q: QueryService, r: Request) -> dict[str, Any]:
        body = q.server_errors(app_param(r), self._window(r), flt=traffic_filter(r), page=page_param(r))
        return self._windowed(r, body)

    def _uptime(self, q: QueryService, r: Request) -> dict[str, Any]:
        window = self._window(r)
        return {"window": window.as_dict(), **q.uptime(app_param(r), window)}

    def _instance(self, q: QueryService, r: Request) -> dict[str, Any] | None:
        return q.instance(app_param(r), r.path_params["instance_uuid"])

    def _requests(self, q: QueryService, r: Request) -> dict[str, Any]:
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
            limit=int_param(r, "limit", 100, 1, MAX_LIMIT),
        )
        return self._windowed(r, q.request_log(query, text_param(r, "cursor")))

    def _request_item(self, q: QueryService, r: Request) -> dict[str, Any] | None:
        return q.request_log_item(app_param(r), r.path_params["request_uuid"])
