"""Percentiles from the protocol's response-time histograms.

A histogram maps the lower edge of a 10 ms bin (``floor(seconds / 0.01) * 10`` milliseconds) to
the number of requests in it, e.g. ``{0: 30, 10: 9, 120: 3}``.

Definition used here (nearest rank, reported as the bin's lower edge): for ``N`` requests the
``p``-th percentile is the request of rank ``r = max(1, ceil(p / 100 * N))`` in ascending order;
the result is the lower edge (in ms) of the bin that holds rank ``r``. The true value lies in
``[result, result + 10)`` ms. Worked example: bins ``{0: 30, 10: 9, 120: 3}`` (N = 42):
p50 → r = 21 → bin 0 → 0 ms; p95 → r = ceil(39.9) = 40 → ranks 31-39 are in bin 10, rank 40 is
in bin 120 → 120 ms; p99 → r = 42 → 120 ms.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping


def merge_bins(target: dict[int, int], source: Mapping[int, int]) -> dict[int, int]:
    """Add the counts of ``source`` into ``target`` (in place) and return ``target``."""
    for key, count in source.items():
        target[key] = target.get(key, 0) + count
    return target


def percentile(bins: Mapping[int, int], p: float) -> int | None:
    """The ``p``-th percentile (0 < p <= 100) of a histogram, or None when it is empty."""
    if not 0 < p <= 100:
        raise ValueError("p must be in (0, 100]")
    total = sum(bins.values())
    if total <= 0:
        return None
    rank = max(1, math.ceil(p / 100 * total - 1e-9))
    cumulative = 0
    for edge in sorted(bins):
        cumulative += bins[edge]
        if cumulative >= rank:
            return edge
    return max(bins)  # pragma: no cover - unreachable, cumulative reaches total


def percentiles(bins: Mapping[int, int], ps: Iterable[float] = (50, 95, 99)) -> dict[str, int | None]:
    """Several percentiles at once, keyed ``p50``, ``p95``, ... (``p99.9`` keeps its dot)."""
    return {f"p{p:g}": percentile(bins, p) for p in ps}
