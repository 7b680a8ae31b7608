"""The garbage collector's work per request that each variant causes, behind uvicorn's protocol.

Each variant runs in ``uvicorn_worker.py`` (uvicorn's h11 protocol, in-memory transports, 16
connections in flight) in its own interpreter, so no other process and no socket is involved::

    python -m benchmarks.client.gc_pressure [--variants bare,otel,apitally-otel,apitally-0.25.1] [-n 30000]

Reported per scenario and variant: the objects tracked by the collector that requests leave alive
(per request, collector paused), the collections per 1 000 requests of each generation and the
collector's CPU µs per request over ``n`` requests (after as many to warm up). An object a request
leaves alive counts towards the next young collection, so one per request makes a collection every
~700 requests where the bare app makes none; under ``wrk`` the in-flight requests' own objects add
collections for every variant (see ``benchmarks/README.md``).
"""

from __future__ import annotations

import argparse
from typing import Any

from benchmarks import common
from benchmarks.client import apps

VARIANTS = ("bare", "otel", "apitally-otel", "apitally-0.25.1")
SCENARIOS = (0, 3)  # a Starlette GET, a FastAPI 422 (its validation body is kept until folded)
FULL_REQUESTS, QUICK_REQUESTS = 30_000, 300


def measure(variant: str, python: str, scenario: apps.Scenario, n: int, sink_url: str) -> dict[str, Any]:
    args = ["--variant", variant, "--app", scenario.app, "--sink-url", sink_url]
    worker = common.JsonProcess([python, "-m", "benchmarks.client.uvicorn_worker", *args])
    try:
        assert worker.hello["ready"]
        worker.ask(cmd="run", scenario=scenario.name, n=n)  # warm-up: the startup's threads are done
        measured = worker.ask(cmd="run", scenario=scenario.name, n=n)
        tracked = worker.ask(cmd="tracked", scenario=scenario.name, n=min(n, 5_000))
    finally:
        worker.close(timeout=120)
    return {
        "tracked_per_request": tracked["tracked_per_request"],
        "collections_per_1k": [count * 1000 / n for count in measured["gc_counts"]],
        "gc_us": measured["gc_us"],
    }


def run(*, quick: bool, variants: tuple[str, ...] = VARIANTS, requests: int | None = None) -> dict[str, Any]:
    n = requests or (QUICK_REQUESTS if quick else FULL_REQUESTS)
    pythons = common.available_variants(variants, create=not quick)
    rows: dict[str, dict[str, Any]] = {}
    with common.sink() as sink_url:
        for index in SCENARIOS:
            scenario = apps.SCENARIOS[index]
            for variant, python in pythons.items():
                result = measure(variant, python, scenario, n, sink_url)
                common.log(f"gc: {scenario.name} / {variant}: {result}")
                rows.setdefault(scenario.name, {})[variant] = result
    return {"requests": n, "connections": 16, "scenarios": rows}


def report(result: dict[str, Any]) -> str:
    rows = []
    for scenario, variants in result["scenarios"].items():
        for variant, r in variants.items():
            rows.append(
                [
                    scenario,
                    apps.VARIANT_LABELS[variant],
                    f"{r['tracked_per_request']:.2f}",
                    " / ".join(f"{c:.1f}" for c in r["collections_per_1k"]),
                    f"{r['gc_us']:.2f}",
                ]
            )
    headers = ["scenario", "variant", "objects left / request", "collections / 1k (gen 0/1/2)"]
    title = f"uvicorn's h11 protocol, {result['connections']} connections, {result['requests']} requests\n\n"
    return title + common.table([*headers, "GC µs / request"], rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("-n", type=int, default=FULL_REQUESTS, help="measured requests per variant, scenario")
    args = parser.parse_args()
    print(report(run(quick=False, variants=tuple(args.variants.split(",")), requests=args.n)))


if __name__ == "__main__":
    main()
