"""Which URLs the hub agrees to call for notifications and health checks.

Trust model: channels, rules and health checks are configured by holders of the hub's token (or,
without one, by local users): the same people who can read all the data. They can point the hub
at any http(s) address they choose — also an internal one — so the hub limits what such a call
can do rather than where it goes: only ``http``/``https`` (no ``file:``, ``gopher:``, ``ftp:``,
...), no credentials in the URL (``user:password@``: they would be sent as Basic auth and shown
wherever the URL is), for channels and health checks alike, no redirects followed (webhooks)
or only to the same host (health checks), and the response body of a call is never shown back
(a test notification reports the status code only), so the hub cannot be used to read internal
pages. Every channel change is logged with its target host.
"""

from __future__ import annotations

import re

import httpx

SCHEMES = ("http", "https")


def url_problem(url: str) -> str | None:
    """Why ``url`` is not acceptable as a channel or health-check target, or None."""
    if any(c.isspace() or ord(c) < 32 for c in url):
        return "Should be a URL without spaces or control characters"
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError):
        return "Should be a valid URL"
    if parsed.scheme not in SCHEMES:
        return "Should be an http:// or https:// URL"
    if not parsed.host:
        return "Should name a host"
    authority = re.split(r"[/?#]", url.split("//", 1)[-1], maxsplit=1)[0]
    if parsed.userinfo or "@" in authority:
        return "Should not carry credentials (user:password@): use the channel's headers or secret instead"
    return None


def target_host(url: str) -> str:
    """The host and port of ``url``, for log lines (never its path, query or credentials)."""
    parsed = httpx.URL(url)
    return f"{parsed.host}:{parsed.port}" if parsed.port else parsed.host


def same_origin(a: httpx.URL, b: httpx.URL) -> bool:
    """A redirect a health check may follow: the same host, and the same scheme or an upgrade to
    https."""
    upgrade = a.scheme == "http" and b.scheme == "https"
    return a.host == b.host and (a.scheme == b.scheme or upgrade) and (a.port == b.port or upgrade)
