"""One histogram data point as the hub keeps it between exports (explicit or exponential buckets),
and the difference of two cumulative points: what a cumulative series gained since the last one.

A cumulative series is keyed by its instance, metric, attributes and start time, so a restarted
process (a new start time) is a new series whose whole value is new; a point that did not grow
(a duplicate, or a retry of an older export arriving late) adds nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field

from opentelemetry.proto.metrics.v1.metrics_pb2 import ExponentialHistogramDataPoint, HistogramDataPoint

from apitally_hub.ingest.otlp import rebinning

MAX_BUCKETS = 4096
"""Buckets kept of one point (more are merged into the last): bounds the state a sender makes the
hub keep per series."""


@dataclass
class Histogram:
    count: int
    total: float
    bounds: tuple[float, ...] | None = None
    """Explicit bucket bounds; None for an exponential histogram."""
    scale: int = 0
    zero_count: int = 0
    buckets: dict[int, int] = field(default_factory=dict)
    """Explicit: bucket index -> count; exponential: positive bucket index -> count."""
    low: float | None = None
    high: float | None = None
    """The point's min and max, when known and meaningful (never for a difference)."""

    @classmethod
    def from_explicit(cls, point: HistogramDataPoint) -> Histogram:
        buckets = {
            index: int(count) for index, count in enumerate(point.bucket_counts[:MAX_BUCKETS]) if count
        }
        return cls(
            int(point.count),
            float(point.sum) if point.HasField("sum") else 0.0,
            tuple(point.explicit_bounds[: MAX_BUCKETS - 1]),
            buckets=buckets,
            low=point.min if point.HasField("min") else None,
            high=point.max if point.HasField("max") else None,
        )

    @classmethod
    def from_exponential(cls, point: ExponentialHistogramDataPoint) -> Histogram:
        buckets: dict[int, int] = {}
        offset = point.positive.offset
        for position, count in enumerate(point.positive.bucket_counts[:MAX_BUCKETS]):
            if count:
                buckets[offset + position] = int(count)
        return cls(
            int(point.count),
            float(point.sum) if point.HasField("sum") else 0.0,
            None,
            int(point.scale),
            int(point.zero_count) + sum(int(count) for count in point.negative.bucket_counts),
            buckets,
            point.min if point.HasField("min") else None,
            point.max if point.HasField("max") else None,
        )

    def intervals(self, unit_scale: float) -> Iterator[rebinning.Interval]:
        if self.bounds is None:
            yield from rebinning.exponential_intervals(
                self.scale, self.zero_count, self.buckets, self.low, self.high, unit_scale
            )
            return
        counts = [0] * (max(self.buckets, default=-1) + 1)
        for index, count in self.buckets.items():
            counts[index] = count
        yield from rebinning.explicit_intervals(self.bounds, counts, self.low, self.high, unit_scale)

    def minus(self, previous: Histogram) -> Histogram | None:
        """What this cumulative point gained over ``previous`` (the same series, an earlier point);
        None when it is not comparable or went down (a reset: the caller counts it whole)."""
        if self.count < previous.count:
            return None
        if self.bounds is not None or previous.bounds is not None:
            if self.bounds != previous.bounds:
                return None
            mine, theirs = self.buckets, previous.buckets
            scale = 0
        else:
            scale = min(self.scale, previous.scale)
            mine, theirs = (
                _downscaled(self.buckets, self.scale - scale),
                _downscaled(previous.buckets, previous.scale - scale),
            )
        gained: dict[int, int] = {}
        for index in set(mine) | set(theirs):
            difference = mine.get(index, 0) - theirs.get(index, 0)
            if difference < 0:
                return None
            if difference:
                gained[index] = difference
        zero = self.zero_count - previous.zero_count
        if zero < 0:
            return None
        return Histogram(
            self.count - previous.count, self.total - previous.total, self.bounds, scale, zero, gained
        )

    def to_json(self) -> str:
        return json.dumps(
            {
                "c": self.count,
                "s": self.total,
                "b": list(self.bounds) if self.bounds is not None else None,
                "x": self.scale,
                "z": self.zero_count,
                "k": [[index, count] for index, count in sorted(self.buckets.items())],
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str) -> Histogram | None:
        try:
            data = json.loads(text)
            bounds = data["b"]
            return cls(
                int(data["c"]),
                float(data["s"]),
                tuple(float(bound) for bound in bounds) if bounds is not None else None,
                int(data["x"]),
                int(data["z"]),
                {int(index): int(count) for index, count in data["k"]},
            )
        except (ValueError, KeyError, TypeError):  # a row the hub did not write: start afresh
            return None


def _downscaled(buckets: dict[int, int], shift: int) -> dict[int, int]:
    if shift <= 0:
        return buckets
    merged: dict[int, int] = {}
    for index, count in buckets.items():
        key = index >> shift
        merged[key] = merged.get(key, 0) + count
    return merged
