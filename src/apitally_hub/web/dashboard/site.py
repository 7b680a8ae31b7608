""":class:`Dashboard`: the guard around each page, sessions, rendering (the routes of every page
family: :mod:`.routes`).

Who may read is decided before: the hub's read gate (:mod:`apitally_hub.security.access`) lets
a page through with a bearer token or a session cookie (:meth:`Dashboard.authenticates`) and
sends a browser without either to ``/login``; it also refuses a viewer's POST (403). Pages show
write controls (``is_admin`` in templates) to admins only. The guard around each page then finds the
session (for logout and CSRF); for a POST it wants a same-origin ``Origin`` and a valid CSRF
token in a bounded urlencoded form;
security headers (a strict Content-Security-Policy: scripts and styles only from
``/static/``); ``Server-Timing`` with the page's server time; bad parameters and missing
things as HTML error pages. A page's data is gathered and its template rendered in one call on
a worker thread (the event loop never waits on the store).
"""

from __future__ import annotations

import functools
import importlib.metadata
import logging
import re
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlencode, urlsplit

import anyio
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from apitally_hub.errors import HubError
from apitally_hub.protocol.messages import is_valid_env
from apitally_hub.query.service import QueryService
from apitally_hub.security.access import Grant
from apitally_hub.security.attempts import FailureLimit
from apitally_hub.security.tokens import ADMIN, VIEWER
from apitally_hub.storage.records import AppKey
from apitally_hub.web.context import HubContext
from apitally_hub.web.dashboard import session as sessions_module
from apitally_hub.web.dashboard.session import CSRF_COOKIE, SESSION_COOKIE, Session, Sessions
from apitally_hub.web.dashboard.templating import create_environment
from apitally_hub.web.dashboard.views import NAV, View

if TYPE_CHECKING:
    import jinja2

_logger = logging.getLogger(__name__)

LOGIN_PATH = "/login"
MAX_FORM_BYTES = 16 * 1024
MAX_FORM_FIELDS = 64
"""Enough for the alert rule form: its fields and a checkbox for each of up to 20 channels."""
_NONCE_RE = re.compile(r"[A-Za-z0-9_-]{16,64}")

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
        " connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

PageHandler = Callable[["Dashboard", Request], Awaitable[Response]]


@dataclass
class Access:
    """Who is asking: their session (None without login) and the nonce their CSRF token binds."""

    session: Session | None
    nonce: str
    new_nonce: bool


class Dashboard:
    def __init__(self, context: HubContext) -> None:
        self.context = context
        self._templates: jinja2.Environment | None = None
        try:
            self._version = importlib.metadata.version("apitally-otel")
        except importlib.metadata.PackageNotFoundError:  # run from a source tree
            self._version = "dev"
        self._sessions: Sessions | None = None
        self._sessions_lock: anyio.Lock | None = None
        self.login_failures = FailureLimit(clock=context.clock)
        """Wrong login tokens, per client address and overall (:mod:`.pages.login` backs off)."""

    @property
    def templates(self) -> jinja2.Environment:
        """The Jinja2 environment, made on first use."""
        if self._templates is None:
            templates = create_environment()
            templates.globals.update(nav=NAV, static=self.static_url)
            self._templates = templates
        return self._templates

    # -- routes -------------------------------------------------------------------------------

    def page(
        self,
        path: str,
        handler: PageHandler,
        *,
        name: str,
        methods: Iterable[str] = ("GET",),
    ) -> Route:
        """A dashboard route: ``handler`` behind the guard."""

        async def endpoint(request: Request) -> Response:
            started = time.perf_counter()
            try:
                response = await self._guarded(request, handler)
            except HubError as exc:
                message = exc.message if hasattr(exc, "message") else str(exc.detail)
                response = await self.error_page(request, exc.status_code, message)
            except Exception:  # a bug or the store failing: an error page, the hub keeps serving
                _logger.exception("Dashboard page %s failed", request.url.path)
                response = await self.error_page(request, 500, "This page failed; the hub's log says why.")
            access: Access | None = getattr(request.state, "access", None)
            if access is not None and access.new_nonce:
                self.set_cookie(request, response, CSRF_COOKIE, access.nonce, max_age=None)
            for header, value in SECURITY_HEADERS.items():
                response.headers.setdefault(header, value)
            response.headers["Server-Timing"] = f"app;dur={(time.perf_counter() - started) * 1000:.1f}"
            return response

        return Route(path, endpoint, methods=list(methods), name=ROUTE_PREFIX + name)

    async def _guarded(self, request: Request, handler: PageHandler) -> Response:
        sessions = await self.sessions()
        access = self._access(request, sessions)
        request.state.access = access
        if request.method == "POST":
            request.state.form_lists = await self._checked_form(request, sessions, access)
            request.state.form = {key: values[-1] for key, values in request.state.form_lists.items()}
        return await handler(self, request)

    def _access(self, request: Request, sessions: Sessions) -> Access:
        session = sessions.verify(request.cookies.get(SESSION_COOKIE)) if sessions.required else None
        if session is not None:
            return Access(session, session.nonce, new_nonce=False)
        nonce = request.cookies.get(CSRF_COOKIE)
        if nonce and _NONCE_RE.fullmatch(nonce):
            return Access(None, nonce, new_nonce=False)
        return Access(None, sessions_module.new_nonce(), new_nonce=True)

    async def _checked_form(
        self, request: Request, sessions: Sessions, access: Access
    ) -> dict[str, list[str]]:
        """The form's fields, each with all its values (``request.state.form`` has the last of each;
        ``request.state.form_lists`` all, for checkboxes sharing a name)."""
        origin = request.headers.get("origin")
        if origin is not None and urlsplit(origin).netloc != request.headers.get("host"):
            raise HubError(403, "This form was sent from another site")
        if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
            raise HubError(403, "This form was sent from another site")
        if (
            request.headers.get("content-type", "").split(";")[0].strip()
            != "application/x-www-form-urlencoded"
        ):
            raise HubError(415, "Forms are sent as application/x-www-form-urlencoded")
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_FORM_BYTES:
                raise HubError(413, "The form is too large")
        try:
            fields = parse_qs(
                body.decode("utf-8"),
                keep_blank_values=True,
                max_num_fields=MAX_FORM_FIELDS,
                strict_parsing=False,
            )
        except (UnicodeDecodeError, ValueError):
            raise HubError(400, "The form could not be read") from None
        csrf = fields.get("csrf", [None])[-1]
        if access.new_nonce or not sessions.check_csrf(access.nonce, csrf):
            raise HubError(403, "The form has expired: reload the page and send it again")
        return fields

    # -- sessions -----------------------------------------------------------------------------

    public_paths = frozenset({LOGIN_PATH})
    """Paths the read gate lets through without a credential: the login form."""
    public_prefixes = ("/static/",)
    """And the static files (styles, scripts, the chart library: nothing of the hub's data)."""
    login_path = LOGIN_PATH

    async def start(self) -> None:
        """Load the session secret from the store (the app's lifespan calls this once it is open)."""
        await self.sessions()

    async def authenticates(self, headers: Headers) -> Grant | None:
        """The access gate's credential check: a valid, unrevoked session cookie (its grant)."""
        sessions = self._sessions
        if sessions is None or sessions.grant(headers) is None:
            return None
        if sessions.revocations_stale:  # another hub process may have revoked it
            store = self.context.store
            await self.context.run(lambda: sessions.load_revoked(store))
        return sessions.grant(headers)

    async def sessions(self) -> Sessions:
        """The session keeper, made on first use (the store holds its secret)."""
        if self._sessions is None:
            if self._sessions_lock is None:
                self._sessions_lock = anyio.Lock()
            async with self._sessions_lock:
                if self._sessions is None:
                    store, now = self.context.store, self.context.clock()
                    secret = await self.context.run(lambda: sessions_module.load_secret(store, now=now))
                    self._sessions = Sessions(self.context.tokens, secret, clock=self.context.clock)
        return self._sessions

    def set_cookie(
        self, request: Request, response: Response, name: str, value: str, *, max_age: int | None
    ) -> None:
        response.set_cookie(
            name,
            value,
            max_age=max_age,
            path="/",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )

    # -- rendering ----------------------------------------------------------------------------

    def static_url(self, path: str) -> str:
        """A static file's URL; the version in the query string makes browsers fetch it anew after an
        upgrade."""
        return f"/static/{path}?v={self._version}"

    async def render(
        self,
        request: Request,
        template: str,
        data: Callable[[QueryService], dict[str, Any]] | None = None,
        *,
        view: View | None = None,
        status_code: int = 200,
        **values: Any,
    ) -> HTMLResponse:
        """Render ``template`` with ``data(queries)`` — both on a worker thread."""
        queries = self.context.queries if data is not None else None
        access: Access | None = getattr(request.state, "access", None)
        sessions = self._sessions
        context: dict[str, Any] = {
            "request": request,
            "url": functools.partial(url, request),
            "view": view,
            "now": self.context.clock(),
            "csrf_token": sessions.csrf_token(access.nonce) if sessions and access else "",
            "logged_in": access is not None and access.session is not None,
            "is_admin": role_of(request, sessions) == ADMIN,
            "login_required": bool(sessions and sessions.required),
            **values,
        }
        compiled = self.templates.get_template(template)

        def work() -> str:
            if data is not None and queries is not None:
                context.update(data(queries))
            return compiled.render(context)

        html = await self.context.run(work)
        return HTMLResponse(html, status_code=status_code)

    async def error_page(self, request: Request, status_code: int, message: str) -> Response:
        try:
            return await self.render(
                request, "error.html", status_code=status_code, message=message, view=None
            )
        except Exception:  # the error page itself failed (e.g. the store is gone): plain text
            _logger.exception("Dashboard error page failed")
            return HTMLResponse("<!doctype html><title>Error</title><p>Error", status_code=status_code)

    def view(self, request: Request, **options: Any) -> View:
        return View.parse(request, self.context.clock(), **options)


def role_of(request: Request, sessions: Sessions | None) -> str:
    """The asker's role: admin without tokens, else their bearer token's or session's."""
    if sessions is None or not sessions.required:
        return ADMIN
    access: Access | None = getattr(request.state, "access", None)
    if access is not None and access.session is not None:
        return access.session.role
    return sessions.bearer_role(request.headers.get("authorization")) or VIEWER


ROUTE_PREFIX = "dashboard:"
"""The dashboard's route names are ``dashboard:<page>``, apart from every other route's."""


def url(request: Request, name: str, **path_params: Any) -> str:
    """The path of the dashboard page ``name``."""
    return str(request.app.url_path_for(ROUTE_PREFIX + name, **path_params))


def app_path(request: Request, name: str, app: AppKey, **query: str | int | None) -> str:
    path = url(request, name, client_id=app.client_id, env=app.env)
    clean = {k: str(v) for k, v in query.items() if v is not None and v != ""}
    return path + ("?" + urlencode(clean) if clean else "")


def env_switch(request: Request, view: View, name: str) -> Response | None:
    """The env picker: a redirect to page ``name`` of the env asked for, keeping the query."""
    env = request.query_params.get("env")
    if view.app is None or not env or env == view.app.env or not is_valid_env(env):
        return None
    query = {k: v for k, v in request.query_params.items() if k not in ("env", "cursor")}
    return RedirectResponse(
        app_path(request, name, AppKey(view.app.client_id, env), **query), status_code=303
    )
