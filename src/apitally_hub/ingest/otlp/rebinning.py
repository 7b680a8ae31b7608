"""OTLP histograms (explicit or exponential buckets) re-binned to the hub's bins: response times
in 10 ms bins (key ``floor(ms / 10) * 10``), sizes in 1 kB bins (key ``bytes // 1000``).

A source bucket says only that its values lie in ``(lower, upper]``; its count is spread evenly
over that range (clipped to the point's ``min`` and ``max`` when the sender gives them) and each
share lands in the hub bin under it. So a value can move at most the width of its source bucket:
about 9 % of the value at exponential scale 3 (apitally 1.x), 4.4 % at scale 4, and for explicit
buckets the bucket's own width (the SDK's default duration buckets are wide: 0-5, 5-10, 10-25,
25-50, 50-75, 75-100, 100-250 ms, …). Counts are exact: every bucket's count is placed whole, so
the bins add up to the point's count. docs/otlp.md shows the error in figures; a test holds it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

MAX_SHARES = 256
"""Pieces a bucket's count is split into at most (the work per bucket stays bounded whatever
its count or width)."""

MAX_VALUE = 1e12
"""Values above this (in the hub's unit) are taken as this: a sender's absurd bound must not make
absurd bins."""

Interval = tuple[float, float, int]
"""``(lower, upper, count)`` in the hub's unit (milliseconds or bytes)."""


def explicit_intervals(
    bounds: Sequence[float], counts: Sequence[int], low: float | None, high: float | None, scale: float
) -> Iterator[Interval]:
    """The buckets of an explicit-bucket point, in the hub's unit (``scale`` converts)."""
    last_bound = bounds[-1] * scale if bounds else 0.0
    for index, count in enumerate(counts):
        if count <= 0:
            continue
        lower = bounds[index - 1] * scale if 0 < index <= len(bounds) else (0.0 if index == 0 else last_bound)
        # the overflow bucket: up to the max when known, else at its lower bound
        overflow_upper = high * scale if high is not None else lower
        upper = bounds[index] * scale if index < len(bounds) else overflow_upper
        if low is not None:
            lower = max(lower, low * scale)
        if high is not None:
            upper = min(upper, high * scale)
        lower = min(lower, upper)
        yield max(lower, 0.0), max(upper, 0.0), count


def exponential_intervals(
    exp_scale: int,
    zero_count: int,
    buckets: dict[int, int],
    low: float | None,
    high: float | None,
    scale: float,
) -> Iterator[Interval]:
    """The buckets of an exponential point (``buckets``: index -> count of its positive range), in
    the hub's unit; zero (and negative) values count as zero."""
    if zero_count:
        yield 0.0, 0.0, zero_count
    # base ** index, kept finite: the scale is clamped to what a double can express
    base_log = math.ldexp(math.log(2), -max(min(exp_scale, 20), -10))
    for index, count in sorted(buckets.items()):
        if count <= 0:
            continue
        lower = _exp(index * base_log) * scale
        upper = _exp((index + 1) * base_log) * scale
        if low is not None and lower < low * scale:
            lower = min(low * scale, upper)
        if high is not None and upper > high * scale:
            upper = max(high * scale, lower)
        yield lower, upper, count


def _exp(value: float) -> float:
    return math.exp(min(value, math.log(MAX_VALUE)))


def to_bins(intervals: Sequence[Interval], width: float) -> dict[int, int]:
    """Spread each interval's count over ``(lower, upper]`` into bins of ``width``; the key of a
    bin is its index (``floor(value / width)``)."""
    bins: dict[int, int] = {}
    for lower, upper, count in intervals:
        lower, upper = min(lower, MAX_VALUE), min(upper, MAX_VALUE)
        first, last = _bin(lower, width), _bin(upper, width)
        if first == last:
            bins[first] = bins.get(first, 0) + count
            continue
        shares = min(count, MAX_SHARES)
        base, extra = divmod(count, shares)
        for share in range(shares):
            value = lower + (share + 0.5) / shares * (upper - lower)
            key = _bin(value, width)
            bins[key] = bins.get(key, 0) + base + (1 if share < extra else 0)
    return bins


def _bin(value: float, width: float) -> int:
    return int(value // width) if value > 0 else 0
