"""The access gate: every request needs a credential unless its path is public, and a write
needs an admin's credential.

Public: ``/health`` and the ingest endpoints under ``/v2/`` (the protocol's own addressing: the
client id in the path, plus the ``--client-id`` allow-list) and ``/v1/`` (OTLP: an app's write
token, checked by the endpoint itself). Everything else — the query API under
``/api/`` and whatever is added later (the dashboard) — is denied by default and needs
``Authorization: Bearer <token>``, compared in constant time (:class:`~.tokens.TokenSet`).

With no token configured the gate is open: the hub then refuses to bind anything but loopback
(:func:`~.hosts.require_token_off_loopback`), so only local users can read.

:class:`Authenticator` is the one place that decides; the dashboard extends it with its own
credential (an HttpOnly session cookie) through ``credential_checks``, adds its login page and
static files to ``public_paths`` / ``public_prefixes``, and sets ``login_path``: a refused page
read outside the API is then redirected (303) to the login page instead of answered with 401.

Roles (:mod:`.tokens`): a credential is an admin's or a viewer's (a session carries the role of
the token it was made from). A **write** is every request but GET/HEAD under ``/api/`` and every
POST elsewhere except ``/login`` and ``/logout`` (the dashboard's forms); a viewer's write is
refused with 403, whatever the page showed. Ingest (``/v2/``, ``/v1/``) is public and not gated by
roles.
With no token configured everything is allowed (as an admin).

Writes under ``/api/`` are also guarded against cross-site requests, token or not: a body must be
``Content-Type: application/json`` (415; a browser cannot send that cross-origin without a
CORS preflight, which the hub never grants; only a tool, sending neither ``Origin`` nor
``Sec-Fetch-Site``, may leave the type out), an ``Origin`` header must be this hub's (the
``Host``), and ``Sec-Fetch-Site`` must not be ``cross-site`` or ``same-site`` (another port of
the same host is the same site to a browser, and ``SameSite=Strict`` cookies go there) (403).
And the session cookie alone never authorizes such a write: it needs the dashboard's CSRF header
(:data:`CSRF_HEADER`, see :meth:`Grant.csrf`) or a bearer token.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

from starlette.datastructures import Headers
from starlette.responses import JSONResponse, RedirectResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from apitally_hub.log_throttle import LogThrottle
from apitally_hub.security.tokens import ADMIN, Role, TokenSet

_logger = logging.getLogger(__name__)

PUBLIC_PATHS = frozenset({"/health"})
PUBLIC_PREFIXES = ("/v2/", "/v1/")
API_PREFIXES = ("/api/",)
"""Refused requests here get 401; a refused page read elsewhere is sent to the login page."""

CSRF_HEADER = "X-Apitally-CSRF"
"""With a session cookie (no bearer token), an ``/api`` write needs this header: the session's
CSRF token (the dashboard's pages carry it in ``<meta name="apitally-csrf">``)."""
FORM_PATHS = frozenset({"/login", "/logout"})
"""Dashboard POSTs that are not writes (anyone may log in or out)."""
SAFE_METHODS = frozenset({"GET", "HEAD"})


@dataclass(frozen=True)
class Grant:
    """Who a credential is: its role, and whether the request proves it was sent on purpose
    (a bearer token, or a session cookie with its CSRF header) — needed for ``/api`` writes."""

    role: Role
    csrf: bool = True


OPEN = Grant(ADMIN)
"""No token configured: everyone may do everything (the hub binds loopback only)."""

CredentialCheck = Callable[[Headers], Awaitable[Grant | None]]
"""Another way to authenticate (e.g. a session cookie); called with the request headers."""


def same_origin(headers: Headers) -> bool:
    """False for a request a browser says comes from another site or origin (``Origin`` not this
    hub's ``Host``, ``Sec-Fetch-Site: cross-site|same-site``); True otherwise (tools send neither)."""
    origin = headers.get("origin")
    if origin is not None and (origin == "null" or urlsplit(origin).netloc != headers.get("host")):
        return False
    return headers.get("sec-fetch-site", "same-origin") in ("same-origin", "none")


def is_json_or_empty(headers: Headers) -> bool:
    """Whether the body is JSON, or there is none (a DELETE, a ``POST .../test``)."""
    content_type = headers.get("content-type")
    if content_type is None:
        return "transfer-encoding" not in headers and headers.get("content-length", "0").strip() == "0"
    return content_type.split(";")[0].strip().lower() == "application/json"


class Authenticator:
    def __init__(
        self,
        tokens: TokenSet,
        *,
        public_paths: Iterable[str] = PUBLIC_PATHS,
        public_prefixes: Iterable[str] = PUBLIC_PREFIXES,
        credential_checks: Sequence[CredentialCheck] = (),
        login_path: str | None = None,
        api_prefixes: Iterable[str] = API_PREFIXES,
    ) -> None:
        self.tokens = tokens
        self.public_paths = frozenset(public_paths)
        self.public_prefixes = tuple(public_prefixes)
        self.credential_checks = tuple(credential_checks)
        self.login_path = login_path
        self.api_prefixes = tuple(api_prefixes)

    def login_redirect(self, scope: Scope) -> str | None:
        """Where to send a refused browser: the login page for a page read (GET or HEAD outside
        the API) when there is one, with ``next`` = the page; None: answer 401."""
        if self.login_path is None or scope.get("method") not in ("GET", "HEAD"):
            return None
        path = scope["path"]
        if path.startswith(self.api_prefixes):
            return None
        query = scope.get("query_string", b"").decode("latin-1")
        target = path + (f"?{query}" if query else "")
        return self.login_path + ("?" + urlencode({"next": target}) if target != "/" else "")

    @property
    def required(self) -> bool:
        """Whether reads need a credential at all (a token is configured)."""
        return bool(self.tokens)

    def is_public(self, path: str) -> bool:
        return path in self.public_paths or path.startswith(self.public_prefixes)

    def is_write(self, scope: Scope) -> bool:
        """Whether the request changes something (see the module's docstring)."""
        method, path = scope.get("method", "GET"), scope["path"]
        if method in SAFE_METHODS:
            return False
        if path.startswith(self.api_prefixes):
            return True
        return not self.is_public(path) and path not in FORM_PATHS  # ingest (/v2/): not gated

    def is_api_write(self, scope: Scope) -> bool:
        return scope.get("method", "GET") not in SAFE_METHODS and scope["path"].startswith(self.api_prefixes)

    async def authenticate(self, scope: Scope) -> Grant | None:
        """The request's credential (a bearer token, or another check's), or None."""
        headers = Headers(scope=scope)
        role = self.tokens.authorization_role(headers.get("authorization"))
        if role is not None:
            return Grant(role)
        for check in self.credential_checks:
            grant = await check(headers)
            if grant is not None:
                return grant
        return None

    async def grant(self, scope: Scope) -> Grant | None:
        """What the request may do: :data:`OPEN` without tokens or on a public path, else its
        credential's grant (None: refused)."""
        if not self.required or self.is_public(scope["path"]):
            return OPEN
        return await self.authenticate(scope)


class AccessMiddleware:
    """Pure ASGI: answers 401 (``WWW-Authenticate: Bearer``) to requests the authenticator refuses,
    or redirects them to the login page (see :meth:`Authenticator.login_redirect`); 403 to a
    viewer's write, to a cross-site ``/api`` write and to one with only a session cookie; 415 to
    an ``/api`` write that is not JSON."""

    def __init__(self, app: ASGIApp, authenticator: Authenticator, log: LogThrottle | None = None) -> None:
        self.app = app
        self.authenticator = authenticator
        self.log = log or LogThrottle(_logger)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        authenticator = self.authenticator
        refusal = None
        if scope["type"] == "http" and authenticator.is_api_write(scope):
            refusal = self._cross_site(scope)
        if refusal is None:
            grant = await authenticator.grant(scope)
            if grant is None:
                await self._unauthenticated(scope, receive, send)
                return
            if grant.role != ADMIN and authenticator.is_write(scope):
                refusal = (403, "This token may only read: changes need an admin token")
            elif not grant.csrf and authenticator.is_api_write(scope):
                refusal = (403, f"With a session cookie, API writes need the {CSRF_HEADER} header")
        if refusal is None:
            await self.app(scope, receive, send)
            return
        status, detail = refusal
        client = scope.get("client") or ("?", 0)
        self.log.warning(
            "write-refused" if status == 403 else "write-not-json",
            "Refused %s %r from %s: %s",
            scope.get("method"),
            scope["path"][:200],
            client[0],
            detail,
        )
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        await JSONResponse({"detail": detail}, status_code=status)(scope, receive, send)

    def _cross_site(self, scope: Scope) -> tuple[int, str] | None:
        headers = Headers(scope=scope)
        if not same_origin(headers):
            return 403, "Cross-site writes are refused"
        if not is_json_or_empty(headers):
            return 415, "Writes are sent as Content-Type: application/json"
        return None

    async def _unauthenticated(self, scope: Scope, receive: Receive, send: Send) -> None:
        login = self.authenticator.login_redirect(scope)
        if login is not None:  # a browser without a session: the normal way to the login page
            await RedirectResponse(login, status_code=303)(scope, receive, send)
            return
        sent = "authorization" in Headers(scope=scope)
        client = scope.get("client") or ("?", 0)
        self.log.warning(
            "auth",
            "Refused %s %r from %s: %s",
            scope.get("method", "WEBSOCKET"),
            scope["path"][:200],
            client[0],
            "wrong credentials" if sent else "no credentials",
        )
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        error = ', error="invalid_token"' if sent else ""
        response = JSONResponse(
            {"detail": "Authentication required: send Authorization: Bearer <token>"},
            status_code=401,
            headers={"WWW-Authenticate": f'Bearer realm="apitally-hub"{error}'},
        )
        await response(scope, receive, send)
