"""Masking and exclusion rules for request logs (hub-protocol §5.1). Pure functions, no I/O.

Patterns are regexes searched case-insensitively; user patterns are added to the defaults.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qsl, urlencode

MASKED = "******"

# hub-protocol §5.1 lists `api-?key`; `api[-_]?key` also masks the common `api_key` spelling.
DEFAULT_MASK_HEADERS = (r"auth", r"api[-_]?key", r"secret", r"token", r"cookie")
DEFAULT_MASK_QUERY_PARAMS = (r"auth", r"api[-_]?key", r"secret", r"token", r"password", r"pwd")
DEFAULT_MASK_BODY_FIELDS = (
    r"password",
    r"pwd",
    r"token",
    r"secret",
    r"auth",
    r"card[\-_ ]?number",
    r"ccv",
    r"ssn",
)
DEFAULT_EXCLUDE_PATHS = (
    r"/_?healthz?$",
    r"/_?health[\-_]?checks?$",
    r"/_?heart[\-_]?beats?$",
    r"/ping$",
    r"/ready$",
    r"/live$",
    r"/favicon(?:-[\w-]+)?\.(ico|png|svg)$",
    r"/apple-touch-icon(?:-[\w-]+)?\.png$",
    r"/robots\.txt$",
    r"/sitemap\.xml$",
    r"/manifest\.json$",
    r"/site\.webmanifest$",
    r"/service-worker\.js$",
    r"/sw\.js$",
    r"/\.well-known/",
)
DEFAULT_EXCLUDE_USER_AGENTS = (
    r"health[\-_ ]?check",
    r"microsoft-azure-application-lb",
    r"googlehc",
    r"kube-probe",
)


def compile_patterns(defaults: Iterable[str], extra: Iterable[str] = ()) -> re.Pattern[str]:
    """One case-insensitive regex matching any of the patterns (an invalid user pattern raises)."""
    return re.compile("|".join(f"(?:{p})" for p in (*defaults, *extra)), re.IGNORECASE)


def mask_headers(headers: Iterable[tuple[str, str]], pattern: re.Pattern[str]) -> list[list[str]]:
    return [[name, MASKED if pattern.search(name) else value] for name, value in headers]


def mask_query(query: str, pattern: re.Pattern[str]) -> str:
    if not query:
        return query
    pairs = parse_qsl(query, keep_blank_values=True)
    return urlencode([(k, MASKED if pattern.search(k) else v) for k, v in pairs], safe="*")


def mask_json_body(body: bytes, pattern: re.Pattern[str]) -> bytes:
    """Mask string values of matching keys at any depth (lists included). Non-JSON: unchanged."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return body
    masked, changed = _mask_value(data, pattern)
    if not changed:
        return body
    return json.dumps(masked, ensure_ascii=False, separators=(",", ":")).encode()


def _mask_value(value: Any, pattern: re.Pattern[str]) -> tuple[Any, bool]:
    if isinstance(value, dict):
        changed = False
        out: dict[str, Any] = {}
        for key, item in value.items():
            if isinstance(item, str) and pattern.search(key):
                out[key] = MASKED
                changed = True
            else:
                out[key], item_changed = _mask_value(item, pattern)
                changed = changed or item_changed
        return out, changed
    if isinstance(value, list):
        results = [_mask_value(item, pattern) for item in value]
        return [r[0] for r in results], any(r[1] for r in results)
    return value, False
