"""In-process overhead: µs per request of each variant, the ASGI app called directly (no sockets).

Every (variant, app) pair runs in its own worker process (``worker.py``) with the interpreter of
its own virtual environment, lifespan started; the workers are driven one at a time, interleaved:
each round runs every scenario on every variant in a shuffled order, and the medians over the
rounds are reported. The rounds are spread over generations of fresh worker processes (a
process's speed depends on its memory layout). Overhead = variant - bare app, per scenario.

    python -m benchmarks.client.overhead [--quick] [--rounds R] [--generations G] [--requests N]
"""

from __future__ import annotations

import argparse
import random
from typing import Any

from benchmarks import common
from benchmarks.client import apps

# (name, reference, target, stretch, rule): instrument_app's overhead / the reference's, over all
# scenarios ("all") or in every scenario ("each").
TARGETS = (
    ("vs_otel", "otel", 0.55, 0.5, "all"),
    ("vs_classic", "apitally-0.25.1", 1.0, None, "each"),
    ("vs_apitally_1", "apitally-1.0.0", 0.6, None, "all"),
)
# Measured rounds, spread over generations of worker processes: a process's speed depends on its
# memory layout and hash seed (one scenario's overhead moved by up to 50 % between two runs with one
# process per variant), so each generation starts fresh workers, warms them up for one round and
# measures a few; the medians are over every generation's rounds.
FULL_ROUNDS, FULL_GENERATIONS, FULL_REQUESTS = 10, 5, 2000
QUICK_ROUNDS, QUICK_GENERATIONS, QUICK_REQUESTS = 1, 1, 30


def run(
    *, quick: bool, rounds: int | None = None, requests: int | None = None, generations: int | None = None
) -> dict[str, Any]:
    rounds = rounds or (QUICK_ROUNDS if quick else FULL_ROUNDS)
    generations = max(1, min(generations or (QUICK_GENERATIONS if quick else FULL_GENERATIONS), rounds))
    requests = requests or (QUICK_REQUESTS if quick else FULL_REQUESTS)
    pythons = common.available_variants(apps.VARIANTS, create=not quick)
    samples: dict[tuple[str, str], list[dict[str, float]]] = {}
    info: dict[str, Any] = {}
    broken: dict[str, str] = {}
    recorded: dict[str, int | None] = {}
    rng = random.Random(8)
    with common.sink() as sink_url:
        for generation in range(generations):
            measured = rounds // generations + (generation < rounds % generations)
            workers_count = len(pythons) * len(apps.APPS)
            common.log(
                f"overhead: generation {generation + 1}/{generations}, {workers_count} workers, "
                f"1 warm-up + {measured} rounds x {requests} requests"
            )
            workers = _start_workers(pythons, sink_url, info, broken)
            try:
                for round_index in range(1 + measured):  # the first round warms up
                    for scenario in apps.SCENARIOS:
                        order = list(pythons)
                        rng.shuffle(order)
                        for variant in order:
                            reply = workers[variant, scenario.app].ask(
                                cmd="run", scenario=scenario.name, n=requests
                            )
                            if round_index > 0:
                                samples.setdefault((variant, scenario.name), []).append(reply)
                    common.log(f"  round {round_index}/{measured} done" if round_index else "  warm-up done")
                for (variant, app), worker in workers.items():
                    count = worker.ask(cmd="recorded")["recorded"]
                    key = f"{variant} {app}"
                    previous = recorded.get(key)
                    recorded[key] = None if count is None else (previous or 0) + count
            finally:
                for worker in workers.values():
                    worker.close()
    return summarize(samples, list(pythons), info, broken, recorded, rounds, requests, generations)


def _start_workers(
    pythons: dict[str, str], sink_url: str, info: dict[str, Any], broken: dict[str, str]
) -> dict[tuple[str, str], common.JsonProcess]:
    workers: dict[tuple[str, str], common.JsonProcess] = {}
    try:
        for variant, python in pythons.items():
            for app in apps.APPS:
                args = ["--variant", variant, "--app", app, "--sink-url", sink_url]
                workers[variant, app] = common.JsonProcess([python, "-m", "benchmarks.client.worker", *args])
        for (variant, _), worker in workers.items():  # started in parallel, now wait for each
            info[variant] = {"python": worker.hello["python"], "versions": worker.hello["versions"]}
            for scenario in apps.SCENARIOS:
                got = worker.hello["statuses"].get(scenario.name, scenario.expect)
                if got != scenario.expect:
                    broken[f"{variant}: {scenario.name}"] = f"status {got}, expected {scenario.expect}"
    except BaseException:
        for worker in workers.values():
            worker.close()
        raise
    return workers


def summarize(
    samples: dict[tuple[str, str], list[dict[str, float]]],
    variants: list[str],
    info: dict[str, Any],
    broken: dict[str, str],
    recorded: dict[str, int | None],
    rounds: int,
    requests: int,
    generations: int = 1,
) -> dict[str, Any]:
    scenarios: dict[str, dict[str, dict[str, Any]]] = {}
    for scenario in apps.SCENARIOS:
        rows = scenarios[scenario.name] = {}
        for variant in variants:
            walls = [s["us"] for s in samples[variant, scenario.name]]
            cpus = [s["cpu_us"] for s in samples[variant, scenario.name]]
            rows[variant] = {
                "us": common.median(walls),
                "cpu_us": common.median(cpus),
                "p25_us": common.quantile(walls, 0.25),
                "p75_us": common.quantile(walls, 0.75),
                "samples_us": [round(w, 2) for w in walls],
            }
        for variant in variants:
            rows[variant]["overhead_us"] = rows[variant]["us"] - rows["bare"]["us"]
            rows[variant]["cpu_overhead_us"] = rows[variant]["cpu_us"] - rows["bare"]["cpu_us"]
    ratios = {}
    for name, reference, target, stretch, rule in TARGETS:
        if "apitally-otel" not in variants or reference not in variants:
            continue
        per_scenario = {
            s: rows["apitally-otel"]["overhead_us"] / rows[reference]["overhead_us"]
            for s, rows in scenarios.items()
        }
        total = sum(r["apitally-otel"]["overhead_us"] for r in scenarios.values()) / sum(
            r[reference]["overhead_us"] for r in scenarios.values()
        )
        judged = max(per_scenario.values()) if rule == "each" else total
        # The same ratios on CPU time (all the worker's threads): less moved by other processes.
        cpu = {
            s: rows["apitally-otel"]["cpu_overhead_us"] / rows[reference]["cpu_overhead_us"]
            for s, rows in scenarios.items()
        }
        cpu_total = sum(r["apitally-otel"]["cpu_overhead_us"] for r in scenarios.values()) / sum(
            r[reference]["cpu_overhead_us"] for r in scenarios.values()
        )
        ratios[name] = {
            "reference": reference,
            "target": target,
            "stretch": stretch,
            "rule": rule,
            "per_scenario": per_scenario,
            "all_scenarios": total,
            "per_scenario_cpu": cpu,
            "all_scenarios_cpu": cpu_total,
            "met": judged <= target,
            "stretch_met": stretch is not None and judged <= stretch,
        }
    return {
        "rounds": rounds,
        "generations": generations,
        "requests_per_round": requests,
        "variants": variants,
        "environments": info,
        "scenarios": scenarios,
        "ratios": ratios,
        "recorded": recorded,
        "broken": broken,
    }


def report(result: dict[str, Any]) -> str:
    names = [s.name for s in apps.SCENARIOS]
    rows: list[list[Any]] = []
    for variant in result["variants"]:
        row: list[Any] = [apps.VARIANT_LABELS[variant]]
        for name in names:
            cell = result["scenarios"][name][variant]
            row.append(
                f"{cell['us']:.1f}" if variant == "bare" else f"{cell['us']:.1f} (+{cell['overhead_us']:.1f})"
            )
        rows.append(row)
    for ratio in result["ratios"].values():
        label = f"overhead ratio vs {ratio['reference']} (target ≤ {ratio['target']}{_rule(ratio)})"
        rows.append([label, *[f"{ratio['per_scenario'][n]:.2f}" for n in names]])
    text = [
        f"µs/request (median of {result['rounds']} interleaved rounds x {result['requests_per_round']} "
        f"requests, over {result.get('generations', 1)} generations of worker processes; overhead vs "
        "bare in parentheses)",
        "",
        common.table(["variant", *names], rows),
    ]
    for ratio in result["ratios"].values():
        text.append("\n" + verdict(ratio))
    if result["broken"]:
        text.append("\nWrong responses: " + "; ".join(f"{k}: {v}" for k, v in result["broken"].items()))
    return "\n".join(text)


def _rule(ratio: dict[str, Any]) -> str:
    return " in each scenario" if ratio["rule"] == "each" else " over all scenarios"


def verdict(ratio: dict[str, Any]) -> str:
    """One line: the ratio that is judged, its target (and stretch), met or missed."""
    each = ratio["rule"] == "each"
    judged = max(ratio["per_scenario"].values()) if each else ratio["all_scenarios"]
    what = "highest scenario" if each else "all scenarios"
    stretch = ""
    if ratio.get("stretch") is not None:
        stretch = f"; stretch ≤ {ratio['stretch']}: {'met' if ratio['stretch_met'] else 'missed'}"
    cpu = ""
    if "all_scenarios_cpu" in ratio:
        cpu_judged = max(ratio["per_scenario_cpu"].values()) if each else ratio["all_scenarios_cpu"]
        cpu = f"; on CPU time {cpu_judged:.2f}"
    return (
        f"apitally-otel overhead / {ratio['reference']} overhead, {what}: {judged:.2f} "
        f"(target ≤ {ratio['target']}: {'met' if ratio['met'] else 'MISSED'}{stretch}{cpu})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny counts; skip peers without a venv")
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--requests", type=int)
    parser.add_argument("--generations", type=int, help="fresh worker processes this many times (default 5)")
    args = parser.parse_args()
    result = run(quick=args.quick, rounds=args.rounds, requests=args.requests, generations=args.generations)
    common.save_json(common.RESULTS_DIR / "overhead.json", result)
    print(report(result))


if __name__ == "__main__":
    main()
