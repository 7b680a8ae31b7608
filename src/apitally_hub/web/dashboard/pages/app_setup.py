"""The apps registry in the dashboard: the new-app form (``/apps/new``), and one app's setup
instructions page (``/apps/{client_id}``) — its client id, the hub's URL, snippets for each way in
(OpenTelemetry's OTLP too), whether each env's data has arrived — with, for admins, its write tokens
(create another, revoke one) and the forms that rename it, change its framework and envs, or delete
it with all its data (typing its name to confirm). Write tokens are secrets: a viewer sees none,
and the OTLP snippets a placeholder.

Forms are validated by the JSON API's function (:func:`~apitally_hub.query.app_registry.parse_app_fields`);
their errors are shown next to their fields.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from apitally_hub.errors import HubError
from apitally_hub.protocol.messages import normalize_client_id
from apitally_hub.query import app_registry
from apitally_hub.query.app_registry import InvalidApp
from apitally_hub.security.tokens import ADMIN
from apitally_hub.storage.records import FRAMEWORKS
from apitally_hub.web.apps_api import ALLOW_LIST_REFUSAL
from apitally_hub.web.dashboard.site import Dashboard, role_of, url

FORM_FIELDS = ("name", "framework", "envs")
TOKEN_PLACEHOLDER = "<write token>"
TOKEN_NOTICES = {"created": "Write token created.", "revoked": "Write token revoked."}


def _form_values(form: dict[str, str]) -> dict[str, str]:
    return {key: form.get(key, "") for key in FORM_FIELDS}


async def new_app(dash: Dashboard, request: Request) -> Response:
    return await _render_form(dash, request, {"name": "", "framework": "fastapi", "envs": "prod dev"}, {})


async def _render_form(
    dash: Dashboard, request: Request, values: dict[str, str], errors: dict[str, str], status_code: int = 200
) -> Response:
    return await dash.render(
        request,
        "app_new.html",
        values=values,
        errors=errors,
        frameworks=FRAMEWORKS,
        allow_list=dash.context.config.client_ids is not None,
        status_code=status_code,
    )


async def create_app(dash: Dashboard, request: Request) -> Response:
    values = _form_values(request.state.form)
    if dash.context.config.client_ids is not None:
        raise HubError(409, ALLOW_LIST_REFUSAL)
    store, now = dash.context.store, dash.context.clock()
    try:
        record, _ = await dash.context.run(lambda: app_registry.create_app(store, values, now=now))
    except InvalidApp as exc:
        return await _render_form(dash, request, values, exc.by_field(), status_code=422)
    return RedirectResponse(url(request, "app_setup", client_id=record.client_id), status_code=303)


def _client_id(dash: Dashboard, request: Request) -> str:
    client_id = normalize_client_id(request.path_params["client_id"])
    if client_id is None or not dash.context.config.is_allowed(client_id):
        raise HubError(404, "No such app")
    return client_id


async def setup(dash: Dashboard, request: Request) -> Response:
    return await _render_setup(dash, request, _client_id(dash, request))


async def _render_setup(
    dash: Dashboard,
    request: Request,
    client_id: str,
    *,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    store = dash.context.store
    is_admin = role_of(request, await dash.sessions()) == ADMIN
    app = await dash.context.run(lambda: app_registry.app_view(store, client_id, with_tokens=is_admin))
    if app is None:
        raise HubError(404, "No such app")
    tokens = app.get("write_tokens", [])
    active = [token["token"] for token in tokens if token["revoked_at"] is None]
    env_names = [env["env"] for env in app["envs"]]
    chosen = request.query_params.get("env")
    env = chosen if chosen in env_names else env_names[0]
    if values is None:
        values = {
            "name": app["name"] or "",
            "framework": app["framework"] or "other",
            "envs": " ".join(env for env in env_names),
        }
    return await dash.render(
        request,
        "app_setup.html",
        app=app,
        env=env,
        hub_url=str(request.base_url).rstrip("/"),
        values=values,
        errors=errors or {},
        frameworks=FRAMEWORKS,
        saved=request.query_params.get("saved"),
        token_notice=TOKEN_NOTICES.get(request.query_params.get("token", "")),
        write_tokens=tokens,
        active_token=bool(active),
        snippet_token=active[-1] if active else TOKEN_PLACEHOLDER,
        status_code=status_code,
    )


async def change_app(dash: Dashboard, request: Request) -> Response:
    client_id = _client_id(dash, request)
    form = request.state.form
    store, now = dash.context.store, dash.context.clock()
    setup_url = url(request, "app_setup", client_id=client_id)
    if form.get("action") == "create_write_token":
        token = await dash.context.run(lambda: app_registry.create_write_token(store, client_id, now=now))
        if token is None:
            raise HubError(404, "No such app")
        return RedirectResponse(setup_url + "?token=created#write-tokens", status_code=303)
    if form.get("action") == "revoke_write_token":
        value = form.get("token", "")
        revoked = await dash.context.run(
            lambda: app_registry.revoke_write_token(store, client_id, value, now=now)
        )
        if revoked is None:
            raise HubError(404, "No such write token")
        dash.context.write_tokens.clear()  # refused at once by this process
        return RedirectResponse(setup_url + "?token=revoked#write-tokens", status_code=303)
    if form.get("action") == "delete":
        app = await dash.context.run(lambda: app_registry.app_view(store, client_id))
        if app is None:
            raise HubError(404, "No such app")
        expected = app["name"] or client_id
        if form.get("confirm", "").strip() != expected:
            errors = {"confirm": f"Type {expected!r} to delete this app"}
            return await _render_setup(dash, request, client_id, errors=errors, status_code=422)
        await dash.context.run(lambda: app_registry.delete_app(store, client_id))
        dash.context.write_tokens.clear()  # its write tokens are gone
        return RedirectResponse(url(request, "apps") + "?deleted=1", status_code=303)
    values = _form_values(form)
    try:
        found = await dash.context.run(lambda: app_registry.update_app(store, client_id, values, now=now))
    except InvalidApp as exc:
        return await _render_setup(
            dash, request, client_id, values=values, errors=exc.by_field(), status_code=422
        )
    if found is None:
        raise HubError(404, "No such app")
    return RedirectResponse(setup_url + "?saved=1", status_code=303)


def routes(dash: Dashboard) -> list[Route]:
    return [
        dash.page("/apps/new", new_app, name="app_new"),
        dash.page("/apps/new", create_app, name="app_create", methods=("POST",)),
        dash.page("/apps/{client_id}", setup, name="app_setup"),
        dash.page("/apps/{client_id}", change_app, name="app_change", methods=("POST",)),
    ]
