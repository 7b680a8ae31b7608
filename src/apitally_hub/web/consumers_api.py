"""A consumer's name and group set through the JSON API (as the dashboard's consumer page does).

============================================================  =====================================
``PUT /api/{client_id}/{env}/consumers/{identifier}``          set ``{"name": …, "group": …}``
                                                               (null or empty: none set, the
                                                               client's value holds)
``DELETE /api/{client_id}/{env}/consumers/{identifier}/overrides``  back to the client's name and group
============================================================  =====================================

Both answer the consumer's names: ``name`` and ``group`` (the ones it has), ``client_name``,
``client_group``, ``dashboard_name``, ``dashboard_group``. A consumer the app env never saw is a
404; invalid fields a 422 naming each (``loc`` ``["body", <field>]``), nothing changed. Writes need
an admin's credential and a JSON body (:mod:`apitally_hub.security.access`). The reads are the
query API's (:mod:`.query_api`), which shows the dashboard's name and group wherever it shows a
consumer's.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from apitally_hub.errors import HubError, unprocessable
from apitally_hub.query import consumer_names
from apitally_hub.query.consumer_names import InvalidConsumer
from apitally_hub.storage.records import ConsumerInfo
from apitally_hub.web.alerts_api import json_body
from apitally_hub.web.context import HubContext
from apitally_hub.web.query_api import allowed_app

Handler = Callable[[Request], Awaitable[Response]]


class ConsumerEndpoints:
    def __init__(self, context: HubContext) -> None:
        self.context = context

    def routes(self) -> list[Route]:
        app = "/api/{client_id}/{env}"
        table: list[tuple[str, str, Handler]] = [
            (f"{app}/consumers/{{identifier:path}}/overrides", "DELETE", self.reset),
            (f"{app}/consumers/{{identifier:path}}", "PUT", self.put),
        ]
        return [
            Route(path, self._guard(handler), methods=[method], name=f"consumers:{method}:{path}")
            for path, method, handler in table
        ]

    def _guard(self, handler: Handler) -> Handler:
        async def endpoint(request: Request) -> Response:
            try:
                return await handler(request)
            except InvalidConsumer as exc:
                raise unprocessable(exc.errors) from None

        return endpoint

    @staticmethod
    def _answer(request: Request, found: ConsumerInfo | None) -> Response:
        if found is None:
            raise HubError(404, "This app env has no such consumer")
        body: dict[str, Any] = {
            "client_id": request.path_params["client_id"],
            "env": request.path_params["env"],
            **consumer_names.consumer_entry(found),
        }
        return JSONResponse(body)

    async def put(self, request: Request) -> Response:
        app = allowed_app(request, self.context)
        identifier = request.path_params["identifier"]
        body = await json_body(request)
        store, now = self.context.store, self.context.clock()
        found = await self.context.run(
            lambda: consumer_names.set_consumer(store, app, identifier, body, now=now)
        )
        return self._answer(request, found)

    async def reset(self, request: Request) -> Response:
        app = allowed_app(request, self.context)
        identifier = request.path_params["identifier"]
        store, now = self.context.store, self.context.clock()
        found = await self.context.run(lambda: consumer_names.reset_consumer(store, app, identifier, now=now))
        return self._answer(request, found)
