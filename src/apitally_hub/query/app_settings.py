"""The per-app settings the query layer honours, their defaults and their validation.

Stored as text through :meth:`~apitally_hub.storage.base.Storage.put_app_setting`; read back
with :func:`read_settings`, which falls back to the default for a missing or unreadable value.
"""

from __future__ import annotations

from typing import Any

from apitally_hub.query.stats import DEFAULT_APDEX_MS
from apitally_hub.storage.base import Storage
from apitally_hub.storage.records import AppKey

APDEX_MS = "apdex_ms"
APDEX_MS_RANGE = (1, 60_000)


class InvalidSetting(ValueError):
    """A value a setting does not take; the message says which values it does."""


def parse_apdex_ms(raw: str) -> int:
    low, high = APDEX_MS_RANGE
    text = raw.strip()
    if not text.isascii() or not text.isdigit() or len(text) > 6 or not low <= int(text) <= high:
        raise InvalidSetting(
            f"The Apdex threshold should be a whole number of milliseconds from {low} to {high}"
        )
    return int(text)


def read_settings(storage: Storage, app: AppKey) -> dict[str, Any]:
    stored = storage.app_settings(app)
    try:
        apdex_ms = parse_apdex_ms(stored.get(APDEX_MS, str(DEFAULT_APDEX_MS)))
    except InvalidSetting:  # written by something else than this hub: the default holds
        apdex_ms = DEFAULT_APDEX_MS
    return {APDEX_MS: apdex_ms}


def write_apdex_ms(storage: Storage, app: AppKey, raw: str, *, now: float) -> int:
    """Validate and store the app's Apdex threshold; raises :class:`InvalidSetting`."""
    value = parse_apdex_ms(raw)
    storage.put_app_setting(app, APDEX_MS, str(value), now=now)
    return value
