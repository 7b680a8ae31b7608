"""Helpers shared by the benchmark scripts: paths, peer virtual environments, the loopback sink,
JSON-line worker processes, machine description, statistics and markdown tables."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx
import psutil

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
VENVS_DIR = BENCH_DIR / ".venvs"
RESULTS_DIR = BENCH_DIR / "results"
CONSTRAINTS = ROOT / "requirements" / "test.txt"  # the same starlette/fastapi/OTel pins everywhere

# What each peer's virtual environment gets (on top of the project's pins, as constraints).
PEER_REQUIREMENTS: dict[str, list[str]] = {
    "apitally-1.0.0": [
        "apitally[fastapi]==1.0.0",
        "opentelemetry-proto==1.45.1",
        "opentelemetry-instrumentation-logging==0.66b1",
        "uvicorn",
        "uvloop",
        "httptools",
    ],
    "apitally-0.25.1": ["apitally[fastapi]==0.25.1", "uvicorn", "uvloop", "httptools"],
    # A plain OpenTelemetry SDK app exporting OTLP/HTTP (tests/support/otlp_peers/): no apitally code.
    "otel-sdk": [
        "opentelemetry-sdk==1.45.1",
        "opentelemetry-exporter-otlp-proto-http==1.45.1",
        "opentelemetry-instrumentation-fastapi==0.66b1",
        "fastapi==0.165.0",
        "uvicorn==0.54.0",
    ],
}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- virtual environments ----------------------------------------------------------------------
def python_for(variant: str, *, create: bool) -> str | None:
    """The interpreter that runs ``variant``: the project's, or the peer's own venv (None if absent)."""
    if variant not in PEER_REQUIREMENTS:
        return sys.executable
    venv = VENVS_DIR / variant
    python = venv / "bin" / "python"
    marker = venv / ".bench-requirements.json"
    wanted = json.dumps(PEER_REQUIREMENTS[variant])
    if python.exists() and marker.exists() and marker.read_text() == wanted:
        return str(python)
    if not create:
        return None
    VENVS_DIR.mkdir(parents=True, exist_ok=True)
    # one creator at a time (parallel test workers may want the same venv): the others wait, then
    # find it made
    with open(VENVS_DIR / f".{variant}.lock", "w") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)
        if python.exists() and marker.exists() and marker.read_text() == wanted:
            return str(python)
        log(f"creating {venv} ({' '.join(PEER_REQUIREMENTS[variant])})")
        try:
            subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
            pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
            subprocess.run([*pip, "-c", str(CONSTRAINTS), *PEER_REQUIREMENTS[variant]], check=True)
        except (subprocess.CalledProcessError, OSError) as exc:
            log(f"could not create the {variant} environment ({exc}); skipping it")
            return None
        marker.write_text(wanted)
    return str(python)


def available_variants(variants: Sequence[str], *, create: bool) -> dict[str, str]:
    """variant -> interpreter, for the variants that can run here."""
    found = {}
    for variant in variants:
        python = python_for(variant, create=create)
        if python is None:
            log(f"skipping {variant}: no environment at {VENVS_DIR / variant} (run without --quick)")
        else:
            found[variant] = python
    return found


# -- subprocesses ----------------------------------------------------------------------------------
class JsonProcess:
    """A child that answers one JSON line per JSON line it is sent; its first line says it is ready.

    It runs in the repository's root, so ``python -m benchmarks.client.worker`` finds the package
    (with any interpreter: a peer's venv has neither this project nor the benchmarks installed)."""

    def __init__(self, args: Sequence[str], *, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            list(args),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env={**os.environ, "PYTHONWARNINGS": "ignore", **(env or {})},
        )
        self._hello: dict[str, Any] | None = None

    @property
    def hello(self) -> dict[str, Any]:
        """The first line (waits for it): start several processes, then read their hellos."""
        if self._hello is None:
            self._hello = self._read()
        return self._hello

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{self.proc.args!r} exited with {self.proc.wait()}")
        result: dict[str, Any] = json.loads(line)
        return result

    def ask(self, **command: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(command) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self, timeout: float = 30) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(OSError, RuntimeError, ValueError):
                self.ask(cmd="quit")
            with contextlib.suppress(OSError):
                assert self.proc.stdin is not None
                self.proc.stdin.close()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@contextlib.contextmanager
def sink() -> Iterator[str]:
    """A loopback sink (``benchmarks/sink.py``) in its own process, for every hub/OTLP request; yields
    its URL."""
    proc = JsonProcess([sys.executable, "-m", "benchmarks.sink"])
    try:
        yield f"http://127.0.0.1:{proc.hello['port']}"
    finally:
        assert proc.proc.stdin is not None
        proc.proc.stdin.close()
        try:
            proc.proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.proc.kill()
            proc.proc.wait()


def sink_stats(url: str) -> dict[str, Any]:
    stats: dict[str, Any] = httpx.get(f"{url}/stats", timeout=5).json()
    return stats


# -- measurements ------------------------------------------------------------------------------
def rss_mb() -> float:
    return float(psutil.Process().memory_info().rss) / 2**20


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def quantile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def wait_until(predicate: Any, timeout: float, interval: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
    return True


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    packages = {}
    for name in (
        "apitally-otel",
        "opentelemetry-sdk",
        "opentelemetry-instrumentation-asgi",
        "starlette",
        "fastapi",
        "pydantic",
        "uvicorn",
        "httpx",
    ):
        with contextlib.suppress(metadata.PackageNotFoundError):
            packages[name] = metadata.version(name)
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "load_average": [round(x, 2) for x in os.getloadavg()],  # other work on the machine
        "os": platform.platform(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "packages": packages,
    }


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured markdown table (numbers right-aligned)."""

    def cell(value: Any) -> str:
        return f"{value:,.1f}" if isinstance(value, float) else str(value)

    texts = [[cell(v) for v in row] for row in rows]
    align = ["---:" if rows and isinstance(rows[0][i], (int, float)) else "---" for i in range(len(headers))]
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in texts]
    return "\n".join(lines)


def save_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
