"""What the hub's answers mean (hub-protocol §6): pure functions shared by every sender."""

from __future__ import annotations

import email.utils
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

MAX_MESSAGE_AGE = 3600.0


class Outcome(Enum):
    SENT = "sent"
    RETRY = "retry"  # transient: keep the message
    REJECTED = "rejected"  # 422: the hub will never accept it
    DROPPED = "dropped"  # another status: not retryable
    INVALID_CLIENT = "invalid_client"  # 404: stop for the life of the process


@dataclass(frozen=True)
class Result:
    outcome: Outcome
    status_code: int | None = None
    retry_after: float | None = None
    detail: str = ""


def classify(status_code: int) -> Outcome:
    if 200 <= status_code < 300:
        return Outcome.SENT
    if status_code == 404:
        return Outcome.INVALID_CLIENT
    if status_code == 422:
        return Outcome.REJECTED
    if status_code in (408, 429) or status_code >= 500:
        return Outcome.RETRY
    return Outcome.DROPPED


def parse_retry_after(value: str | None, now: Callable[[], float] = time.time) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delay-seconds or an HTTP date), capped at 1 h."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        seconds = when.timestamp() - now()
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), MAX_MESSAGE_AGE)
