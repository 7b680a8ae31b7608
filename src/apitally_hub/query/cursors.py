"""Paging for the query layer's lists: :class:`Page` asks for ``limit`` items from ``cursor``,
an opaque string that the previous page handed out as ``next_cursor`` (None: no next page).

A cursor is URL-safe base64 of a small JSON object: an offset ``{"o": ...}`` for lists read
whole, or a keyset ``{"t": ..., "id": ...}`` for the request log, rejections and alert history.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


class BadCursor(ValueError):
    """A ``cursor`` that no page of this list handed out."""


def encode_cursor(value: Mapping[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(value, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None, *keys: str) -> dict[str, Any] | None:
    if cursor is None:
        return None
    try:
        value = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise BadCursor("cursor is not one this list handed out") from None
    if not isinstance(value, dict) or set(value) != set(keys):
        raise BadCursor("cursor is not one this list handed out")
    for key in keys:
        if not isinstance(value[key], int | float) or isinstance(value[key], bool) or value[key] < 0:
            raise BadCursor("cursor is not one this list handed out")
    return value


def page_offset(cursor: str | None) -> int:
    value = decode_cursor(cursor, "o")
    return int(value["o"]) if value else 0


def next_page_cursor(offset: int, shown: int, total: int) -> str | None:
    return encode_cursor({"o": offset + shown}) if offset + shown < total else None


@dataclass(frozen=True)
class Page:
    limit: int = 100
    cursor: str | None = None


FIRST_PAGE = Page()
"""The default page of every list: its first ``limit`` (100) items."""

__all__ = [
    "FIRST_PAGE",
    "BadCursor",
    "Page",
    "decode_cursor",
    "encode_cursor",
    "next_page_cursor",
    "page_offset",
]
