"""Throughput under load: each variant served by uvicorn (a subprocess on a socket bound here),
loaded by ``wrk`` at a fixed number of connections for a fixed duration.

Two uvicorn set-ups: ``standard`` (uvloop and the httptools parser, what ``uvicorn[standard]`` and
``fastapi[standard]`` install and most deployments run) and ``h11`` (the asyncio loop and the
pure-Python h11 parser, what a plain ``pip install uvicorn`` runs). The server is pinned to CPU 0
and wrk to CPU 1 where the machine has two or more. Reported: requests/s and p50/p99 latency, their
ratios to the bare app, the server's CPU time per request and the garbage collector's share of it
(with its young and full collections per 1 000 requests), and instrument_app's requests/s over the
contrib baseline's in each round.

    python -m benchmarks.client.throughput [--quick] [--duration S] [--connections C] [--rounds R]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil

from benchmarks import common
from benchmarks.client import apps, collector

SCENARIOS = [s for s in apps.SCENARIOS if s.expect == 200 and "mount" not in s.name]
TARGET_RPS_VS_OTEL = 1.3  # instrument_app's requests/s / the contrib baseline's
# (loop, http) of each uvicorn set-up; the server's own share of a request differs ~3x between them.
SERVERS = {"standard": ("uvloop", "httptools"), "h11": ("asyncio", "h11")}
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


@contextlib.contextmanager
def served(
    python: str,
    variant: str,
    app: str,
    sink_url: str,
    cpu: int | None,
    server: str = "h11",
    gc_stats: Path | None = None,
) -> Iterator[tuple[str, psutil.Process]]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.set_inheritable(True)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    loop, http = SERVERS[server]
    args = ["--variant", variant, "--app", app, "--sink-url", sink_url, "--fd", str(sock.fileno())]
    args += ["--loop", loop, "--http", http]
    if gc_stats is not None:
        args += ["--gc-stats", str(gc_stats)]
    proc = subprocess.Popen(
        [python, "-m", "benchmarks.client.serve", *args],
        cwd=common.ROOT,  # where the package is, in every venv
        pass_fds=[sock.fileno()],
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    try:
        if cpu is not None:
            psutil.Process(proc.pid).cpu_affinity([cpu])
        probe = next(s for s in SCENARIOS if s.app == app)

        def ready() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"server for {variant}/{app} exited with {proc.returncode}")
            with contextlib.suppress(httpx.TransportError):
                return httpx.request(
                    probe.method, url + probe.path, content=probe.body, headers=dict(_headers(probe))
                ).status_code in (200, 404, 405)
            return False

        if not common.wait_until(ready, timeout=60, interval=0.1):
            raise RuntimeError(f"server for {variant}/{app} did not start")
        yield url, psutil.Process(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        sock.close()


def collector_snapshot(server: psutil.Process, path: Path) -> dict[str, Any]:
    """The server's garbage collector's work so far (see ``serve.py --gc-stats``)."""
    path.unlink(missing_ok=True)
    server.send_signal(signal.SIGUSR1)
    if not common.wait_until(path.exists, timeout=30):
        raise RuntimeError("the server wrote no collector statistics")
    snapshot: dict[str, Any] = json.loads(path.read_text())
    return snapshot


def _headers(scenario: apps.Scenario) -> list[tuple[str, str]]:
    return [(k.decode(), v.decode()) for k, v in scenario.headers]


def _lua(scenario: apps.Scenario, directory: Path) -> Path:
    path = directory / f"{SCENARIOS.index(scenario)}.lua"
    lines = [f'wrk.method = "{scenario.method}"']
    if scenario.body:
        lines.append("wrk.body = [[" + scenario.body.decode() + "]]")
    lines += [f'wrk.headers["{k}"] = "{v}"' for k, v in _headers(scenario)]
    path.write_text("\n".join(lines) + "\n")
    return path


def wrk(url: str, script: Path, duration: float, connections: int, cpu: int | None) -> dict[str, float]:
    args = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(duration))}s", "--latency", "-s", str(script)]
    if cpu is not None and shutil.which("taskset"):
        args = ["taskset", "-c", str(cpu), *args]
    output = subprocess.run([*args, url], capture_output=True, text=True, check=True).stdout
    result = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))}  # type: ignore[union-attr]
    for pct in ("50", "99"):
        value, unit = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", output, re.M).groups()  # type: ignore[union-attr]
        result[f"p{pct}_ms"] = float(value) * _UNITS[unit]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    result["non_2xx"] = float(errors.group(1)) if errors else 0.0
    return result


def run(
    *, quick: bool, duration: float | None = None, connections: int = 16, rounds: int | None = None
) -> dict[str, Any]:
    if shutil.which("wrk") is None:
        common.log("throughput: wrk is not installed (apt-get install wrk); skipped")
        return {"skipped": "wrk not installed"}
    duration = duration or (1.0 if quick else 5.0)
    rounds = rounds or (1 if quick else 3)
    warmup = 0.0 if quick else 1.0
    pythons = common.available_variants(apps.VARIANTS, create=not quick)
    server_cpu, client_cpu = (0, 1) if (os.cpu_count() or 1) >= 2 else (None, None)
    # samples[server][scenario][variant]: one measurement per round
    samples: dict[str, dict[str, dict[str, list[dict[str, float]]]]] = {}
    rng = random.Random(16)
    with common.sink() as sink_url, tempfile.TemporaryDirectory() as tmp:
        # Interleaved: every round serves every variant once per set-up and scenario, in a shuffled
        # order; medians are reported, so that a burst of load on the machine moves one sample, not
        # one variant.
        for round_index in range(rounds):
            for server_name in SERVERS:
                for scenario in SCENARIOS[:1] if quick else SCENARIOS:
                    script = _lua(scenario, Path(tmp))
                    order = list(pythons.items())
                    rng.shuffle(order)
                    for variant, python in order:
                        measured = _measure(
                            python,
                            variant,
                            scenario,
                            script,
                            sink_url,
                            server_name,
                            warmup,
                            duration,
                            connections,
                            (server_cpu, client_cpu),
                        )
                        by_scenario = samples.setdefault(server_name, {}).setdefault(scenario.name, {})
                        by_scenario.setdefault(variant, []).append(measured)
                        common.log(
                            f"throughput {round_index + 1}/{rounds}: {server_name} {scenario.name} / "
                            f"{variant}: {measured['rps']:.0f} req/s"
                        )
    return {
        "duration_s": duration,
        "rounds": rounds,
        "connections": connections,
        "variants": list(pythons),
        "servers": {
            name: {
                "loop": SERVERS[name][0],
                "http": SERVERS[name][1],
                "scenarios": summarize(by_scenario, pythons),
            }
            for name, by_scenario in samples.items()
        },
    }


def _measure(
    python: str,
    variant: str,
    scenario: apps.Scenario,
    script: Path,
    sink_url: str,
    server_name: str,
    warmup: float,
    duration: float,
    connections: int,
    cpus: tuple[int | None, int | None],
) -> dict[str, float]:
    server_cpu, client_cpu = cpus
    stats = script.parent / "collector.json"
    with served(python, variant, scenario.app, sink_url, server_cpu, server_name, stats) as (url, server):
        if warmup:
            wrk(url + scenario.path, script, warmup, connections, client_cpu)
        gc_before = collector_snapshot(server, stats)
        before = server.cpu_times()
        measured = wrk(url + scenario.path, script, duration, connections, client_cpu)
        after = server.cpu_times()
        gc_after = collector_snapshot(server, stats)
    requests = measured["rps"] * duration
    # The server's CPU time per request (all its threads): what the variant costs, even when other
    # processes on the machine take the server's CPU away from it.
    cpu_s = (after.user - before.user) + (after.system - before.system)
    measured["cpu_us_per_request"] = cpu_s / max(requests, 1.0) * 1e6
    # Part of it is the garbage collector's: what requests leave alive while others are in flight.
    work = collector.difference(gc_before, gc_after, requests)
    measured["gc_us_per_request"] = work["gc_us_per_request"]
    measured["young_gcs_per_1k"] = work["collections_per_1k"][0]
    measured["full_gcs_per_1k"] = work["collections_per_1k"][2]
    measured["longest_gc_ms"] = max(work["longest_ms"])
    return measured


def summarize(
    by_scenario: dict[str, dict[str, list[dict[str, float]]]], pythons: dict[str, str]
) -> dict[str, dict[str, dict[str, Any]]]:
    results: dict[str, dict[str, dict[str, Any]]] = {}
    for name, by_variant in by_scenario.items():
        rows: dict[str, dict[str, Any]] = {
            variant: {
                **{key: common.median([m[key] for m in runs]) for key in runs[0]},
                "rps_samples": [round(m["rps"]) for m in runs],
            }
            for variant, runs in ((v, by_variant[v]) for v in pythons)
        }
        bare = rows["bare"]
        for row in rows.values():
            row["rps_ratio"] = row["rps"] / bare["rps"]
            row["p50_ratio"] = row["p50_ms"] / bare["p50_ms"]
            row["p99_ratio"] = row["p99_ms"] / bare["p99_ms"]
        if "apitally-otel" in rows and "otel" in rows:
            # Within a round the two ran minutes apart at most: the per-round ratio is less moved by
            # the machine's slow and fast spells than the ratio of the medians.
            ours, theirs = by_variant["apitally-otel"], by_variant["otel"]
            rows["apitally-otel"]["rps_vs_otel_by_round"] = [
                round(a["rps"] / b["rps"], 3) for a, b in zip(ours, theirs, strict=True)
            ]
        results[name] = rows
    return results


def verdicts(result: dict[str, Any]) -> list[str]:
    """instrument_app's requests/s against the contrib baseline's, one line per set-up and scenario."""
    lines = []
    for server_name, server in result.get("servers", {}).items():
        for name, rows in server["scenarios"].items():
            if "apitally-otel" not in rows or "otel" not in rows:
                continue
            ours, theirs = rows["apitally-otel"], rows["otel"]
            ratio = ours["rps"] / theirs["rps"]
            verdict = "met" if ratio >= TARGET_RPS_VS_OTEL else "MISSED"
            rounds = ours.get("rps_vs_otel_by_round", [])
            spread = f"; by round {min(rounds):.2f} to {max(rounds):.2f}" if len(rounds) > 1 else ""
            cpu = theirs["cpu_us_per_request"] / ours["cpu_us_per_request"]
            lines.append(
                f"instrument_app requests/s / contrib baseline's, uvicorn {server_name} "
                f"({server['loop']}, {server['http']}), {name}: {ratio:.2f} (target ≥ {TARGET_RPS_VS_OTEL}: "
                f"{verdict}{spread}; from the server's CPU time per request: {cpu:.2f})"
            )
    return lines


def report(result: dict[str, Any]) -> str:
    if "skipped" in result:
        return f"Throughput: skipped ({result['skipped']})"
    rows: list[list[Any]] = []
    for server_name, server in result["servers"].items():
        for name, by_variant in server["scenarios"].items():
            for variant, r in by_variant.items():
                rows.append(
                    [
                        server_name,
                        name,
                        apps.VARIANT_LABELS[variant],
                        f"{r['rps']:,.0f} ({r['rps_ratio']:.2f})",
                        f"{r['p50_ms']:.2f} ({r['p50_ratio']:.2f})",
                        f"{r['p99_ms']:.2f} ({r['p99_ratio']:.2f})",
                        f"{r['cpu_us_per_request']:.0f}",
                        f"{r['gc_us_per_request']:.1f}"
                        f" ({r['young_gcs_per_1k']:.1f} / {r['full_gcs_per_1k']:.2f})",
                    ]
                )
    servers = "; ".join(f"{name}: {s['loop']} loop, {s['http']}" for name, s in result["servers"].items())
    head = (
        f"uvicorn (1 process; {servers}), wrk -t1 -c{result['connections']} "
        f"-d{result['duration_s']:.0f}s, median of {result.get('rounds', 1)} interleaved rounds; "
        "ratios to the bare app in parentheses"
    )
    headers = ["server", "scenario", "variant", "req/s (x bare)", "p50 ms (x bare)", "p99 ms (x bare)"]
    headers += ["server CPU µs/req", "of which GC µs/req (young / full GCs per 1k req)"]
    return head + "\n\n" + common.table(headers, rows) + "".join("\n\n" + v for v in verdicts(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one scenario, 1 s runs, no peer venv creation")
    parser.add_argument("--duration", type=float)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 3)")
    args = parser.parse_args()
    result = run(quick=args.quick, duration=args.duration, connections=args.connections, rounds=args.rounds)
    common.save_json(common.RESULTS_DIR / "throughput.json", result)
    print(report(result))


if __name__ == "__main__":
    main()
