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
Logging out drops the cookie and revokes its nonce in this process.

Forms that change anything carry a CSRF token: an HMAC of the session's nonce (or, before login
and when no token is configured, of the nonce in the ``apitally_hub_csrf`` cookie), checked on
POST together with the ``Origin`` header.

Without a token the dashboard has no login (the hub then serves reads on loopback only).

:meth:`Sessions.authenticates` is the read gate's credential check for the session cookie.
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

from apitally_hub.security.tokens import TokenSet
from apitally_hub.storage.base import Storage
from apitally_hub.storage.records import HUB_SETTINGS

SESSION_COOKIE = "apitally_hub_session"
CSRF_COOKIE = "apitally_hub_csrf"
SESSION_SECONDS = 12 * 3600
SECRET_SETTING = "dashboard_session_secret"
_VERSION = "v1"
_MAX_COOKIE = 256


def load_secret(storage: Storage, *, now: float) -> bytes:
    """The hub's session secret: created once, in the store, so every hub process agrees."""
    value = storage.put_app_setting(
        HUB_SETTINGS, SECRET_SETTING, secrets.token_hex(32), now=now, keep_existing=True
    )
    return bytes.fromhex(value)


@dataclass(frozen=True)
class Session:
    nonce: str
    expires: int


class Sessions:
    def __init__(self, tokens: TokenSet, secret: bytes, *, clock: Callable[[], float] = time.time) -> None:
        self._tokens = tokens
        self._secret = secret
        self._keys = tuple(
            hmac.new(secret, b"session|" + digest, hashlib.sha256).digest() for digest in tokens.digests
        )
        self._clock = clock
        self._revoked: dict[str, int] = {}
        self._lock = threading.Lock()

    @property
    def required(self) -> bool:
        """Whether pages need a session (a token is configured)."""
        return bool(self._tokens)

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
        return f"{_VERSION}.{expires}.{nonce}.{mac}", Session(nonce, expires)

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
        valid = False
        for key in self._keys:  # every key, no early exit
            valid |= hmac.compare_digest(self._mac(key, expires, nonce), mac)
        if not valid or expires < self._clock():
            return None
        with self._lock:
            if nonce in self._revoked:
                return None
        return Session(nonce, expires)

    def revoke(self, session: Session) -> None:
        now = self._clock()
        with self._lock:
            self._revoked = {n: e for n, e in self._revoked.items() if e >= now}  # bounded by expiry
            self._revoked[session.nonce] = session.expires

    def csrf_token(self, nonce: str) -> str:
        return hmac.new(self._secret, f"csrf|{nonce}".encode(), hashlib.sha256).hexdigest()

    def check_csrf(self, nonce: str | None, submitted: str | None) -> bool:
        if not nonce or not submitted:
            return False
        return hmac.compare_digest(self.csrf_token(nonce), submitted)

    def authenticates(self, headers: Headers) -> bool:
        """A credential check: the request carries a valid session cookie."""
        return self.verify(cookie_value(headers, SESSION_COOKIE)) is not None


def cookie_value(headers: Headers, name: str) -> str | None:
    return cookie_parser(headers.get("cookie", "")).get(name)


def new_nonce() -> str:
    return secrets.token_urlsafe(24)
