"""Where a variant's per-request time goes: cProfile over in-process requests, grouped by package.

    python -m benchmarks.client.profile_overhead --variant apitally-otel --scenario 0 [--requests 20000]
    python -m benchmarks.client.profile_overhead --variant otel --scenario 0

Runs in this interpreter (the project's variants; a peer needs its own venv's Python). Prints the
µs/request each package spends in its own code (cProfile's "tottime", so profiler overhead is
included and absolute numbers are inflated: compare variants, not seconds), then the top functions.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import time
from typing import Any

from benchmarks import common
from benchmarks.client import apps, worker

GROUPS = (
    ("apitally_otel", "apitally_otel/"),
    ("opentelemetry sdk", "opentelemetry/sdk/"),
    ("opentelemetry contrib asgi", "opentelemetry/instrumentation/"),
    ("opentelemetry api/util", "opentelemetry/"),
    ("starlette", "starlette/"),
    ("fastapi", "fastapi/"),
    ("pydantic", "pydantic"),
    ("asyncio", "asyncio/"),
    ("benchmark harness", "benchmarks/"),
)


def group_of(filename: str) -> str:
    for name, marker in GROUPS:
        if marker in filename:
            return name
    return "builtins/other" if filename.startswith("~") or "python3" in filename else filename


def profile(variant: str, scenario: apps.Scenario, requests: int) -> tuple[float, pstats.Stats]:
    with common.sink() as sink_url:
        handle = apps.setup(variant, scenario.app, sink_url)
        loop = asyncio.new_event_loop()
        lifespan = worker.Lifespan(handle.app)
        loop.run_until_complete(lifespan.start())
        loop.run_until_complete(worker.run_batch(handle.app, scenario, 2_000))  # warm up
        start = time.perf_counter()
        loop.run_until_complete(worker.run_batch(handle.app, scenario, requests))
        plain = (time.perf_counter() - start) / requests * 1e6
        profiler = cProfile.Profile()
        profiler.enable()
        loop.run_until_complete(worker.run_batch(handle.app, scenario, requests))
        profiler.disable()
        loop.run_until_complete(lifespan.stop())
        loop.close()
    return plain, pstats.Stats(profiler)


def by_group(stats: pstats.Stats, requests: int) -> dict[str, float]:
    totals: dict[str, float] = {}
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    for (filename, _, _), (_, _, tottime, _, _) in raw.items():
        group = group_of(filename)
        totals[group] = totals.get(group, 0.0) + tottime / requests * 1e6
    return dict(sorted(totals.items(), key=lambda item: -item[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    own = [v for v in apps.VARIANTS if v not in apps.PEER_VARIANTS]
    parser.add_argument("--variant", default="apitally-otel", choices=own)
    parser.add_argument("--scenario", type=int, default=0, help=f"0..{len(apps.SCENARIOS) - 1}")
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    scenario = apps.SCENARIOS[args.scenario]
    plain, stats = profile(args.variant, scenario, args.requests)
    print(f"{args.variant} / {scenario.name}: {plain:.1f} µs/request without the profiler\n")
    rows = [[group, us] for group, us in by_group(stats, args.requests).items() if us >= 0.5]
    print(common.table(["package (own time)", "µs/request, profiled"], rows) + "\n")
    stats.sort_stats("tottime").print_stats(args.top)


if __name__ == "__main__":
    main()
