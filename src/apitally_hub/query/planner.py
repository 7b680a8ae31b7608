"""Which aggregate rows answer a window: the query planner of the hub's tiered storage.

A **summary** over ``[since, until]`` (endpoints, consumers, errors) is exact to the minute: the
window's minutes are covered greedily by the coarsest buckets that fit inside it — a few minute
rows at each edge, then hours, then whole days — so a 30-day summary reads about 30 day rows
per series instead of 43 200 minute rows. Where a finer tier has already been pruned (minutes
older than their 30 days), the edge widens to the enclosing hour or day.

A **chart** asks for buckets of ``bucket_seconds``; it reads the coarsest tier that divides the
bucket and still holds the window's start.
"""

from __future__ import annotations

from collections.abc import Mapping

from apitally_hub.storage.records import DAY, HOUR, MINUTE, RESOLUTIONS, Segment

CHART_STEPS: tuple[int, ...] = (
    60,
    120,
    300,
    600,
    900,
    1800,
    3600,
    2 * 3600,
    3 * 3600,
    6 * 3600,
    12 * 3600,
    DAY,
    7 * DAY,
)
"""Bucket sizes a chart may use; each is a multiple of a tier's resolution."""

MAX_CHART_POINTS = 1500


def _available(resolution: int, bucket: int, now: float, retention: Mapping[int, float]) -> bool:
    return bucket + resolution > now - retention[resolution]


def summary_segments(
    since: float, until: float, now: float, retention: Mapping[int, float]
) -> tuple[Segment, ...]:
    """Segments covering every minute bucket that overlaps ``[since, until]``."""
    pos = int(since // MINUTE) * MINUTE
    end = int(until // MINUTE) * MINUTE + MINUTE
    oldest = max(RESOLUTIONS)
    floor = int((now - retention[oldest]) // oldest) * oldest
    pos = max(pos, floor)
    segments: list[Segment] = []
    while pos < end:
        chosen = None
        for resolution in sorted(RESOLUTIONS, reverse=True):
            if (
                pos % resolution == 0
                and pos + resolution <= end
                and _available(resolution, pos, now, retention)
            ):
                chosen = resolution
                break
        if chosen is None:
            # only finer tiers fit here but they are pruned: widen to the enclosing coarser bucket
            for resolution in sorted(RESOLUTIONS):
                start = pos - pos % resolution
                if _available(resolution, start, now, retention):
                    chosen, pos = resolution, start
                    break
            else:  # pragma: no cover - the coarsest tier covers ``floor`` onwards
                break
        if segments and segments[-1].resolution == chosen and segments[-1].end + chosen == pos:
            segments[-1] = Segment(chosen, segments[-1].start, pos)
        else:
            segments.append(Segment(chosen, pos, pos))
        pos += chosen
    return tuple(segments)


def chart_bucket(since: float, until: float, requested: int | None = None) -> int:
    """The bucket size for a chart: ``requested`` if given, else the finest step that keeps the
    chart under :data:`MAX_CHART_POINTS`."""
    if requested is not None:
        return requested
    span = max(until - since, MINUTE)
    for step in CHART_STEPS:
        if span / step <= MAX_CHART_POINTS:
            return step
    return CHART_STEPS[-1]


def chart_segments(
    since: float, until: float, bucket: int, now: float, retention: Mapping[int, float]
) -> tuple[int, tuple[Segment, ...]]:
    """(effective bucket size, segments) for a chart of ``bucket``-second buckets over the window.

    The tier is the coarsest whose resolution divides ``bucket`` and that holds ``since``; when
    none does (minutes asked for beyond their retention), the bucket grows to the tier that does.
    """
    for resolution in sorted(RESOLUTIONS, reverse=True):
        if bucket % resolution == 0 and _available(resolution, int(since // bucket) * bucket, now, retention):
            break
    else:
        resolution = next(
            (r for r in sorted(RESOLUTIONS) if _available(r, int(since // r) * r, now, retention)), DAY
        )
        bucket = max(bucket, resolution) // resolution * resolution
    start = int(since // bucket) * bucket
    end = int(until // resolution) * resolution
    if end < start:
        return bucket, ()
    return bucket, (Segment(resolution, start, end),)


__all__ = [
    "CHART_STEPS",
    "DAY",
    "HOUR",
    "MAX_CHART_POINTS",
    "MINUTE",
    "chart_bucket",
    "chart_segments",
    "summary_segments",
]
