"""Uptime from heartbeats and health checks: pure functions over what the store holds.

**Down window.** Every instance syncs each interval, even when idle. An app env is *down* when
no instance has synced for ``max(3 * sync interval, minimum)`` (the minimum is 3 minutes by
default), where the interval is the one the store inferred for the instance that synced last
(else the smallest inferred one, else the hub's default); it is up again at the next sync. With a
health check configured, the env is also down while the check fails.

**History.** The store keeps syncs per minute. A minute counts as *up* when an instance synced in
it or in the down window before it; runs of other minutes, from the first sync on, are *down*.
Health-check failures add their own down intervals (to the second: the check's events are
exact). The current down interval, if any, starts at the last sync plus the down window.
Uptime of a day = 1 - down seconds / observed seconds (observed: since the env was first seen,
until now).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

Interval = tuple[float, float]

DAY = 86400


def down_window(interval: float, minimum: float) -> float:
    return max(3 * interval, minimum)


def heartbeat_down_intervals(
    minutes: Iterable[int], window: float, since: float, until: float, last_sync: float | None
) -> list[Interval]:
    """Down intervals within ``[since, until]`` from the minutes with syncs (ascending)."""
    down: list[Interval] = []
    previous: int | None = None
    for minute in minutes:
        if previous is not None:
            # minute M is up when a sync came in some minute b with M - b < 60 + window
            start = float(previous + 60 * math.ceil(1 + window / 60))
            if minute > start:
                down.append((start, float(minute)))
        previous = minute
    if last_sync is not None and until - last_sync > window:
        down.append((last_sync + window, until))
    return clip(down, since, until)


def health_down_intervals(events: Sequence[tuple[float, str]], since: float, until: float) -> list[Interval]:
    """Down intervals from a health check's status changes ``(at, "up"|"down")``, ascending."""
    down: list[Interval] = []
    start: float | None = None
    for at, status in events:
        if status == "down" and start is None:
            start = at
        elif status != "down" and start is not None:
            down.append((start, at))
            start = None
    if start is not None:
        down.append((start, until))
    return clip(down, since, until)


def clip(intervals: Iterable[Interval], since: float, until: float) -> list[Interval]:
    return [(max(a, since), min(b, until)) for a, b in intervals if min(b, until) > max(a, since)]


def union(intervals: Iterable[Interval]) -> list[Interval]:
    merged: list[Interval] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def measure(intervals: Iterable[Interval], since: float, until: float) -> float:
    return sum(b - a for a, b in clip(intervals, since, until))


def timeline(down: Sequence[Interval], observed_since: float, until: float) -> list[dict[str, object]]:
    """Alternating up/down spans covering ``[observed_since, until]``."""
    spans: list[dict[str, object]] = []
    position = observed_since
    for start, end in clip(down, observed_since, until):
        if start > position:
            spans.append({"status": "up", "start": position, "end": start})
        spans.append({"status": "down", "start": start, "end": end})
        position = end
    if until > position:
        spans.append({"status": "up", "start": position, "end": until})
    return spans


def days(down: Sequence[Interval], observed_since: float, until: float) -> list[dict[str, object]]:
    """Uptime per UTC day of ``[observed_since, until]``."""
    result: list[dict[str, object]] = []
    day = int(observed_since // DAY) * DAY
    while day < until:
        start, end = max(float(day), observed_since), min(float(day + DAY), until)
        if end > start:
            lost = measure(down, start, end)
            result.append(
                {
                    "day": day,
                    "observed_seconds": round(end - start, 3),
                    "down_seconds": round(lost, 3),
                    "uptime": round(1 - lost / (end - start), 6),
                }
            )
        day += DAY
    return result
