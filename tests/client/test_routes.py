from __future__ import annotations

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Host, Mount, Route, Router, WebSocketRoute
from starlette.staticfiles import StaticFiles

from apitally_otel._asgi.routes import RouteTemplates, list_paths, route_key


async def ok(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


def make_app() -> Starlette:
    inner = Router(routes=[Route("/users/{user_id:int}", ok), Route("/users", ok, methods=["GET", "POST"])])
    return Starlette(
        routes=[
            Route("/", ok),
            Route("/items/{item_id:int}", ok, methods=["GET", "DELETE"]),
            Mount("/v1", routes=inner.routes),
            Mount("/orgs/{org}", routes=[Route("/members", ok)]),
            Host("api.example.com", app=Router(routes=[Route("/hosted", ok)])),
            WebSocketRoute("/ws", ok),
        ]
    )


async def resolve(app: Starlette, path: str, root_path: str = "") -> str | None:
    """Route a request through the real app and resolve the template from its final scope."""
    scopes: list[dict[str, object]] = []

    async def capture(scope, receive, send):  # type: ignore[no-untyped-def]
        scopes.append(scope)  # the router writes the matched route into this very dict
        await app(scope, receive, send)

    transport = httpx.ASGITransport(app=capture, root_path=root_path)
    async with httpx.AsyncClient(transport=transport, base_url="http://api.example.com") as client:
        await client.get(root_path + path)
    captured = scopes[0]
    key = route_key(captured)
    if key is None:
        return None
    return RouteTemplates(app).template_for(key, root_path, str(captured.get("root_path", "")))


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/", "/"),
        ("/items/42", "/items/{item_id:int}"),
        ("/v1/users/7", "/v1/users/{user_id:int}"),
        ("/v1/users", "/v1/users"),
        ("/orgs/acme/members", "/orgs/{org}/members"),
        ("/hosted", "/hosted"),
        ("/v1/nothing-here", None),
        ("/unknown", None),
    ],
)
async def test_templates(path: str, expected: str | None) -> None:
    assert await resolve(make_app(), path) == expected


@pytest.mark.anyio
async def test_root_path_is_part_of_the_template() -> None:
    assert await resolve(make_app(), "/v1/users/7", root_path="/api") == "/api/v1/users/{user_id:int}"


@pytest.mark.anyio
async def test_route_added_after_first_request() -> None:
    app = make_app()
    templates = RouteTemplates(app)
    assert templates.template_for(app.routes[0], "", "") == "/"
    late = Route("/late/{x}", ok)
    app.router.routes.append(late)
    assert templates.template_for(late, "", "") == "/late/{x}"


@pytest.mark.anyio
async def test_opaque_mount_counts_under_the_mount(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "a.txt").write_text("hi")
    app = Starlette(routes=[Mount("/static", app=StaticFiles(directory=tmp_path))])
    assert await resolve(app, "/static/a.txt") == "/static/{path:path}"


@pytest.mark.anyio
async def test_fastapi_included_router() -> None:
    router = APIRouter(prefix="/api/items")

    @router.get("/{item_id}")
    async def get_item(item_id: int) -> dict[str, int]:
        return {"id": item_id}

    app = FastAPI()
    app.include_router(router)
    app.include_router(router, prefix="/v2")  # the same routes, included twice
    nested = APIRouter(prefix="/outer")
    nested.include_router(router, prefix="/inner")
    app.include_router(nested)
    assert await resolve(app, "/api/items/3") == "/api/items/{item_id}"  # type: ignore[arg-type]
    assert await resolve(app, "/v2/api/items/3") == "/v2/api/items/{item_id}"  # type: ignore[arg-type]
    assert await resolve(app, "/outer/inner/api/items/3") == "/outer/inner/api/items/{item_id}"  # type: ignore[arg-type]
    paths = {(p["method"], p["path"]) for p in list_paths(app)}
    assert paths == {
        ("get", "/api/items/{item_id}"),
        ("get", "/v2/api/items/{item_id}"),
        ("get", "/outer/inner/api/items/{item_id}"),
    }


def test_list_paths_expands_mounts_and_skips_websockets() -> None:
    paths = {(p["method"], p["path"]) for p in list_paths(make_app())}
    assert paths == {
        ("get", "/"),
        ("get", "/items/{item_id:int}"),
        ("delete", "/items/{item_id:int}"),
        ("get", "/v1/users/{user_id:int}"),
        ("get", "/v1/users"),
        ("post", "/v1/users"),
        ("get", "/orgs/{org}/members"),
        ("get", "/hosted"),
    }


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
