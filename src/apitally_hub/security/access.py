"""The read gate: every request needs a credential unless its path is public.

Public: ``/health`` and the ingest endpoints under ``/v2/`` (the protocol's own addressing: the
client id in the path, plus the ``--client-id`` allow-list). Everything else — the query API under
``/api/`` and whatever is added later (the dashboard) — is denied by default and needs
``Authorization: Bearer <token>``, compared in constant time (:class:`~.tokens.TokenSet`).

With no token configured the gate is open: the hub then refuses to bind anything but loopback
(:func:`~.hosts.require_token_off_loopback`), so only local users can read.

:class:`Authenticator` is the one place that decides; the dashboard extends it with its own
credential (an HttpOnly session cookie) through ``credential_checks``, adds its login page and
static files to ``public_paths`` / ``public_prefixes``, and sets ``login_path``: a refused page
read outside the API is then redirected (303) to the login page instead of answered with 401.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from urllib.parse import urlencode

from starlette.datastructures import Headers
from starlette.responses import JSONResponse, RedirectResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from apitally_hub.log_throttle import LogThrottle
from apitally_hub.security.tokens import TokenSet

_logger = logging.getLogger(__name__)

PUBLIC_PATHS = frozenset({"/health"})
PUBLIC_PREFIXES = ("/v2/",)
API_PREFIXES = ("/api/",)
"""Refused requests here get 401; a refused page read elsewhere is sent to the login page."""

CredentialCheck = Callable[[Headers], bool]
"""Another way to authenticate (e.g. a session cookie); called with the request headers."""


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

    def authenticate(self, scope: Scope) -> bool:
        """True when the request carries a valid credential (a bearer token, or another check's)."""
        headers = Headers(scope=scope)
        if self.tokens.matches_authorization(headers.get("authorization")):
            return True
        return any(check(headers) for check in self.credential_checks)

    def allows(self, scope: Scope) -> bool:
        return not self.required or self.is_public(scope["path"]) or self.authenticate(scope)


class AccessMiddleware:
    """Pure ASGI: answers 401 (``WWW-Authenticate: Bearer``) to requests the authenticator refuses,
    or redirects them to the login page (see :meth:`Authenticator.login_redirect`)."""

    def __init__(self, app: ASGIApp, authenticator: Authenticator, log: LogThrottle | None = None) -> None:
        self.app = app
        self.authenticator = authenticator
        self.log = log or LogThrottle(_logger)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or self.authenticator.allows(scope):
            await self.app(scope, receive, send)
            return
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
