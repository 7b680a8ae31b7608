"""Run every benchmark, write ``results/latest.json`` and print a markdown report.

From the repository's root (the benchmarks are a package, and import the tests' helpers)::

    python -m benchmarks.run            # the full run (creates the peers' venvs on first use)
    python -m benchmarks.run --quick    # seconds; skips peers without a venv and wrk if absent
    python -m benchmarks.run --only overhead export

The quick mode asserts nothing about speed: it keeps the scripts working (CI) and writes
``results/quick.json`` so that it never replaces the figures of a full run.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks import common
from benchmarks.client import (
    apps,
    export,
    gc_pressure,
    hostile_hub,
    memory,
    overhead,
    request_log,
    throughput,
)
from benchmarks.hub import abuse, alerting, dashboard, otlp, storage

Runner = Callable[..., dict[str, Any]]
BENCHMARKS: dict[str, tuple[str, Runner, Callable[[dict[str, Any]], str]]] = {
    "overhead": ("In-process overhead", overhead.run, overhead.report),
    "throughput": ("Throughput under load", throughput.run, throughput.report),
    "gc": ("Garbage-collector work per request", gc_pressure.run, gc_pressure.report),
    "memory": ("Memory with unbounded consumers", memory.run, memory.report),
    "export": ("Export cost and event-loop stall", export.run, export.report),
    "request_log": ("Request logging", request_log.run, request_log.report),
    "alerting": ("Alert evaluation cost per rule", alerting.run, alerting.report),
    "hub_abuse": ("The hub under abuse", abuse.run, abuse.report),
    "hostile_hub": ("A broken or hostile hub", hostile_hub.run, hostile_hub.report),
    "hub_storage": ("Hub storage: SQLite and PostgreSQL", storage.run, storage.report),
    "hub_otlp": ("Hub OTLP/HTTP ingest: SQLite and PostgreSQL", otlp.run, otlp.report),
    "dashboard": ("Dashboard pages' server time", dashboard.run, dashboard.report),
}


def summary(results: dict[str, Any]) -> str:
    """Each target of the performance budget (``docs/performance.md``) against this run, one line each."""
    lines = []
    for ratio in results.get("overhead", {}).get("ratios", {}).values():
        lines.append("- " + overhead.verdict(ratio).replace("apitally-otel", "instrument_app", 1))
    for line in throughput.verdicts(results.get("throughput", {})):
        lines.append("- " + line)
    for scenario, variants in results.get("gc", {}).get("scenarios", {}).items():
        ours = variants.get("apitally-otel")
        if ours is not None:
            others = ", ".join(
                f"{apps.VARIANT_LABELS[v]} {r['tracked_per_request']:.2f}"
                for v, r in variants.items()
                if v != "apitally-otel"
            )
            lines.append(
                f"- {scenario}: objects left for the garbage collector per request, instrument_app "
                f"{ours['tracked_per_request']:.2f} ({others}); GC {ours['gc_us']:.2f} µs/request"
            )
    if "memory" in results:
        memory = results["memory"]
        lines.append(
            f"- memory with {memory['consumers_per_interval']:,} new consumers per interval: max RSS "
            f"{memory['max_rss_mb']:.0f} MB — {'plateau' if memory['plateau'] else 'STILL GROWING'}"
        )
    if "export" in results:
        export = results["export"]
        stall = export["stall_with_series"]["max_lag_ms"]
        lines.append(
            f"- longest event-loop stall from exporting {export['series']:,} series: {stall:.1f} ms "
            f"(target ≤ {export['stall_target_ms']:.0f} ms) — {'met' if export['stall_met'] else 'MISSED'}"
        )
    if "hostile_hub" in results:
        runs = {r["hub"]: r for r in results["hostile_hub"]["runs"]}
        if "endless-200" in runs:
            endless = runs["endless-200"]
            lines.append(
                f"- app RSS under a hub streaming an endless body: {endless['rss_start_mb']:.0f} → peak "
                f"{endless['rss_peak_mb']:.0f} → {endless['rss_end_mb']:.0f} MB"
            )
        if "trickle" in runs:
            longest = runs["trickle"]["longest_hub_request_s"]
            lines.append(
                f"- longest single hub request under a 1 byte/s trickle: {longest} s "
                f"(deadline {results['hostile_hub']['hub_timeout_s']:g} s)"
            )
    if "hub_storage" in results:
        queries = results["hub_storage"]["queries"]
        for name, target in storage.TARGETS_MS.items():
            worst = max(queries[backend][name]["median_ms"] for backend in queries)
            lines.append(
                f"- hub {name} (slower backend): {worst:.0f} ms (target ≤ {target} ms) — "
                f"{'met' if worst <= target else 'MISSED'}"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny counts, a few seconds in all")
    parser.add_argument("--only", nargs="+", choices=list(BENCHMARKS), help="run only these")
    parser.add_argument("--output", type=Path, help="where to write the JSON results")
    args = parser.parse_args()
    selected = args.only or list(BENCHMARKS)
    results: dict[str, Any] = {"machine": common.machine(), "quick": args.quick}
    sections = []
    started = time.monotonic()
    for name in selected:
        title, run, report = BENCHMARKS[name]
        common.log(f"== {title}")
        results[name] = run(quick=args.quick)
        sections.append(f"### {title}\n\n{report(results[name])}")
    results["elapsed_s"] = round(time.monotonic() - started, 1)
    results["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    output = args.output or common.RESULTS_DIR / ("quick.json" if args.quick else "latest.json")
    common.save_json(output, results)
    machine = results["machine"]
    packages = ", ".join(f"{k} {v}" for k, v in machine["packages"].items())
    print(f"## Benchmarks ({machine['date'][:10]})\n")
    load = f"load average {machine['load_average'][0]} before, {results['load_average_after'][0]} after"
    print(f"{machine['cpu']}, {machine['cores']} cores, Python {machine['python']}; {packages}; {load}\n")
    print(summary(results) + "\n")
    print("\n\n".join(sections))
    common.log(f"results written to {output} ({results['elapsed_s']} s)")


if __name__ == "__main__":
    main()
