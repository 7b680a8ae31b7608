"""What the API and the pages show of a channel's settings: no secret.

Secrets are hidden (:func:`~apitally_hub.alerting.validation.public_config`: ``secret`` and
``password`` become ``secret_set`` / ``password_set``), a URL keeps only its scheme and host
(the path and query string of a Slack, Teams or webhook URL often *are* the credential), and
webhook header values are replaced by :data:`MASK`. A PUT or PATCH that sends a masked value back
keeps the stored one (:func:`unmask_channel_body`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from apitally_hub.alerting.validation import public_config

MASK = "********"


def mask_url(url: str) -> str:
    """``https://hooks.slack.com/services/T/B/x`` -> ``https://hooks.slack.com/********``."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError:
        return MASK
    if not parts.scheme or host is None:
        return MASK
    if ":" in host:
        host = f"[{host}]"
    base = f"{parts.scheme}://{host}" + (f":{port}" if port is not None else "")
    hidden = parts.path not in ("", "/") or parts.query or parts.fragment or parts.username or parts.password
    return f"{base}/{MASK}" if hidden else f"{base}/"


def masked_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """A channel's settings as the API and the pages show them."""
    shown = public_config(config)
    if isinstance(shown.get("url"), str):
        shown["url"] = mask_url(shown["url"])
    if isinstance(shown.get("headers"), Mapping):
        shown["headers"] = {name: MASK for name in shown["headers"]}
    return shown


def unmask_channel_body(body: Any, stored: Mapping[str, Any]) -> Any:
    """``body`` with the masked values it sends back replaced by the stored ones."""
    if not isinstance(body, dict):
        return body
    body = dict(body)
    url = stored.get("url")
    if isinstance(url, str) and body.get("url") == mask_url(url):
        body["url"] = url
    headers, kept = body.get("headers"), stored.get("headers")
    if isinstance(headers, Mapping) and isinstance(kept, Mapping):
        body["headers"] = {
            name: kept[name] if value == MASK and name in kept else value for name, value in headers.items()
        }
    return body
