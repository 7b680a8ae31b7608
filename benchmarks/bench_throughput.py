"""Throughput under load: each variant served by uvicorn (a subprocess on a socket bound here),
loaded by ``wrk`` at a fixed number of connections for a fixed duration.

The server is pinned to CPU 0 and wrk to CPU 1 where the machine has two or more. Reported:
requests/s and p50/p99 latency, and their ratios to the bare app.

    python benchmarks/bench_throughput.py [--quick] [--duration S] [--connections C] [--rounds R]
"""

from __future__ import annotations

import argparse
import contextlib
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

import apps
import common

SCENARIOS = [s for s in apps.SCENARIOS if s.expect == 200 and "mount" not in s.name]
TARGET_RPS_VS_OTEL = 1.3  # instrument_app's requests/s / the contrib baseline's
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


@contextlib.contextmanager
def served(
    python: str, variant: str, app: str, sink_url: str, cpu: int | None
) -> Iterator[tuple[str, psutil.Process]]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.set_inheritable(True)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    args = ["--variant", variant, "--app", app, "--sink-url", sink_url, "--fd", str(sock.fileno())]
    proc = subprocess.Popen(
        [python, "serve.py", *args],
        cwd=common.BENCH_DIR,
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
    samples: dict[str, dict[str, list[dict[str, float]]]] = {}
    rng = random.Random(16)
    with common.sink() as sink_url, tempfile.TemporaryDirectory() as tmp:
        # Interleaved: every round serves every variant once, in a shuffled order; medians are
        # reported, so that a burst of load on the machine moves one sample, not one variant.
        for round_index in range(rounds):
            for scenario in SCENARIOS[:1] if quick else SCENARIOS:
                script = _lua(scenario, Path(tmp))
                order = list(pythons.items())
                rng.shuffle(order)
                for variant, python in order:
                    with served(python, variant, scenario.app, sink_url, server_cpu) as (url, server):
                        if warmup:
                            wrk(url + scenario.path, script, warmup, connections, client_cpu)
                        before = server.cpu_times()
                        measured = wrk(url + scenario.path, script, duration, connections, client_cpu)
                        after = server.cpu_times()
                    # The server's CPU time per request (all its threads): what the variant costs, even
                    # when other processes on the machine take the server's CPU away from it.
                    cpu_s = (after.user - before.user) + (after.system - before.system)
                    measured["cpu_us_per_request"] = cpu_s / max(measured["rps"] * duration, 1.0) * 1e6
                    samples.setdefault(scenario.name, {}).setdefault(variant, []).append(measured)
                    common.log(
                        f"throughput {round_index + 1}/{rounds}: {scenario.name} / {variant}: "
                        f"{measured['rps']:.0f} req/s"
                    )
    results: dict[str, dict[str, dict[str, float]]] = {}
    for name, by_variant in samples.items():
        results[name] = {
            variant: {
                **{key: common.median([m[key] for m in runs]) for key in runs[0]},
                "rps_samples": [round(m["rps"]) for m in runs],  # type: ignore[dict-item]
            }
            for variant, runs in ((v, by_variant[v]) for v in pythons)
        }
    for rows in results.values():
        bare = rows["bare"]
        for row in rows.values():
            row["rps_ratio"] = row["rps"] / bare["rps"]
            row["p50_ratio"] = row["p50_ms"] / bare["p50_ms"]
            row["p99_ratio"] = row["p99_ms"] / bare["p99_ms"]
    return {
        "duration_s": duration,
        "rounds": rounds,
        "connections": connections,
        "variants": list(pythons),
        "scenarios": results,
    }


def verdicts(result: dict[str, Any]) -> list[str]:
    """instrument_app's requests/s against the contrib baseline's, one line per scenario."""
    lines = []
    for name, rows in result.get("scenarios", {}).items():
        if "apitally-otel" in rows and "otel" in rows:
            ratio = rows["apitally-otel"]["rps"] / rows["otel"]["rps"]
            verdict = "met" if ratio >= TARGET_RPS_VS_OTEL else "MISSED"
            cpu = ""
            if "cpu_us_per_request" in rows["otel"]:
                implied = rows["otel"]["cpu_us_per_request"] / rows["apitally-otel"]["cpu_us_per_request"]
                cpu = f"; from the server's CPU time per request: {implied:.2f}"
            lines.append(
                f"instrument_app requests/s / contrib baseline's, {name}: {ratio:.2f} "
                f"(target ≥ {TARGET_RPS_VS_OTEL}: {verdict}{cpu})"
            )
    return lines


def report(result: dict[str, Any]) -> str:
    if "skipped" in result:
        return f"Throughput: skipped ({result['skipped']})"
    rows: list[list[Any]] = []
    for name, by_variant in result["scenarios"].items():
        for variant, r in by_variant.items():
            rows.append(
                [
                    name,
                    apps.VARIANT_LABELS[variant],
                    f"{r['rps']:,.0f} ({r['rps_ratio']:.2f})",
                    f"{r['p50_ms']:.2f} ({r['p50_ratio']:.2f})",
                    f"{r['p99_ms']:.2f} ({r['p99_ratio']:.2f})",
                    f"{r['cpu_us_per_request']:.0f}" if "cpu_us_per_request" in r else "",
                ]
            )
    head = (
        f"uvicorn (1 process, h11, asyncio loop), wrk -t1 -c{result['connections']} "
        f"-d{result['duration_s']:.0f}s, median of {result.get('rounds', 1)} interleaved rounds; "
        "ratios to the bare app in parentheses"
    )
    headers = ["scenario", "variant", "req/s (x bare)", "p50 ms (x bare)", "p99 ms (x bare)"]
    headers.append("server CPU µs/req")
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
