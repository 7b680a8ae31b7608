"""The dashboard's Jinja2 environment: every ``{{ value }}`` is HTML-escaped (client data —
paths, consumer names, tracebacks, bodies — is hostile by assumption), and control and bidi
characters are shown as escapes (``\\x1b``, ``\\u202e``) instead of reaching the page."""

from __future__ import annotations

import math
import re
import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from markupsafe import Markup

if TYPE_CHECKING:
    import jinja2

_INVISIBLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]")
DASH = "\u2013"
"""Shown for a missing value."""


def _visible_char(match: re.Match[str]) -> str:
    code = ord(match.group(0))
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def visible(text: str) -> str:
    """``text`` with control, zero-width and bidi characters replaced by their escapes."""
    return _INVISIBLE.sub(_visible_char, text)


def _finalize(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, str) and not isinstance(value, Markup):
        return visible(value)
    return value


def number(value: Any, digits: int = 0) -> str:
    if value is None:
        return DASH
    if isinstance(value, float) and not math.isfinite(value):
        return DASH
    return f"{value:,.{digits}f}" if digits or isinstance(value, float) else f"{int(value):,}"


def milliseconds(value: Any) -> str:
    return DASH if value is None else f"{number(value)} ms"


def percent(value: Any, digits: int = 2) -> str:
    return DASH if value is None else f"{value * 100:.{digits}f} %"


def size(value: Any) -> str:
    """Bytes in SI units (kB = 1000 bytes, as the protocol's size bins)."""
    if value is None:
        return DASH
    amount = float(value)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(amount) < 1000 or unit == "TB":
            return f"{int(amount)} B" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1000
    return DASH  # pragma: no cover - the loop returns


def utc(value: Any, seconds: bool = True) -> str:
    if value is None:
        return DASH
    moment = datetime.fromtimestamp(float(value), timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC" if seconds else "%Y-%m-%d %H:%M UTC")


def iso(value: float) -> str:
    """An exact ISO 8601 time (microseconds, UTC) that the query API parses back to ``value``."""
    return datetime.fromtimestamp(value, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def duration(seconds: Any) -> str:
    if seconds is None:
        return DASH
    seconds = float(seconds)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def ago(value: Any, now: float | None = None) -> str:
    if value is None:
        return DASH
    delta = (time.time() if now is None else now) - float(value)
    return "just now" if delta < 5 else f"{duration(delta)} ago"


def create_environment() -> jinja2.Environment:
    import jinja2  # here, not at import time: the hub's start does not wait for it

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("apitally_hub.web.dashboard", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        finalize=_finalize,
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,
    )
    env.filters.update(
        number=number,
        ms=milliseconds,
        percent=percent,
        size=size,
        utc=utc,
        iso=iso,
        duration=duration,
        ago=ago,
        visible=visible,
    )
    return env
