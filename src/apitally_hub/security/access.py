"""The read gate: every request needs a credential unless its path is public.

Public: ``/health`` and the ingest endpoints under ``/v2/`` (the protocol's own addressing: the
client id in the path, plus the ``--client-id`` allow-list). Everything else — the query API under
``/api/`` and whatever is added later (the dashboard) — is denied by default and needs
``Authorization: Bearer <token>``, compared in constant time (:class:`~.tokens.TokenSet`).

With no token configured the gate is open: the hub then refuses to bind anything but loopback
(:func:`~.hosts.require_token_off_loopback`), so only local users can read.

:class:`Authenticator` is the one place that decides; the dashboard extends it with its own
credential (an HttpOnly session cookie) through ``credential_checks`` and adds its login page and
static files to ``public_paths`` / ``public_prefixes``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from apitally_hub.log_throttle import LogThrottle
from apitally_hub.security.tokens import TokenSet

_logger = logging.getLogger(__name__)

PUBLIC_PATHS = frozenset({"/health"})
PUBLIC_PREFIXES = ("/v2/",)

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
    ) -> None:
        self.tokens = tokens
        self.public_paths = frozenset(public_paths)
        self.public_prefixes = tuple(public_prefixes)
        self.credential_checks = tuple(credential_checks)

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
    """Pure ASGI: answers 401 (``WWW-Authenticate: Bearer``) to requests the authenticator refuses."""

    def __init__(self, app: ASGIApp, authenticator: Authenticator, log: LogThrottle | None = None) -> None:
        self.app = app
        self.authenticator = authenticator
        self.log = log or LogThrottle(_logger)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or self.authenticator.allows(scope):
            await self.app(scope, receive, send)
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
