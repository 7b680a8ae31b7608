"""Up and down of an app env, derived from its heartbeats (every instance syncs each interval,
even when idle).

An env is **down** when no instance has synced for :func:`down_after` seconds — three sync
intervals of its slowest instance, at least three minutes — and up again at the next sync. The
store keeps heartbeats per minute (the minute of a sync's timestamp), so a sync in minute ``m``
counts as alive until the end of that minute: the timeline may call an outage up to a minute
late, never early. The newest sync is known to the second (the instances' last sync), and the
tail of the timeline uses it, so the timeline's end agrees with the current status.

Before the app was first seen, and before the oldest heartbeat the store still keeps, the state
is ``unknown`` (not counted in the uptime fraction).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

DOWN_AFTER_INTERVALS = 3
DOWN_AFTER_MIN_SECONDS = 180.0

State = Literal["up", "down", "unknown"]


def down_after(intervals: Iterable[float], default_interval: float) -> float:
    """Seconds without a sync after which the env is down."""
    slowest = max(intervals, default=default_interval)
    return max(DOWN_AFTER_MIN_SECONDS, DOWN_AFTER_INTERVALS * slowest)


@dataclass(frozen=True)
class Span:
    start: float
    end: float
    state: State

    def as_dict(self) -> dict[str, float | str]:
        return {"start": self.start, "end": self.end, "state": self.state}


def status(last_sync_at: float | None, now: float, after: float) -> State:
    if last_sync_at is None:
        return "unknown"
    return "up" if now - last_sync_at <= after else "down"


def timeline(
    minutes: Sequence[int],
    *,
    since: float,
    until: float,
    after: float,
    known_from: float | None,
    last_sync_at: float | None,
) -> list[Span]:
    """Consecutive spans covering ``[since, until]``.

    ``minutes``: the heartbeat minutes (sorted; include those up to ``after`` + 60 s before
    ``since``); ``known_from``: from when the state is known (None: never, all unknown).
    """
    if until <= since:
        return []
    if known_from is None:
        return [Span(since, until, "unknown")]
    known_from = min(max(known_from, since), until)
    alive: list[tuple[float, float]] = []
    last_minute = int(last_sync_at // 60) * 60 if last_sync_at is not None else None
    for minute in minutes:
        through = last_sync_at if minute == last_minute and last_sync_at is not None else minute + 60.0
        alive.append((float(minute), through + after))
    if last_sync_at is not None:
        alive.append((last_sync_at, last_sync_at + after))
    spans: list[Span] = []
    if known_from > since:
        spans.append(Span(since, known_from, "unknown"))
    position = known_from
    for start, end in sorted(alive):
        start, end = max(start, known_from), min(end, until)
        if end <= position:
            continue
        if start > position:
            _append(spans, Span(position, start, "down"))
        _append(spans, Span(max(start, position), end, "up"))
        position = end
    if position < until:
        _append(spans, Span(position, until, "down"))
    return spans


def _append(spans: list[Span], span: Span) -> None:
    if span.end <= span.start:
        return
    if spans and spans[-1].state == span.state and spans[-1].end >= span.start:
        spans[-1] = Span(spans[-1].start, span.end, span.state)
    else:
        spans.append(span)


def daily(spans: Sequence[Span], day: int = 86400) -> list[dict[str, float | None]]:
    """The uptime fraction of each (UTC) day the spans touch: ``[{"day": start, "uptime": ...}]``."""
    if not spans:
        return []
    first = int(spans[0].start // day) * day
    result = []
    for start in range(first, int(spans[-1].end), day):
        clipped = [
            Span(max(s.start, start), min(s.end, start + day), s.state)
            for s in spans
            if s.end > start and s.start < start + day
        ]
        result.append({"day": float(start), "uptime": uptime_fraction(clipped)})
    return result


def uptime_fraction(spans: Iterable[Span]) -> float | None:
    """Share of the known time that was up; None when nothing is known."""
    up = down = 0.0
    for span in spans:
        if span.state == "up":
            up += span.end - span.start
        elif span.state == "down":
            down += span.end - span.start
    return round(up / (up + down), 6) if up + down > 0 else None
