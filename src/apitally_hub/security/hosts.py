"""The Host check (against DNS rebinding) and the rule that only loopback may go without a token.

DNS rebinding: a web page on ``evil.example`` re-resolves its own name to 127.0.0.1 and then
reads the hub from the victim's browser, same-origin. The browser still sends
``Host: evil.example``, so the hub answers only requests whose ``Host`` names it: the loopback
names (``localhost``, ``127.0.0.1``, ``[::1]`` and any other loopback address, with any port),
the address it is bound to, and the ``--allowed-host`` values — ``.example.com`` allows
``example.com`` and every subdomain, ``*`` turns the check off. Anything else gets **421
Misdirected Request** (the request reached a server that does not serve that authority), with a
JSON ``detail`` naming the host and the flag. ``/health`` is exempt, so that probes which
address the hub by an IP of their own keep working; it tells nothing.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import Iterable, Sequence

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from apitally_hub.log_throttle import LogThrottle

_logger = logging.getLogger(__name__)

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
WILDCARD_ADDRESSES = frozenset({"", "0.0.0.0", "::"})
EXEMPT_PATHS = frozenset({"/health"})


class InsecureBindError(ValueError):
    """A non-loopback bind without a read token: anyone on the network could read everything."""


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return None


def is_loopback_host(host: str) -> bool:
    """True when binding ``host`` listens on loopback only (a name must resolve to loopback only)."""
    host = host.strip().lower().rstrip(".")
    if host == "localhost":
        return True
    address = _ip(host)
    if address is not None:
        return address.is_loopback
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return False
    addresses = [_ip(str(info[4][0])) for info in infos]
    return bool(addresses) and all(a is not None and a.is_loopback for a in addresses)


def require_token_off_loopback(host: str, tokens: Sequence[str]) -> None:
    if not tokens and not is_loopback_host(host):
        raise InsecureBindError(
            f"refusing to serve on {host!r} without a read token: set --token (or --token-file,"
            " APITALLY_HUB_TOKEN) so that reads need one, or bind 127.0.0.1"
        )


def host_name(header: str | None) -> str | None:
    """The name in a ``Host`` header (lower case; no port, brackets or trailing dot), or None."""
    if not header:
        return None
    value = header.strip().lower()
    if value.startswith("["):
        name, bracket, rest = value[1:].partition("]")
        if not bracket or (rest and not (rest.startswith(":") and rest[1:].isdigit())):
            return None
        return name if _ip(name) is not None else None
    name, colon, port = value.partition(":")
    if colon and not (port.isascii() and port.isdigit()):
        return None
    name = name.rstrip(".")
    return name or None


class HostPolicy:
    def __init__(self, allowed: Iterable[str] = ()) -> None:
        """``allowed``: extra host names (``hub.example.com``), suffixes (``.example.com``) or ``*``;
        wildcard bind addresses (``0.0.0.0``, ``::``) are ignored."""
        self.any_host = False
        self.names = set(LOOPBACK_NAMES)
        self.suffixes: list[str] = []
        for raw in allowed:
            value = raw.strip().lower()
            if value == "*":
                self.any_host = True
            elif value.startswith("."):
                self.suffixes.append(value.rstrip("."))
            elif value.strip("[]") not in WILDCARD_ADDRESSES:
                name = host_name(value) or host_name(f"[{value}]")
                if name is None:
                    raise ValueError(f"{raw!r} is not a host name")
                self.names.add(name)

    def allows(self, header: str | None) -> bool:
        if self.any_host:
            return True
        name = host_name(header)
        if name is None:
            return False
        if name in self.names:
            return True
        address = _ip(name)
        if address is not None and address.is_loopback:
            return True
        return any(name == suffix[1:] or name.endswith(suffix) for suffix in self.suffixes)


class HostCheckMiddleware:
    """Pure ASGI: 421 for a ``Host`` that the :class:`HostPolicy` does not allow."""

    def __init__(self, app: ASGIApp, policy: HostPolicy, log: LogThrottle | None = None) -> None:
        self.app = app
        self.policy = policy
        self.log = log or LogThrottle(_logger)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or scope["path"] in EXEMPT_PATHS:
            await self.app(scope, receive, send)
            return
        host = Headers(scope=scope).get("host")
        if self.policy.allows(host):
            await self.app(scope, receive, send)
            return
        self.log.warning("host", "Refused a request for Host %r (not an allowed host)", (host or "")[:200])
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        shown = repr(host[:100]) if host else "(none)"
        response = JSONResponse(
            {
                "detail": f"Host {shown} is not an allowed host of this hub; the operator can allow it"
                " with --allowed-host"
            },
            status_code=421,
        )
        await response(scope, receive, send)
