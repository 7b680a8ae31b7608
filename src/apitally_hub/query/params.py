"""The query API's parameters, parsed strictly: a bad value is a 422 naming ``["query", <name>]``,
never a 500 (``limit=²`` or a 5 000-digit ``offset`` used to reach ``int()`` unchecked).
"""

from __future__ import annotations

import re

from starlette.requests import Request

from apitally_hub.errors import field_error
from apitally_hub.protocol.log_lines import (
    ATTRIBUTE_KEY_MSG,
    ATTRIBUTE_KEY_RE,
    MAX_ATTRIBUTE_KEY,
    MAX_ATTRIBUTE_VALUE,
)
from apitally_hub.query.timewindow import DEFAULT_SINCE, Window, parse_time

MAX_TEXT = 2048
"""Longest free-text filter (``path``, ``consumer``, ``q``, ...): the longest route path a client
may send."""

_INT_RE = re.compile(r"[0-9]{1,18}")
_STATUS_RE = re.compile(r"[1-5](?:xx|[0-9][0-9])")
_BOOLEANS = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}


def int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    """A whole number in ``[low, high]``; ``default`` when absent or empty (an HTML form sends its
    empty fields)."""
    raw = request.query_params.get(name)
    if not raw:
        return default
    if _INT_RE.fullmatch(raw) is None or not low <= int(raw) <= high:
        raise field_error(("query", name), f"Should be an integer from {low} to {high}", "int_parsing")
    return int(raw)


def bool_param(request: Request, name: str, *, default: bool = False) -> bool:
    value = _BOOLEANS.get(request.query_params.get(name, str(default)).lower())
    if value is None:
        raise field_error(("query", name), "Should be a boolean", "bool_parsing")
    return value


def text_param(request: Request, name: str, *, max_len: int = MAX_TEXT) -> str | None:
    """A free-text filter; None when absent or empty."""
    raw = request.query_params.get(name)
    if not raw:
        return None
    if len(raw) > max_len:
        raise field_error(("query", name), f"Should have at most {max_len} characters", "string_too_long")
    return raw


MAX_ATTRIBUTE_FILTER = MAX_ATTRIBUTE_KEY + 1 + MAX_ATTRIBUTE_VALUE
"""Longest ``attribute`` filter: a key, ``:`` and a value."""


def attribute_param(request: Request) -> tuple[str, str] | None:
    """``attribute=key:value`` (the first ``:`` ends the key; the value, possibly empty, matches
    exactly): ``(key, value)``, or None when absent or empty."""
    raw = text_param(request, "attribute", max_len=MAX_ATTRIBUTE_FILTER)
    if raw is None:
        return None
    key, colon, value = raw.partition(":")
    if not colon:
        raise field_error(("query", "attribute"), "Should be key:value", "attribute_filter")
    if ATTRIBUTE_KEY_RE.fullmatch(key) is None:
        raise field_error(("query", "attribute"), ATTRIBUTE_KEY_MSG, "attribute_key")
    if len(value) > MAX_ATTRIBUTE_VALUE:
        raise field_error(
            ("query", "attribute"),
            f"The value should have at most {MAX_ATTRIBUTE_VALUE} characters",
            "string_too_long",
        )
    return key, value


def status_param(request: Request) -> str | None:
    """``404`` or a class such as ``4xx`` (lower case), or None."""
    raw = request.query_params.get("status")
    if raw is None:
        return None
    if _STATUS_RE.fullmatch(raw.lower()) is None:
        raise field_error(("query", "status"), "Should be a status code (404) or a class (4xx)", "status")
    return raw.lower()


def window_params(request: Request, now: float) -> Window:
    """``since`` (default an hour ago) and ``until`` (default now); see :mod:`.timewindow`."""
    bounds = {"since": now - DEFAULT_SINCE, "until": now}
    for name in bounds:
        raw = request.query_params.get(name)
        if raw:
            try:
                bounds[name] = parse_time(raw, now)
            except ValueError as exc:
                raise field_error(("query", name), str(exc), "time_parsing") from None
    if bounds["until"] < bounds["since"]:
        raise field_error(("query", "until"), "until is before since", "time_order")
    return Window(bounds["since"], bounds["until"])
