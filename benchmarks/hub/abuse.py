"""The hub under abuse (issue 11): peak memory, stored bytes and latency while clients misbehave.

Each scenario starts its own hub as a subprocess (``apitally-otel hub`` on 127.0.0.1, a fresh
SQLite file) and reads its RSS with psutil every 10 ms:

1. ``bodies``: 32 concurrent 9.5 MB sync bodies that are rejected anyway (422) — peak RSS and
   what each got (422, or 503 from the body budget);
2. ``log_amplification``: 16 concurrent 48 kB gzip ``/log`` uploads each holding one 49 MB
   base64 body — peak RSS and stored bytes per upload;
3. ``slowloris``: ``/health`` latency (a new connection per probe) under ~1 000 half-open
   connections, the hub at a 1 024 fd limit, and the size of its log;
4. ``big_syncs``: a normal client's sync latency (p50/p99/max, timeouts at 10 s) while 3 other
   clients post valid 8 MB syncs back to back, and how fast the database grows. (This is the
   scenario the durable ingest queue addresses: the figures measure the single write lock.)

    python -m benchmarks.hub.abuse [--quick] [--only bodies slowloris ...]

Writes ``results/hub_abuse.json`` (``results/hub_abuse_quick.json`` with ``--quick``).
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import psutil

from benchmarks import common


class Hub:
    """``apitally-otel hub`` in a subprocess, with its RSS sampled; ``with Hub(...) as hub:``."""

    def __init__(self, *args: str, fd_limit: int | None = None) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="hub-abuse-"))
        self.db = self.folder / "hub.sqlite"
        self.log_path = self.folder / "hub.log"
        script = shutil.which("apitally-otel", path=str(Path(sys.executable).parent))
        command = [script] if script else [sys.executable, "-m", "apitally_hub.cli"]
        self.argv = [*command, "hub", "--port", "0", "--db", str(self.db), "--log-level", "warning", *args]
        self.fd_limit = fd_limit
        self.peak_rss = 0
        self._stop = threading.Event()

    def _limits(self) -> None:
        if self.fd_limit is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (self.fd_limit, self.fd_limit))

    def __enter__(self) -> Hub:
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            self.argv, stdout=subprocess.PIPE, stderr=self._log, text=True, preexec_fn=self._limits
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if "listening on" not in line:
            raise RuntimeError(f"the hub did not start: {line!r} {self.log_path.read_text()[-500:]}")
        self.url = line.split("listening on ", 1)[1].split()[0]
        self.host, port = self.url.removeprefix("http://").rsplit(":", 1)
        self.port = int(port)
        assert common.wait_until(self._healthy, 15), "the hub did not answer /health"
        self.process = psutil.Process(self.proc.pid)
        self.baseline_rss = self.process.memory_info().rss
        self.peak_rss = self.baseline_rss
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()
        return self

    def _healthy(self) -> bool:
        try:
            return httpx.get(f"{self.url}/health", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            with contextlib.suppress(psutil.Error):
                self.peak_rss = max(self.peak_rss, self.process.memory_info().rss)

    def reset_peak(self) -> None:
        self.peak_rss = self.process.memory_info().rss

    def stored_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.folder.glob("hub.sqlite*"))

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._log.close()
        self.log_bytes = self.log_path.stat().st_size
        shutil.rmtree(self.folder, ignore_errors=True)


def _mb(value: float) -> float:
    return round(value / 2**20, 1)


def _concurrently(count: int, work: Callable[[int], Any]) -> list[Any]:
    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(work, range(count)))


# -- 1. concurrent big bodies ------------------------------------------------------------------


def _rejected_body(size: int) -> bytes:
    """A sync of ``size`` bytes whose items all fail validation (a string status code)."""
    item = {"consumer": None, "method": "GET", "path": "/x", "status_code": "bad", "request_count": 1,
            "request_size_sum": 0, "response_size_sum": 0, "response_times": {"0": 1},
            "request_sizes": {}, "response_sizes": {}}  # fmt: skip
    one = json.dumps(item)
    count = size // (len(one) + 1)
    ids = {"instance_uuid": str(uuid.uuid4()), "message_uuid": str(uuid.uuid4())}
    head = json.dumps({**ids, "timestamp": time.time()})
    body = head[:-1] + ', "requests": [' + ",".join([one] * count) + '], "validation_errors": [],'
    body += ' "server_errors": [], "consumers": [], "resources": null}'
    return body.encode()


def bodies(quick: bool) -> dict[str, Any]:
    count, size = (4, 9_500_000) if quick else (32, 9_500_000)
    body = _rejected_body(size)
    with Hub() as hub:
        path = f"{hub.url}/v2/{uuid.uuid4()}/dev/sync"

        def post(_: int) -> int:
            try:
                headers = {"content-type": "application/json"}
                return httpx.post(path, content=body, headers=headers, timeout=60).status_code
            except httpx.HTTPError:
                return 0  # the hub answered before reading the body and closed: 503 as far as it matters

        started = time.monotonic()
        statuses = _concurrently(count, post)
        elapsed = time.monotonic() - started
        return {
            "concurrent": count,
            "body_mb": round(len(body) / 1e6, 2),
            "baseline_rss_mb": _mb(hub.baseline_rss),
            "peak_rss_mb": _mb(hub.peak_rss),
            "statuses": {str(s): statuses.count(s) for s in sorted(set(statuses))},
            "elapsed_s": round(elapsed, 2),
        }


# -- 2. request-log amplification ----------------------------------------------------------------


def _log_bomb(base64_chars: int) -> bytes:
    line = {
        "uuid": str(uuid.uuid4()),
        "request": {"timestamp": time.time(), "method": "POST", "path": "/x", "url": "https://h/x",
                    "body": "A" * base64_chars},
        "response": {"status_code": 200, "response_time": 0.01},
    }  # fmt: skip
    return gzip.compress((json.dumps(line) + "\n").encode(), 9)


def log_amplification(quick: bool) -> dict[str, Any]:
    count = 4 if quick else 16
    body = _log_bomb(49_000_000)
    with Hub() as hub:
        client_id = uuid.uuid4()
        before = hub.stored_bytes()

        def post(_: int) -> int:
            url = f"{hub.url}/v2/{client_id}/dev/log?uuid={uuid.uuid4()}"
            return httpx.post(url, content=body, timeout=60).status_code

        statuses = _concurrently(count, post)
        stored = hub.stored_bytes() - before
        return {
            "concurrent": count,
            "upload_kb": round(len(body) / 1000, 1),
            "decompressed_mb": 49.0,
            "baseline_rss_mb": _mb(hub.baseline_rss),
            "peak_rss_mb": _mb(hub.peak_rss),
            "statuses": {str(s): statuses.count(s) for s in sorted(set(statuses))},
            "stored_bytes_per_upload": round(stored / count),
        }


# -- 3. slowloris ------------------------------------------------------------------------------


@contextlib.contextmanager
def _half_open(host: str, port: int, count: int) -> Iterator[list[socket.socket]]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = count + 512
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                sock.connect((host, port))
            sockets.append(sock)
        time.sleep(0.5)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.send(f"GET /health HTTP/1.1\r\nHost: {host}\r\n".encode())
        yield sockets
    finally:
        for sock in sockets:
            sock.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def slowloris(quick: bool) -> dict[str, Any]:
    count, probes = (300, 5) if quick else (1000, 20)
    with Hub(fd_limit=1024) as hub:
        latencies, failures = [], 0
        with _half_open(hub.host, hub.port, count) as sockets:
            for _ in range(probes):
                for sock in sockets:  # keep trickling, as a slowloris does
                    with contextlib.suppress(OSError):
                        sock.send(b"X")
                started = time.monotonic()
                try:
                    ok = httpx.get(f"{hub.url}/health", timeout=5).status_code == 200
                except httpx.HTTPError:
                    ok = False
                latencies.append((time.monotonic() - started) * 1000)
                failures += not ok
                time.sleep(0.25)
    return {
        "half_open": count,
        "fd_limit": 1024,
        "probes": probes,
        "failed": failures,
        "health_p50_ms": round(common.median(latencies), 1),
        "health_max_ms": round(max(latencies), 1),
        "log_bytes": hub.log_bytes,
    }


# -- 4. big valid syncs ------------------------------------------------------------------------------


PLACEHOLDER = "00000000-0000-4000-8000-000000000000"


def _valid_sync(size: int) -> bytes:
    items, i = [], 0
    total = 0
    while total < size:
        item = {"consumer": f"c{i % 50}", "method": "GET", "path": f"/api/resource/{i}/{{item_id}}",
                "status_code": 200, "request_count": 3, "request_size_sum": 1500, "response_size_sum": 4500,
                "response_times": {"0": 1, "10": 2}, "request_sizes": {"0": 3},
                "response_sizes": {"1": 3}}  # fmt: skip
        text = json.dumps(item)
        items.append(text)
        total += len(text) + 1
        i += 1
    head = {"instance_uuid": str(uuid.uuid4()), "message_uuid": PLACEHOLDER, "timestamp": time.time()}
    body = json.dumps(head)[:-1] + ', "requests": [' + ",".join(items) + '], "validation_errors": [],'
    body += ' "server_errors": [], "consumers": [], "resources": null}'
    return body.encode()


def _small_sync() -> dict[str, Any]:
    return {"instance_uuid": str(uuid.uuid4()), "message_uuid": str(uuid.uuid4()), "timestamp": time.time(),
            "requests": [{"consumer": None, "method": "GET", "path": "/ok", "status_code": 200,
                          "request_count": 1, "request_size_sum": 0, "response_size_sum": 10,
                          "response_times": {"0": 1}, "request_sizes": {}, "response_sizes": {"0": 1}}],
            "validation_errors": [], "server_errors": [], "consumers": [], "resources": None}  # fmt: skip


def big_syncs(quick: bool) -> dict[str, Any]:
    duration = 4.0 if quick else 30.0
    size = 2_000_000 if quick else 8_000_000
    template = _valid_sync(size)
    stop = threading.Event()
    sent: list[int] = []
    with Hub() as hub:
        before = hub.stored_bytes()

        def heavy(n: int) -> None:
            path = f"{hub.url}/v2/{uuid.uuid4()}/dev/sync"
            with httpx.Client(timeout=60) as http:
                while not stop.is_set():
                    body = template.replace(PLACEHOLDER.encode(), str(uuid.uuid4()).encode())
                    with contextlib.suppress(httpx.HTTPError):
                        status = http.post(path, content=body, headers={"content-type": "application/json"})
                        sent.append(status.status_code)

        threads = [threading.Thread(target=heavy, args=(n,), daemon=True) for n in range(3)]
        for thread in threads:
            thread.start()
        latencies, timeouts = [], 0
        path = f"{hub.url}/v2/{uuid.uuid4()}/dev/sync"
        started = time.monotonic()
        with httpx.Client(timeout=10) as http:  # the protocol's client timeout
            while time.monotonic() - started < duration:
                begin = time.monotonic()
                try:
                    http.post(path, json=_small_sync()).raise_for_status()
                    latencies.append((time.monotonic() - begin) * 1000)
                except httpx.HTTPError:
                    timeouts += 1
                time.sleep(0.25)
        stop.set()
        for thread in threads:
            thread.join(60)
        elapsed = time.monotonic() - started
        growth = hub.stored_bytes() - before
    return {
        "heavy_clients": 3,
        "heavy_sync_mb": round(len(template) / 1e6, 2),
        "heavy_syncs_accepted": sent.count(202),
        "heavy_syncs_limited": sum(1 for s in sent if s in (429, 503)),
        "normal_syncs": len(latencies) + timeouts,
        "normal_failed": timeouts,
        "normal_p50_ms": round(common.median(latencies), 1) if latencies else None,
        "normal_p99_ms": round(common.quantile(latencies, 0.99), 1) if latencies else None,
        "normal_max_ms": round(max(latencies), 1) if latencies else None,
        "db_growth_mb_per_s": round(growth / 1e6 / elapsed, 2),
        "duration_s": round(elapsed, 1),
    }


SCENARIOS: dict[str, Callable[[bool], dict[str, Any]]] = {
    "bodies": bodies,
    "log_amplification": log_amplification,
    "slowloris": slowloris,
    "big_syncs": big_syncs,
}


def run(*, quick: bool, only: list[str] | None = None) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for name in only or list(SCENARIOS):
        common.log(f"   hub abuse: {name}")
        result[name] = SCENARIOS[name](quick)
    return result


def report(result: dict[str, Any]) -> str:
    rows = []
    if "bodies" in result:
        b = result["bodies"]
        scenario = f"{b['concurrent']} concurrent {b['body_mb']} MB bodies (rejected)"
        rss = f"{b['peak_rss_mb']} MB (idle {b['baseline_rss_mb']} MB); answers {b['statuses']}"
        rows.append([scenario, "peak RSS", rss])
    if "log_amplification" in result:
        r = result["log_amplification"]
        scenario = f"{r['concurrent']} concurrent {r['upload_kb']} kB /log holding a 49 MB body"
        rss = f"{r['peak_rss_mb']} MB (idle {r['baseline_rss_mb']} MB); answers {r['statuses']}"
        rows.append([scenario, "peak RSS", rss])
        rows.append(["same", "stored per upload", f"{r['stored_bytes_per_upload']:,} bytes"])
    if "slowloris" in result:
        s = result["slowloris"]
        scenario = f"{s['half_open']} half-open connections, fd limit {s['fd_limit']}"
        health = f"p50 {s['health_p50_ms']} ms, max {s['health_max_ms']} ms"
        health += f", {s['failed']}/{s['probes']} failed; log {s['log_bytes']:,} bytes"
        rows.append([scenario, "/health", health])
    if "big_syncs" in result:
        g = result["big_syncs"]
        scenario = f"3 clients posting {g['heavy_sync_mb']} MB syncs"
        normal = f"p50 {g['normal_p50_ms']} ms, p99 {g['normal_p99_ms']} ms, max {g['normal_max_ms']} ms"
        normal += f", {g['normal_failed']}/{g['normal_syncs']} failed"
        normal += f"; {g['heavy_syncs_accepted']} big syncs stored; DB +{g['db_growth_mb_per_s']} MB/s"
        rows.append([scenario, "normal client's sync", normal])
    return common.table(["scenario", "measured", "result"], rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller counts, seconds in all")
    parser.add_argument("--only", nargs="+", choices=list(SCENARIOS))
    args = parser.parse_args()
    result = {"machine": common.machine(), **run(quick=args.quick, only=args.only)}
    name = "hub_abuse_quick.json" if args.quick else "hub_abuse.json"
    common.save_json(common.RESULTS_DIR / name, result)
    print(report(result))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    main()
