"""Dashboard login: a hub token, typed once into a form, becomes a session cookie.

With read tokens configured (``--token``, :class:`~apitally_hub.security.tokens.TokenSet`), every
page needs a credential — the hub's read gate (:mod:`apitally_hub.security.access`) accepts a
session cookie as well as a bearer token and sends a browser without either to ``/login``. The
login form takes a token — compared with every configured token in constant time — and sets
``apitally_hub_session``: ``v1.<expires>.<nonce>.<mac>``, where the MAC is an HMAC-SHA256 under
a key derived from the hub's session secret and the token that logged in. The cookie carries no
token (in clear or hashed); removing a token from the configuration ends its sessions; a cookie
is valid on every hub process sharing the store (the secret is kept there, see
:func:`load_secret`) and survives restarts. It is ``HttpOnly``, ``SameSite=Strict``, ``Path=/``
and ``Secure`` when the page was served over https; it expires after :data:`SESSION_SECONDS`.
Logging out drops the cookie and revokes its nonce: the revocation is kept in the store (a hub
setting ``revoked_session:<nonce>`` until the session would have expired), so it survives restarts
and every hub process honours it (each reloads the revocations at most every
:data:`REVOKED_REFRESH_SECONDS`, and at once after its own logouts). A session carries the role
(admin or viewer) of the token it was made from.

Forms that change anything carry a CSRF token: an HMAC of the session's nonce (or, before login
and when no token is configured, of the nonce in the ``apitally_hub_csrf`` cookie), checked on
POST together with the ``Origin`` header. The same token, in the ``X-Apitally-CSRF`` header, is
what lets a session write to the JSON API (:mod:`apitally_hub.security.access`).

Without a token the dashboard has no login (the hub then serves reads on loopback only).

:meth:`Sessions.grant` is the access gate's credential check for the session cookie.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from starlette.datastructures import Headers
from starlette.requests import cookie_parser

from apitally_hub.security.access import CSRF_HEADER, Grant
from apitally_hub.security.tokens import ADMIN, Role, TokenSet
from apitally_hub.storage.base import Storage
from apitally_hub.storage.records import HUB_SETTINGS

SESSION_COOKIE = "apitally_hub_session"
CSRF_COOKIE = "apitally_hub_csrf"
SESSION_SECONDS = 12 * 3600
SECRET_SETTING = "dashboard_session_secret"
_VERSION = "v1"
_MAX_COOKIE = 256
REVOKED_PREFIX = "revoked_session:"
REVOKED_REFRESH_SECONDS = 1.0


def load_secret(storage: Storage, *, now: float) -> bytes:
    """The hub's session secret: created once, in the store, so every hub process agrees."""
    value = storage.put_app_setting(
        HUB_SETTINGS, SECRET_SETTING, secrets.token_hex(32), now=now, keep_existing=True
    )
    return bytes.fromhex(value)


def revoked_sessions(storage: Storage) -> dict[str, int]:
    """The revoked sessions' nonces and expiry times, from the store."""
    found = {}
    for name, value in storage.app_settings(HUB_SETTINGS).items():
        if name.startswith(REVOKED_PREFIX) and value.isdigit():
            found[name[len(REVOKED_PREFIX) :]] = int(value)
    return found


@dataclass(frozen=True)
class Session:
    nonce: str
    expires: int
    role: Role = ADMIN


class Sessions:
    def __init__(
        self,
        tokens: TokenSet,
        secret: bytes,
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._tokens = tokens
        self._secret = secret
        self._keys = tuple(
            hmac.new(secret, b"session|" + digest, hashlib.sha256).digest() for digest in tokens.digests
        )
        self._clock = clock
        self._revoked: dict[str, int] = {}
        self._monotonic = monotonic
        self._loaded_at: float | None = None
        self._lock = threading.Lock()

    @property
    def required(self) -> bool:
        """Whether pages need a session (a token is configured)."""
        return bool(self._tokens)

    def bearer_role(self, header: str | None) -> Role | None:
        """The role of an ``Authorization: Bearer`` header's token (None: not one of the hub's)."""
        return self._tokens.authorization_role(header)

    def token_index(self, candidate: str) -> int | None:
        """Which configured token ``candidate`` is (constant time, see :class:`TokenSet`)."""
        return self._tokens.index(candidate)

    def _mac(self, key: bytes, expires: int, nonce: str) -> str:
        return hmac.new(key, f"{_VERSION}.{expires}.{nonce}".encode(), hashlib.sha256).hexdigest()

    def issue(self, token_index: int) -> tuple[str, Session]:
        """A new session for the token at ``token_index``: (cookie value, session)."""
        expires = int(self._clock()) + SESSION_SECONDS
        nonce = secrets.token_urlsafe(24)
        mac = self._mac(self._keys[token_index], expires, nonce)
        return f"{_VERSION}.{expires}.{nonce}.{mac}", Session(nonce, expires, self._tokens.role(token_index))

    def verify(self, cookie: str | None) -> Session | None:
        """The session of a cookie value, or None (malformed, forged, expired, revoked, or made
        with a token that is no longer configured)."""
        if not cookie or len(cookie) > _MAX_COOKIE:
            return None
        parts = cookie.split(".")
        if len(parts) != 4 or parts[0] != _VERSION or not parts[1].isdigit():
            return None
        _, raw_expires, nonce, mac = parts
        expires = int(raw_expires)
        found = None
        for index, key in enumerate(self._keys):  # every key, no early exit
            if hmac.compare_digest(self._mac(key, expires, nonce), mac):
                found = index
        if found is None or expires < self._clock():
            return None
        with self._lock:
            if nonce in self._revoked:
                return None
        return Session(nonce, expires, self._tokens.role(found))

    @property
    def revocations_stale(self) -> bool:
        """Whether the revocations should be reloaded from the store (another process may have
        added some)."""
        loaded = self._loaded_at
        return loaded is None or self._monotonic() - loaded >= REVOKED_REFRESH_SECONDS

    def load_revoked(self, storage: Storage) -> None:
        """Reload the revocations from the store (blocking: on a worker thread)."""
        with self._lock:
            self._loaded_at = self._monotonic()  # concurrent requests do not all reload
        revoked = revoked_sessions(storage)
        with self._lock:
            self._revoked = revoked

    def revoke(self, session: Session, storage: Storage) -> None:
        """Revoke ``session`` in the store and here; drop revocations past their expiry (blocking)."""
        now = self._clock()
        with self._lock:
            self._revoked[session.nonce] = session.expires
        storage.put_app_setting(HUB_SETTINGS, REVOKED_PREFIX + session.nonce, str(session.expires), now=now)
        for nonce, expires in revoked_sessions(storage).items():
            if expires < now:  # an expired session is refused anyway
                storage.delete_app_setting(HUB_SETTINGS, REVOKED_PREFIX + nonce)
        self.load_revoked(storage)

    def csrf_token(self, nonce: str) -> str:
        return hmac.new(self._secret, f"csrf|{nonce}".encode(), hashlib.sha256).hexdigest()

    def check_csrf(self, nonce: str | None, submitted: str | None) -> bool:
        if not nonce or not submitted:
            return False
        return hmac.compare_digest(self.csrf_token(nonce), submitted)

    def grant(self, headers: Headers) -> Grant | None:
        """A credential check: the request's valid session cookie (its role, and whether the
        request carries the session's CSRF header), or None."""
        session = self.verify(cookie_value(headers, SESSION_COOKIE))
        if session is None:
            return None
        return Grant(session.role, csrf=self.check_csrf(session.nonce, headers.get(CSRF_HEADER)))


def cookie_value(headers: Headers, name: str) -> str | None:
    return cookie_parser(headers.get("cookie", "")).get(name)


def new_nonce() -> str:
    return secrets.token_urlsafe(24)
