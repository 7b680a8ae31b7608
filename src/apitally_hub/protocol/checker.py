"""Primitive field checks shared by the message validators.

A :class:`Checker` walks a decoded JSON document and collects :class:`FieldError` values whose
``loc`` names the offending field, e.g. ``("requests", 3, "response_times")``. Each check returns
the value when it is valid and ``None`` otherwise, so validators can go on checking dependent
rules only when the basics hold. After ``max_errors`` errors the walk stops (the caller gets the
errors found so far), which bounds the work and the size of a 422 body for huge bad messages.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

Loc = tuple[str | int, ...]

MAX_SAFE_INT = 2**53 - 1
"""Largest integer accepted anywhere (exact in JSON doubles, far inside SQLite's 64-bit range)."""

MAX_TIMESTAMP = 1e10
"""Largest epoch-seconds timestamp accepted (the year 2286)."""

MAX_COUNT = 10**9
"""Largest count in one item (``request_count``, ``error_count``, a histogram bin): sums over
millions of stored rows stay far inside SQLite's 64-bit integers."""

MAX_BYTE_SUM = 10**15
"""Largest byte count in one item (``request_size_sum``, a log line's ``size``): 1 PB."""

MAX_AHEAD = 86400.0
"""How far past the hub's clock a timestamp may be (client clock skew)."""

_UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_BIN_KEY_RE = re.compile(r"0|[1-9][0-9]{0,14}")
_METHOD_RE = re.compile(r"[A-Za-z]{1,16}")


@dataclass(frozen=True)
class FieldError:
    loc: Loc
    msg: str
    type: str

    def as_dict(self) -> dict[str, Any]:
        return {"loc": list(self.loc), "msg": self.msg, "type": self.type}


@dataclass(frozen=True)
class TimeWindow:
    """The timestamps a hub accepts: no older than its retention, at most :data:`MAX_AHEAD` ahead.

    Older data would be pruned at once, and far-future data never would be.
    """

    now: float
    max_age: float

    def contains(self, timestamp: float) -> bool:
        return self.now - self.max_age <= timestamp <= self.now + MAX_AHEAD

    @property
    def message(self) -> str:
        return (
            f"Timestamp should be at most {self.max_age / 86400:g} days old (the hub's retention)"
            f" and at most {MAX_AHEAD / 86400:g} day ahead of the hub's clock ({self.now:.0f})"
        )


class TooManyErrors(Exception):
    """Raised inside a walk once ``max_errors`` were collected; caught by :func:`run_checks`."""


class Checker:
    def __init__(self, *, allow_extra: bool = False, max_errors: int = 50) -> None:
        self.allow_extra = allow_extra
        self.max_errors = max_errors
        self.errors: list[FieldError] = []

    def add(self, loc: Loc, msg: str, type_: str) -> None:
        self.errors.append(FieldError(loc, msg, type_))
        if len(self.errors) >= self.max_errors:
            raise TooManyErrors

    # -- containers -------------------------------------------------------------------------

    def obj(
        self, value: Any, loc: Loc, required: Collection[str], optional: Collection[str] = ()
    ) -> dict[str, Any] | None:
        """An object with the ``required`` keys; other keys must be ``optional`` unless extras are allowed."""
        if not isinstance(value, dict):
            self.add(loc, "Input should be an object", "object_type")
            return None
        for key in required:
            if key not in value:
                self.add((*loc, key), "Field required", "missing")
        if not self.allow_extra:
            for key in value:
                if key not in required and key not in optional:
                    self.add((*loc, key), "Extra inputs are not permitted", "extra_forbidden")
        return value

    def array(self, value: Any, loc: Loc, *, max_items: int | None = None) -> list[Any] | None:
        if not isinstance(value, list):
            self.add(loc, "Input should be a list", "list_type")
            return None
        if max_items is not None and len(value) > max_items:
            self.add(loc, f"List should have at most {max_items} items", "too_long")
            return None
        return value

    # -- scalars ----------------------------------------------------------------------------

    def string(
        self,
        value: Any,
        loc: Loc,
        *,
        min_len: int = 0,
        max_len: int | None = None,
        stripped: bool = False,
        pattern: re.Pattern[str] | None = None,
        pattern_msg: str = "String has the wrong format",
    ) -> str | None:
        if not isinstance(value, str):
            self.add(loc, "Input should be a valid string", "string_type")
            return None
        if len(value) < min_len:
            self.add(loc, f"String should have at least {min_len} characters", "string_too_short")
            return None
        if max_len is not None and len(value) > max_len:
            self.add(loc, f"String should have at most {max_len} characters", "string_too_long")
            return None
        if stripped and value != value.strip():
            self.add(loc, "String should not start or end with whitespace", "string_not_stripped")
            return None
        if pattern is not None and pattern.fullmatch(value) is None:
            self.add(loc, pattern_msg, "string_pattern_mismatch")
            return None
        return value

    def integer(self, value: Any, loc: Loc, *, ge: int | None = None, le: int = MAX_SAFE_INT) -> int | None:
        if not isinstance(value, int) or isinstance(value, bool):
            self.add(loc, "Input should be a valid integer", "int_type")
            return None
        if ge is not None and value < ge:
            self.add(loc, f"Input should be greater than or equal to {ge}", "greater_than_equal")
            return None
        if value > le:
            self.add(loc, f"Input should be less than or equal to {le}", "less_than_equal")
            return None
        return value

    def number(
        self,
        value: Any,
        loc: Loc,
        *,
        ge: float | None = None,
        gt: float | None = None,
        le: float = MAX_SAFE_INT,
    ) -> float | None:
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            self.add(loc, "Input should be a valid number", "float_type")
            return None
        if isinstance(value, float) and not math.isfinite(value):
            self.add(loc, "Input should be a finite number", "finite_number")
            return None
        if ge is not None and value < ge:
            self.add(loc, f"Input should be greater than or equal to {ge:g}", "greater_than_equal")
            return None
        if gt is not None and value <= gt:
            self.add(loc, f"Input should be greater than {gt:g}", "greater_than")
            return None
        if value > le:
            self.add(loc, f"Input should be less than or equal to {le:g}", "less_than_equal")
            return None
        return float(value)

    def timestamp(self, value: Any, loc: Loc) -> float | None:
        """Epoch seconds: a positive number no later than :data:`MAX_TIMESTAMP`."""
        return self.number(value, loc, gt=0, le=MAX_TIMESTAMP)

    def recent_timestamp(self, value: Any, loc: Loc, window: TimeWindow | None) -> float | None:
        """A :meth:`timestamp` that also lies in ``window`` (when given)."""
        timestamp = self.timestamp(value, loc)
        if timestamp is not None and window is not None and not window.contains(timestamp):
            self.add(loc, window.message, "timestamp_out_of_range")
            return None
        return timestamp

    def uuid(self, value: Any, loc: Loc) -> str | None:
        return self.string(
            value, loc, pattern=_UUID_RE, pattern_msg="Input should be a lowercase hyphenated UUID"
        )

    def method(self, value: Any, loc: Loc, *, upper: bool = True) -> str | None:
        method = self.string(
            value, loc, pattern=_METHOD_RE, pattern_msg="Input should be an HTTP method name"
        )
        if method is not None and upper and method != method.upper():
            self.add(loc, "HTTP method should be upper case", "string_pattern_mismatch")
            return None
        return method

    def route_path(self, value: Any, loc: Loc) -> str | None:
        path = self.string(value, loc, min_len=1, max_len=2048)
        if path is not None and not path.startswith("/"):
            self.add(loc, "Path should start with '/'", "string_pattern_mismatch")
            return None
        return path

    def base64(self, value: Any, loc: Loc) -> str | None:
        text = self.string(value, loc)
        if text is None:
            return None
        try:
            base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            self.add(loc, "Input should be valid base64", "base64_decode")
            return None
        return text

    def bins(self, value: Any, loc: Loc, *, multiple_of: int = 1) -> dict[int, int] | None:
        """A histogram: keys are canonical non-negative integer strings, values non-negative counts."""
        if not isinstance(value, dict):
            self.add(loc, "Input should be an object", "object_type")
            return None
        result: dict[int, int] = {}
        ok = True
        for key, count in value.items():
            if _BIN_KEY_RE.fullmatch(key) is None:
                self.add(
                    (*loc, key),
                    "Bin key should be a non-negative integer string (at most 15 digits)",
                    "bin_key",
                )
                ok = False
                continue
            edge = int(key)
            if edge % multiple_of:
                self.add((*loc, key), f"Bin key should be a multiple of {multiple_of}", "multiple_of")
                ok = False
                continue
            checked = self.integer(count, (*loc, key), ge=0, le=MAX_COUNT)
            if checked is None:
                ok = False
                continue
            result[edge] = checked
        return result if ok else None


def present(obj: dict[str, Any], key: str, *, nullable: bool = False) -> bool:
    """True when ``key`` holds a value to check (absent keys were reported by ``Checker.obj``)."""
    if key not in obj:
        return False
    return not (nullable and obj[key] is None)
