"""Settings per endpoint through the JSON API (as the dashboard's endpoint pages set them).

==================================================  ===============================================
``GET /api/{client_id}/{env}/endpoints/settings``   the endpoints with a setting of their own
``PUT /api/{client_id}/{env}/endpoints/settings``   set ``{"method", "path", "apdex_ms", "excluded"}``
                                                    (``apdex_ms`` null: the app env's threshold;
                                                    fields left out keep their values)
==================================================  ===============================================

An excluded endpoint is left out of the hub's tables, charts, totals and alert rules; its data is
kept, and including it again brings it back (``"excluded": false``). Invalid fields are a 422
naming each (``loc`` ``["body", <field>]``); nothing changes. Writes need an admin's credential
and a JSON body (:mod:`apitally_hub.security.access`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from apitally_hub.errors import unprocessable
from apitally_hub.query import endpoint_settings
from apitally_hub.query.endpoint_settings import InvalidEndpointSetting
from apitally_hub.web.alerts_api import json_body
from apitally_hub.web.context import HubContext
from apitally_hub.web.query_api import allowed_app

Handler = Callable[[Request], Awaitable[Response]]


class EndpointSettingEndpoints:
    def __init__(self, context: HubContext) -> None:
        self.context = context

    def routes(self) -> list[Route]:
        path = "/api/{client_id}/{env}/endpoints/settings"
        return [
            Route(path, self.list, methods=["GET"], name=f"endpoint-settings:GET:{path}"),
            Route(path, self.put, methods=["PUT"], name=f"endpoint-settings:PUT:{path}"),
        ]

    async def list(self, request: Request) -> Response:
        app = allowed_app(request, self.context)
        store = self.context.store
        found = await self.context.run(lambda: store.endpoint_settings(app))
        body: dict[str, Any] = {
            "client_id": app.client_id,
            "env": app.env,
            "endpoints": [endpoint_settings.setting_entry(s) for s in found],
        }
        return JSONResponse(body)

    async def put(self, request: Request) -> Response:
        app = allowed_app(request, self.context)
        body = await json_body(request)
        store, now = self.context.store, self.context.clock()
        try:
            setting = await self.context.run(
                lambda: endpoint_settings.write_endpoint_setting(store, app, body, now=now)
            )
        except InvalidEndpointSetting as exc:
            raise unprocessable(exc.errors) from None
        return JSONResponse(
            {"client_id": app.client_id, "env": app.env, **endpoint_settings.setting_entry(setting)}
        )
