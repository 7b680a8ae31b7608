"""Route templates: which template served a request, and which endpoints an app has.

Starlette's router stores the matched route in ``scope["route"]`` (the innermost one, since mounted
routers update the same scope). A route object only knows its own path, not the prefixes of the
mounts above it, so the full template comes from a map of route object -> full template, built by
walking the app's routes once and rebuilt only when a route that is not in it shows up.

FastAPI (0.16x) includes routers lazily: ``include_router`` adds one ``_IncludedRouter`` whose
"effective route contexts" carry the full path of each route as included (the same route object
can be included twice under two prefixes). The context that matched is in
``scope["fastapi"]["effective_route_context"]``; it is the map key when present.
"""

from __future__ import annotations

import inspect
import logging
import threading
from collections.abc import Iterable, Iterator
from typing import Any

from starlette.routing import BaseRoute, Host, Mount, Route, Router, WebSocketRoute

_logger = logging.getLogger(__name__)

_LISTED_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
_MAX_REBUILDS = 16


def _sub_routes(app: Any) -> list[BaseRoute] | None:
    """The routes of a mounted app, or None for an opaque ASGI app (static files, a WSGI bridge)."""
    routes = getattr(app, "routes", None)
    if isinstance(routes, list):
        return routes
    return None


def _walk(routes: Iterable[BaseRoute], prefix: str) -> Iterator[tuple[BaseRoute, str]]:
    """Yield (route, full template) for every route, mounts expanded, in matching order."""
    for route in routes:
        if isinstance(route, Mount):
            sub = _sub_routes(route.app)
            mount_prefix = prefix + route.path
            if sub is None:
                yield route, mount_prefix + "/{path:path}"
            else:
                yield route, ""  # a mount whose own router matched nothing: not a served route
                yield from _walk(sub, mount_prefix)
        elif isinstance(route, Host):
            sub = _sub_routes(route.app)
            if sub is not None:
                yield from _walk(sub, prefix)
        elif isinstance(route, (Route, WebSocketRoute)):
            yield route, prefix + route.path
        elif callable(getattr(route, "effective_route_contexts", None)):  # FastAPI's included router
            for context in route.effective_route_contexts():  # type: ignore[attr-defined]
                yield context, prefix + context.path
        else:
            path = getattr(route, "path", None)
            if isinstance(path, str):
                yield route, prefix + path


class RouteTemplates:
    """Maps ``scope["route"]`` to the full route template of an app (without ``root_path``)."""

    def __init__(self, app: Any) -> None:
        self._app = app
        self._lock = threading.Lock()
        self._templates: dict[int, tuple[BaseRoute, str]] = {}
        self._rebuilds = 0
        self._built = False

    def _rebuild(self) -> None:
        templates: dict[int, tuple[BaseRoute, str]] = {}
        routes = _app_routes(self._app)
        for route, template in _walk(routes, ""):
            # The first place a route is mounted wins, as in matching order.
            templates.setdefault(id(route), (route, template))
        self._templates = templates
        self._built = True

    def template_for(self, route: Any, root_path: str, scope_root_path: str) -> str | None:
        """The full template of ``route`` or None when the request matched no served route.

        ``root_path`` is the scope's root path before routing (the ASGI server's ``--root-path``),
        ``scope_root_path`` the one after routing (with the concrete mount prefixes appended).
        """
        entry = self._templates.get(id(route))
        if entry is None or entry[0] is not route:
            with self._lock:
                entry = self._templates.get(id(route))
                if (entry is None or entry[0] is not route) and (
                    not self._built or self._rebuilds < _MAX_REBUILDS
                ):
                    # The first request, or a route added after it: walk the routes (again).
                    self._rebuilds += int(self._built)
                    self._rebuild()
                    entry = self._templates.get(id(route))
        if entry is not None and entry[0] is route:
            return root_path + entry[1] if entry[1] else None
        # Not reachable from the app's routes (e.g. a router wrapped in middleware inside a mount):
        # the scope's root_path holds the concrete mount prefixes, which is right for mounts
        # without path parameters.
        if isinstance(route, Mount):
            return None if _sub_routes(route.app) is not None else scope_root_path + "/{path:path}"
        path = getattr(route, "path", None)
        return scope_root_path + path if isinstance(path, str) else None


def _app_routes(app: Any) -> list[BaseRoute]:
    router = getattr(app, "router", None)
    if isinstance(router, Router):
        return list(router.routes)
    return _sub_routes(app) or []


def route_key(scope: Any) -> Any:
    """What identifies the matched route in the map: FastAPI's effective context, else the route."""
    fastapi_state = scope.get("fastapi")
    if isinstance(fastapi_state, dict):
        context = fastapi_state.get("effective_route_context")
        if context is not None:
            return context
    return scope.get("route")


def list_paths(app: Any) -> list[dict[str, str]]:
    """Every HTTP endpoint of the app as ``{"method": "get", "path": template}`` (hub-protocol §3)."""
    paths: list[dict[str, str]] = []
    seen: set[tuple[str, str]] = set()
    for route, template in _walk(_app_routes(app), ""):
        route = getattr(route, "original_route", route)  # a FastAPI effective route context
        if not template or isinstance(route, (WebSocketRoute, Mount)) or not _in_schema(route):
            continue
        for method in _route_methods(route):
            key = (method, template)
            if key not in seen:
                seen.add(key)
                paths.append({"method": method.lower(), "path": template})
    return paths


def _in_schema(route: BaseRoute) -> bool:
    # FastAPI's own /docs, /redoc and /openapi.json are not endpoints of the API.
    return getattr(route, "include_in_schema", True) is not False


def _route_methods(route: BaseRoute) -> list[str]:
    methods = getattr(route, "methods", None)
    if methods:
        return [m for m in _LISTED_METHODS if m in methods]
    endpoint = getattr(route, "endpoint", None)
    if inspect.isclass(endpoint):  # an HTTPEndpoint: one method per handler it defines
        return [m for m in _LISTED_METHODS if hasattr(endpoint, m.lower())]
    return []
