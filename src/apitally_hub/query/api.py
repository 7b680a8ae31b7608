"""Read-only JSON query API under ``/api/`` (GET only).

``/api/apps`` lists the apps (client id and env). Per app, under ``/api/{client_id}/{env}/``:
``endpoints``, ``timeseries``, ``consumers``, ``validation-errors``, ``server-errors`` (all take
``since``/``until``, see :mod:`.timewindow`), ``instances`` and ``instances/{instance_uuid}``,
``requests`` (request log; filters ``method``, ``path``, ``status`` = ``404`` or ``4xx``,
``consumer``, ``q`` = URL substring, ``limit``, ``offset``) and ``requests/{uuid}``, and
``rejections`` (messages the hub refused, for debugging a client). Bad parameters give 422
naming ``["query", <name>]``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from apitally_hub.context import HubContext
from apitally_hub.errors import HubError, field_error
from apitally_hub.protocol.messages import ENV_MESSAGE, is_valid_env
from apitally_hub.query.params import (
    bool_param,
    int_param,
    status_param,
    text_param,
    window_params,
)
from apitally_hub.query.timewindow import Window
from apitally_hub.settings import normalize_client_id
from apitally_hub.storage.sqlite import queries_events, queries_traffic


class QueryEndpoints:
    def __init__(self, context: HubContext) -> None:
        self.context = context

    def routes(self) -> list[Route]:
        app = "/api/{client_id}/{env}"
        return [
            Route("/api/apps", self.apps, methods=["GET"]),
            Route(f"{app}/endpoints", self.endpoints, methods=["GET"]),
            Route(f"{app}/timeseries", self.timeseries, methods=["GET"]),
            Route(f"{app}/consumers", self.consumers, methods=["GET"]),
            Route(f"{app}/validation-errors", self.validation_errors, methods=["GET"]),
            Route(f"{app}/server-errors", self.server_errors, methods=["GET"]),
            Route(f"{app}/instances", self.instances, methods=["GET"]),
            Route(f"{app}/instances/{{instance_uuid}}", self.instance, methods=["GET"]),
            Route(f"{app}/requests", self.requests, methods=["GET"]),
            Route(f"{app}/requests/{{request_uuid}}", self.request_item, methods=["GET"]),
            Route(f"{app}/rejections", self.rejections, methods=["GET"]),
        ]

    # -- helpers ---------------------------------------------------------------------------

    def _app(self, request: Request) -> tuple[str, str]:
        client_id = normalize_client_id(request.path_params["client_id"])
        if client_id is None:
            raise HubError(404, "Malformed client id")
        env = request.path_params["env"]
        if not is_valid_env(env):
            raise field_error(("path", "env"), ENV_MESSAGE, "string_pattern_mismatch")
        return client_id, env

    def _window(self, request: Request) -> Window:
        return window_params(request, self.context.clock())

    async def _read(self, work: Callable[[sqlite3.Connection], Any]) -> Any:
        return await self.context.database.aread(work)

    # -- endpoints -------------------------------------------------------------------------

    async def apps(self, request: Request) -> Response:
        return JSONResponse({"apps": await self._read(queries_traffic.list_apps)})

    async def endpoints(self, request: Request) -> Response:
        client_id, env = self._app(request)
        window, idle = self._window(request), bool_param(request, "include_idle")
        rows = await self._read(
            lambda c: queries_traffic.endpoints(c, client_id, env, window, include_idle=idle)
        )
        return JSONResponse(
            {"client_id": client_id, "env": env, "window": window.as_dict(), "endpoints": rows}
        )

    async def timeseries(self, request: Request) -> Response:
        client_id, env = self._app(request)
        window = self._window(request)
        method, path = text_param(request, "method"), text_param(request, "path")
        points = await self._read(
            lambda c: queries_traffic.timeseries(c, client_id, env, window, method=method, path=path)
        )
        return JSONResponse(
            {"client_id": client_id, "env": env, "window": window.as_dict(), "points": points}
        )

    async def consumers(self, request: Request) -> Response:
        client_id, env = self._app(request)
        window = self._window(request)
        rows = await self._read(lambda c: queries_traffic.consumers(c, client_id, env, window))
        return JSONResponse(
            {"client_id": client_id, "env": env, "window": window.as_dict(), "consumers": rows}
        )

    async def validation_errors(self, request: Request) -> Response:
        client_id, env = self._app(request)
        window = self._window(request)
        rows = await self._read(lambda c: queries_events.validation_errors(c, client_id, env, window))
        body = {"client_id": client_id, "env": env, "window": window.as_dict(), "validation_errors": rows}
        return JSONResponse(body)

    async def server_errors(self, request: Request) -> Response:
        client_id, env = self._app(request)
        window = self._window(request)
        rows = await self._read(lambda c: queries_events.server_errors(c, client_id, env, window))
        body = {"client_id": client_id, "env": env, "window": window.as_dict(), "server_errors": rows}
        return JSONResponse(body)

    async def instances(self, request: Request) -> Response:
        client_id, env = self._app(request)
        now, default = self.context.clock(), self.context.settings.default_sync_interval
        rows = await self._read(lambda c: queries_events.instances(c, client_id, env, now, default))
        return JSONResponse({"client_id": client_id, "env": env, "now": now, "instances": rows})

    async def instance(self, request: Request) -> Response:
        client_id, env = self._app(request)
        uuid = request.path_params["instance_uuid"]
        now, default = self.context.clock(), self.context.settings.default_sync_interval
        row = await self._read(
            lambda c: queries_events.instance_detail(c, client_id, env, uuid, now, default)
        )
        if row is None:
            raise HubError(404, "Unknown instance")
        return JSONResponse(row)

    async def requests(self, request: Request) -> Response:
        client_id, env = self._app(request)
        flt = queries_events.LogFilter(
            window=self._window(request),
            method=text_param(request, "method"),
            path=text_param(request, "path"),
            status=status_param(request),
            consumer=text_param(request, "consumer"),
            search=text_param(request, "q"),
            limit=int_param(request, "limit", 100, 1, 1000),
            offset=int_param(request, "offset", 0, 0, 10**9),
        )
        page = await self._read(lambda c: queries_events.request_log(c, client_id, env, flt))
        return JSONResponse({"client_id": client_id, "env": env, "window": flt.window.as_dict(), **page})

    async def request_item(self, request: Request) -> Response:
        client_id, env = self._app(request)
        uuid = request.path_params["request_uuid"]
        row = await self._read(lambda c: queries_events.request_log_item(c, client_id, env, uuid))
        if row is None:
            raise HubError(404, "Unknown request")
        return JSONResponse(row)

    async def rejections(self, request: Request) -> Response:
        client_id, env = self._app(request)
        window = self._window(request)
        limit = int_param(request, "limit", 100, 1, 1000)
        rows = await self._read(lambda c: queries_events.rejections(c, client_id, env, window, limit))
        return JSONResponse(
            {"client_id": client_id, "env": env, "window": window.as_dict(), "rejections": rows}
        )
