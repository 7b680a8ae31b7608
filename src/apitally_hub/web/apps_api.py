"""The apps registry's JSON API (the query API's ``GET /api/apps`` lists the apps).

=================================================  ==================================================
``POST /api/apps``                                 create ``{"name", "framework", "envs": ["prod",
                                                   "dev"]}`` -> 201, the app with its new
                                                   ``client_id`` and first ``write_token``
``GET /api/apps/{client_id}``                      the app: name, framework, per env whether data
                                                   has arrived, and (for admins) its
                                                   ``write_tokens``
``PATCH /api/apps/{client_id}``                    change ``name``, ``framework`` or ``envs``
                                                   (naming an app that only reported creates its
                                                   registry entry and first write token)
``DELETE /api/apps/{client_id}``                   delete the app and all its data, every env ->
                                                   ``{"deleted"}``
``POST /api/apps/{client_id}/write-tokens``        another write token -> 201 ``{"token",
                                                   "created_at"}``
``POST /api/apps/{client_id}/write-tokens/revoke`` ``{"token": "apt_..."}`` -> the token with its
                                                   ``revoked_at`` (404: the app has no such token)
=================================================  ==================================================

Write tokens are OTLP ingest's per-app credentials (``apt_`` and 24 letters or digits). They are
secrets: ``GET`` shows them to an admin's bearer token (or on a hub without tokens) only, and a
revocation names the token in its body, never in a URL (which access logs keep).

Frameworks: ``starlette``, ``fastapi``, ``other``. ``envs`` is a list of env names (or one string of
them, separated by commas or spaces), at least one. Invalid fields are a 422 naming each (``loc``
``["body", <field>]``); nothing changes. Writes need an admin's credential and a JSON body
(:mod:`apitally_hub.security.access`). Client ids outside the ``--client-id`` allow-list are 404,
and with an allow-list no app can be created (409: the hub would refuse its data).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from apitally_hub.errors import HubError, unprocessable
from apitally_hub.protocol.messages import normalize_client_id
from apitally_hub.query import app_registry
from apitally_hub.query.app_registry import InvalidApp
from apitally_hub.security.tokens import ADMIN
from apitally_hub.web.alerts_api import json_body
from apitally_hub.web.context import HubContext

Handler = Callable[[Request], Awaitable[Response]]

ALLOW_LIST_REFUSAL = (
    "This hub accepts data only from the client ids given with --client-id: a new app's would be refused"
)


class AppEndpoints:
    def __init__(self, context: HubContext) -> None:
        self.context = context

    def routes(self) -> list[Route]:
        table: list[tuple[str, str, Handler]] = [
            ("/api/apps", "POST", self.create),
            ("/api/apps/{client_id}", "GET", self.get),
            ("/api/apps/{client_id}", "PATCH", self.update),
            ("/api/apps/{client_id}", "DELETE", self.delete),
            ("/api/apps/{client_id}/write-tokens", "POST", self.create_write_token),
            ("/api/apps/{client_id}/write-tokens/revoke", "POST", self.revoke_write_token),
        ]
        return [
            Route(path, self._guard(handler), methods=[method], name=f"apps:{method}:{path}")
            for path, method, handler in table
        ]

    def _guard(self, handler: Handler) -> Handler:
        async def endpoint(request: Request) -> Response:
            try:
                return await handler(request)
            except InvalidApp as exc:
                raise unprocessable(exc.errors) from None

        return endpoint

    def _client_id(self, request: Request) -> str:
        client_id = normalize_client_id(request.path_params["client_id"])
        if client_id is None:
            raise HubError(404, "Malformed client id")
        if not self.context.config.is_allowed(client_id):
            raise HubError(404, "Unknown client id")
        return client_id

    def _is_admin(self, request: Request) -> bool:
        """Whether the asker may see write tokens: an admin's bearer token, or a hub without tokens
        (the access gate has let the request through already)."""
        tokens = self.context.tokens
        return not tokens or tokens.authorization_role(request.headers.get("authorization")) == ADMIN

    def _view(self, client_id: str, *, with_tokens: bool = True) -> dict[str, Any]:
        view = app_registry.app_view(self.context.store, client_id, with_tokens=with_tokens)
        if view is None:
            raise HubError(404, "No such app")
        return view

    async def create(self, request: Request) -> Response:
        if self.context.config.client_ids is not None:
            raise HubError(409, ALLOW_LIST_REFUSAL)
        body = await json_body(request)
        store, now = self.context.store, self.context.clock()

        def work() -> dict[str, Any]:
            record, token = app_registry.create_app(store, body, now=now)
            return {**self._view(record.client_id), "write_token": token.token}

        return JSONResponse(await self.context.run(work), status_code=201)

    async def get(self, request: Request) -> Response:
        client_id = self._client_id(request)
        with_tokens = self._is_admin(request)
        return JSONResponse(await self.context.run(lambda: self._view(client_id, with_tokens=with_tokens)))

    async def update(self, request: Request) -> Response:
        client_id = self._client_id(request)
        body = await json_body(request)
        store, now = self.context.store, self.context.clock()

        def work() -> dict[str, Any]:
            if app_registry.update_app(store, client_id, body, now=now) is None:
                raise HubError(404, "No such app")
            return self._view(client_id)

        return JSONResponse(await self.context.run(work))

    async def delete(self, request: Request) -> Response:
        client_id = self._client_id(request)
        store = self.context.store
        deleted = await self.context.run(lambda: app_registry.delete_app(store, client_id))
        if deleted is None:
            raise HubError(404, "No such app")
        self.context.write_tokens.clear()  # its write tokens are gone
        return JSONResponse({"client_id": client_id, "deleted": deleted})

    async def create_write_token(self, request: Request) -> Response:
        client_id = self._client_id(request)
        await json_body(request)  # none, or {} (read, so that a body too large is refused)
        store, now = self.context.store, self.context.clock()
        token = await self.context.run(lambda: app_registry.create_write_token(store, client_id, now=now))
        if token is None:
            raise HubError(404, "No such app")
        return JSONResponse(
            {"client_id": client_id, "token": token.token, "created_at": token.created_at}, status_code=201
        )

    async def revoke_write_token(self, request: Request) -> Response:
        client_id = self._client_id(request)
        value = app_registry.parse_token_body(await json_body(request))
        store, now = self.context.store, self.context.clock()
        token = await self.context.run(
            lambda: app_registry.revoke_write_token(store, client_id, value, now=now)
        )
        if token is None:
            raise HubError(404, "No such write token")
        self.context.write_tokens.clear()  # refused at once by this process
        return JSONResponse({"client_id": client_id, **app_registry.token_view(token)})
