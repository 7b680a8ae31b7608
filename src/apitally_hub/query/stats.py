"""Numbers derived from aggregate rows: error rates, percentiles, Apdex — one definition each,
used by the JSON API, the dashboard, the report and alerting alike.

``client_errors`` are responses 400-499, ``server_errors`` 500-599, ``error_rate`` is
``(client_errors + server_errors) / requests``. Percentiles: see :mod:`.percentiles`.

Apdex with threshold ``T`` ms over the 10 ms response-time bins: a request is *satisfied* when
its bin's upper edge is at most ``T`` (``edge + 10 <= T``), *tolerating* up to ``4 T``,
*frustrated* beyond; ``apdex = (satisfied + tolerating / 2) / requests``, and server errors
(5xx) count as frustrated whatever their time.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from apitally_hub.query.percentiles import percentiles
from apitally_hub.storage.records import Bins, TrafficRow

BIN_MS = 10
DEFAULT_APDEX_MS = 500


def apdex(bins: Mapping[int, int], threshold_ms: int, server_errors: int = 0) -> float | None:
    total = sum(bins.values())
    if total <= 0:
        return None
    satisfied = sum(n for edge, n in bins.items() if edge + BIN_MS <= threshold_ms)
    tolerating = sum(n for edge, n in bins.items() if threshold_ms < edge + BIN_MS <= 4 * threshold_ms)
    # 5xx responses are frustrated: take them out of the faster classes first (they may be fast)
    errors = min(server_errors, total)
    from_satisfied = min(errors, satisfied)
    satisfied -= from_satisfied
    tolerating -= min(errors - from_satisfied, tolerating)
    return round((satisfied + tolerating / 2) / total, 4)


def error_rate(requests: int, client_errors: int, server_errors: int) -> float:
    return round((client_errors + server_errors) / requests, 6) if requests else 0.0


def traffic_stats(row: TrafficRow, *, apdex_ms: int | None = None) -> dict[str, Any]:
    """The counts of a row with what follows from them (what every traffic answer carries)."""
    ps = percentiles(row.response_times, (50, 75, 95, 99))
    result: dict[str, Any] = {
        "requests": row.request_count,
        "client_errors": row.client_errors,
        "server_errors": row.server_errors,
        "error_rate": error_rate(row.request_count, row.client_errors, row.server_errors),
        "p50_ms": ps["p50"],
        "p75_ms": ps["p75"],
        "p95_ms": ps["p95"],
        "p99_ms": ps["p99"],
        "request_bytes": row.request_size_sum,
        "response_bytes": row.response_size_sum,
    }
    if apdex_ms is not None:
        result["apdex"] = apdex(row.response_times, apdex_ms, row.server_errors)
    return result


def merge_rows(rows: list[TrafficRow], key: tuple[Any, ...] = ()) -> TrafficRow:
    """One row with the sums of ``rows`` (e.g. an endpoint's rows per status code)."""
    bins: dict[str, Bins] = {"response_times": {}, "request_sizes": {}, "response_sizes": {}}
    for row in rows:
        for name, target in bins.items():
            for edge, n in getattr(row, name).items():
                target[edge] = target.get(edge, 0) + n
    return TrafficRow(
        key,
        sum(r.request_count for r in rows),
        sum(r.client_errors for r in rows),
        sum(r.server_errors for r in rows),
        sum(r.request_size_sum for r in rows),
        sum(r.response_size_sum for r in rows),
        bins["response_times"],
        bins["request_sizes"],
        bins["response_sizes"],
    )
