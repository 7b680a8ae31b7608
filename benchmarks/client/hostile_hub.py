"""The app against hostile hubs (issue 12's table, re-run): its memory, the hub requests' stalls,
request latency and shutdown time.

    python -m benchmarks.client.hostile_hub [--quick] [--seconds 25]

For each hub — the loopback sink (a healthy hub: the baseline) and each hostile hub of
``tests/support/hostile_hubs.py`` (endless 200 body, 50 MB bodies with 200 and 503, a 1 byte/s trickle, a
silent hub, garbage) — the Starlette benchmark app, instrumented from env vars (sync every 2 s,
request logging on, ``APITALLY_SHUTDOWN_TIMEOUT=3``, the default 10 s hub deadline), is served by
uvicorn in a subprocess and loaded at 50 requests/s for ``--seconds``. Its RSS is sampled every
0.5 s; the hostile hub records how long the client kept each connection. Then SIGTERM, timed until
the process exits. ``--quick``: the sink, the endless body and the trickle, 1.5 s each, 1 s deadline.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from typing import IO, Any

import httpx
import psutil

from benchmarks import common
from benchmarks.client import apps
from tests.support.hostile_hubs import MODES, HostileHub  # the tests' own hostile hubs

RATE = 50.0
SAMPLE_EVERY = 0.5
QUICK_HUBS = ("healthy", "endless-200", "trickle")
HUBS = ("healthy", *MODES)
LABELS = {"healthy": "healthy hub (loopback sink)", **MODES}


@contextlib.contextmanager
def hub(name: str) -> Iterator[tuple[str, HostileHub | None]]:
    if name == "healthy":
        with common.sink() as url:
            yield url, None
    else:
        with HostileHub(name) as hostile:
            yield hostile.url, hostile


@contextlib.contextmanager
def app_process(
    hub_url: str, *, hub_timeout: float, shutdown_timeout: float
) -> Iterator[tuple[subprocess.Popen[bytes], str, IO[bytes]]]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.set_inheritable(True)
    env = {
        **os.environ,
        "PYTHONWARNINGS": "ignore",
        "APITALLY_CLIENT_ID": apps.CLIENT_ID,
        "APITALLY_ENV": apps.ENV,
        "APITALLY_HUB_BASE_URL": hub_url,
        "APITALLY_SYNC_INTERVAL": "2",
        "APITALLY_REQUEST_LOGGING_ENABLED": "true",
        "APITALLY_SHUTDOWN_TIMEOUT": str(shutdown_timeout),
        "APITALLY_HUB_TIMEOUT": str(hub_timeout),
    }
    with tempfile.TemporaryFile() as output:  # the app's log lines, read afterwards
        proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.client.hostile_app", "--fd", str(sock.fileno())],
            cwd=common.ROOT,
            pass_fds=[sock.fileno()],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        try:
            yield proc, f"http://127.0.0.1:{sock.getsockname()[1]}", output
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            sock.close()


def measure(name: str, seconds: float, *, hub_timeout: float, shutdown_timeout: float) -> dict[str, Any]:
    with (
        hub(name) as (url, hostile),
        app_process(url, hub_timeout=hub_timeout, shutdown_timeout=shutdown_timeout) as (proc, base, output),
    ):
        with httpx.Client(base_url=base, timeout=30) as client:

            def ready() -> bool:
                if proc.poll() is not None:
                    raise RuntimeError(f"the app exited with {proc.returncode}")
                with contextlib.suppress(httpx.TransportError):
                    return client.get("/items/1").status_code == 200
                return False

            if not common.wait_until(ready, timeout=60, interval=0.1):
                raise RuntimeError("the app did not start")
            process = psutil.Process(proc.pid)
            samples: list[tuple[float, float]] = []
            stop = threading.Event()
            started = time.monotonic()

            def sample() -> None:
                while not stop.is_set():
                    samples.append((time.monotonic() - started, process.memory_info().rss / 2**20))
                    stop.wait(SAMPLE_EVERY)

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            latencies = load(client, seconds)
            end_rss = process.memory_info().rss / 2**20
            stop.set()
            sampler.join()
        stopping = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            common.log(f"{name}: the app did not exit within 60 s of SIGTERM")
        shutdown = time.monotonic() - stopping
        output.seek(0)
        lines = output.read().decode(errors="replace").splitlines()
        logged = [line for line in lines if "apitally-otel" in line]
        connections = hostile.snapshot() if hostile is not None else []
        longest = hostile.longest_request() if hostile is not None else None
    rss = [mb for _, mb in samples]
    return {
        "hub": name,
        "seconds": seconds,
        "requests": len(latencies),
        "failed_requests": sum(1 for v in latencies if v is None),
        "latency_p50_ms": common.median([v for v in latencies if v is not None]) * 1e3,
        "latency_p99_ms": common.quantile([v for v in latencies if v is not None], 0.99) * 1e3,
        "latency_max_ms": max(v for v in latencies if v is not None) * 1e3,
        "rss_start_mb": round(rss[0], 1),
        "rss_peak_mb": round(max([*rss, end_rss]), 1),
        "rss_end_mb": round(end_rss, 1),
        "rss_timeline_mb": [(round(t, 1), round(mb, 1)) for t, mb in samples],
        "hub_connections": len(connections),
        "abandoned_by_client": sum(1 for c in connections if c.client_left),
        "longest_hub_request_s": None if longest is None else round(longest, 2),
        "shutdown_s": round(shutdown, 2),
        "log_lines": len(logged),
        "log_sample": logged[:6],
        "exit_code": proc.returncode,
    }


def load(client: httpx.Client, seconds: float) -> list[float | None]:
    """GET /items/{n} at RATE per second for ``seconds``; each request's latency (None: failed)."""
    latencies: list[float | None] = []
    start = time.monotonic()
    sent = 0
    while (now := time.monotonic()) - start < seconds:
        due = start + sent / RATE
        if due > now:
            time.sleep(due - now)
        begin = time.perf_counter()
        try:
            ok = client.get(f"/items/{sent}").status_code == 200
        except httpx.TransportError:
            ok = False
        latencies.append(time.perf_counter() - begin if ok else None)
        sent += 1
    return latencies


def run(*, quick: bool, seconds: float | None = None) -> dict[str, Any]:
    seconds = seconds or (1.5 if quick else 25.0)
    hub_timeout, shutdown_timeout = (1.0, 1.0) if quick else (10.0, 3.0)
    results = []
    for name in QUICK_HUBS if quick else HUBS:
        common.log(f"hostile hub: {name} ({seconds:g} s)")
        results.append(measure(name, seconds, hub_timeout=hub_timeout, shutdown_timeout=shutdown_timeout))
    return {
        "rate": RATE,
        "seconds": seconds,
        "hub_timeout_s": hub_timeout,
        "shutdown_timeout_s": shutdown_timeout,
        "runs": results,
    }


def report(result: dict[str, Any]) -> str:
    runs = result["runs"]
    healthy = next((r for r in runs if r["hub"] == "healthy"), None)
    rows = []
    for r in runs:
        p99_ratio = r["latency_p99_ms"] / healthy["latency_p99_ms"] if healthy else float("nan")
        peak_delta = r["rss_peak_mb"] - healthy["rss_peak_mb"] if healthy else float("nan")
        longest = r["longest_hub_request_s"]
        rows.append(
            [
                LABELS[r["hub"]],
                f"{r['rss_start_mb']:.0f} / {r['rss_peak_mb']:.0f} / {r['rss_end_mb']:.0f}",
                f"{peak_delta:+.1f}",
                f"{r['hub_connections']} ({r['abandoned_by_client']})" if r["hub"] != "healthy" else "—",
                "—" if longest is None else f"{longest:.1f}",
                f"{r['latency_p50_ms']:.1f} / {r['latency_p99_ms']:.1f}",
                f"{p99_ratio:.2f}",
                f"{r['shutdown_s']:.1f}",
            ]
        )
    headers = [
        "hub",
        "app RSS MB start / peak / end",
        "peak vs healthy MB",
        "hub connections (abandoned by the client)",
        "longest hub request s",
        "latency p50 / p99 ms",
        "p99 ÷ healthy",
        "shutdown s",
    ]
    lines = [
        f"{result['rate']:.0f} requests/s for {result['seconds']:g} s per hub; sync every 2 s, request "
        f"logging on, hub deadline {result['hub_timeout_s']:g} s, "
        f"APITALLY_SHUTDOWN_TIMEOUT={result['shutdown_timeout_s']:g}:",
        "",
        common.table(headers, rows),
    ]
    for r in runs:
        if r["hub"] in ("endless-200", "big-200", "big-503"):
            points = r["rss_timeline_mb"][:: max(1, len(r["rss_timeline_mb"]) // 8)]
            timeline = ", ".join(f"{t:g} s: {mb:.0f}" for t, mb in points)
            lines += ["", f"app RSS over time, {LABELS[r['hub']]} (MB): {timeline}"]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seconds", type=float, help="traffic per hub (default 25, 1.5 with --quick)")
    args = parser.parse_args()
    result = run(quick=args.quick, seconds=args.seconds)
    name = "hostile_hub.quick.json" if args.quick else "hostile_hub.json"
    common.save_json(common.RESULTS_DIR / name, result)
    print(report(result))


if __name__ == "__main__":
    main()
