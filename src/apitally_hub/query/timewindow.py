"""Time windows for queries: ``since``/``until`` given as a duration ago or an absolute time.

Accepted forms: seconds ago (``3600``, ``90.5``), a duration ago (``45s``, ``30m``, ``1h``, ``2d``,
``1w``, or combined like ``1h30m``), or an ISO 8601 date-time (``2024-08-12T10:00:00Z``; a naive
value is UTC). A window covers every per-minute bucket that overlaps ``[since, until]``. Times
before 1970 or after :data:`MAX_TIME` are refused (``since=1e20`` would not fit in a SQLite
integer minute).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone

_SECONDS_RE = re.compile(r"[0-9]+(?:\.[0-9]+)?")
_DURATION_RE = re.compile(
    r"(?:(\d+(?:\.\d+)?)w)?(?:(\d+(?:\.\d+)?)d)?(?:(\d+(?:\.\d+)?)h)?"
    r"(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?",
    re.ASCII,
)
_UNITS = (7 * 86400.0, 86400.0, 3600.0, 60.0, 1.0)

DEFAULT_SINCE = 3600.0
MAX_TIME = 1e10
"""The latest time a window may name (the year 2286, as for message timestamps)."""


@dataclass(frozen=True)
class Window:
    since: float
    until: float

    @property
    def first_minute(self) -> int:
        return int(self.since // 60) * 60

    @property
    def last_minute(self) -> int:
        return int(self.until // 60) * 60

    def as_dict(self) -> dict[str, float]:
        return {"since": self.since, "until": self.until}


def parse_duration(text: str) -> float | None:
    """Seconds for ``3600``, ``1h``, ``1h30m``, ...; None when ``text`` is not a duration."""
    text = text.strip().lower()
    if _SECONDS_RE.fullmatch(text):
        return float(text)
    match = _DURATION_RE.fullmatch(text)
    if not text or match is None:
        return None
    return sum(float(part) * unit for part, unit in zip(match.groups(), _UNITS, strict=True) if part)


def parse_time(text: str, now: float) -> float:
    """Epoch seconds for a duration ago or an ISO date-time; raises ValueError otherwise."""
    duration = parse_duration(text)
    if duration is not None:
        return _in_range(now - duration, text)
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(
            f"{_shown(text)} is neither a duration (e.g. 1h, 30m, 3600) nor an ISO date-time"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return _in_range(moment.timestamp(), text)


def _in_range(moment: float, text: str) -> float:
    if not 0.0 <= moment <= MAX_TIME:  # also false for NaN
        raise ValueError(f"{_shown(text)} is out of range: times run from 1970 to the year 2286")
    return moment


def _shown(text: str) -> str:
    return repr(text) if len(text) <= 40 else repr(text[:40]) + "..."
