"""Real peers that export OTLP/HTTP to a hub, each in its own process, for the ingest tests.

- :func:`run_apitally1_app`: the genuine apitally 1.0.0 client on FastAPI under uvicorn, in the
  ``apitally-1.0.0`` virtual environment of ``benchmarks/common.py`` (``apitally1_app.py``);
- :func:`run_otel_sdk_app`: a plain OpenTelemetry Python SDK app (FastAPI instrumentation, OTLP/HTTP
  protobuf exporters for traces, metrics and logs), in the ``otel-sdk`` environment
  (``otel_sdk_app.py``);
- :func:`run_node_express_app`: a Node.js Express service with the OpenTelemetry JS SDK
  (``node/app.js``; its exact versions in ``node/package-lock.json``, installed with ``npm ci`` into
  ``node/node_modules`` on first use).

Each is a context manager yielding a :class:`PeerApp` once the app accepts connections on
127.0.0.1; at exit the process gets SIGTERM (every peer flushes its exporters on the way out) and
is waited for. The virtual environments and ``node_modules`` are made on first use. Nothing here is
imported by the project's code; the apps themselves import nothing of it.

Routes (all three): ``GET /items`` (200), ``GET /items/{id}`` (200, 404 for a missing id; 422 for a
non-integer id on the Python apps), ``POST /items`` (201; 422 on a bad body), ``GET /boom`` (500).
The apitally app identifies a consumer from the ``x-consumer`` request header.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from benchmarks.common import PEER_REQUIREMENTS, python_for

from tests.support.servers import ROOT, bound_socket

PEERS_DIR = Path(__file__).resolve().parent
NODE_DIR = PEERS_DIR / "node"
APITALLY1_VENV = "apitally-1.0.0"
OTEL_SDK_VENV = "otel-sdk"
# The pinned OpenTelemetry JS packages (0.223.x / 2.12.x) support ^18.19.0 || >=20.6.0.
MIN_NODE = (18, 19)
DEBIAN_NODE_PACKAGES = "nodejs npm"


@dataclass
class PeerApp:
    """A running peer: ``url`` is its base URL; ``output`` its stdout and stderr once stopped."""

    name: str
    url: str
    proc: subprocess.Popen[bytes]
    sock: socket.socket
    log: IO[bytes]
    output: str = field(default="")

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Until the app accepts connections (uvicorn listens after the lifespan startup)."""
        host, port = self.sock.getsockname()
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self._read_log()}")
            with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not start in {timeout} s:\n{self._read_log()}")
            time.sleep(0.05)

    def stop(self, timeout: float = 30.0) -> str:
        """SIGTERM, then wait (the peer flushes its exporters); SIGKILL after ``timeout``."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.output = self._read_log()
        self.log.close()
        self.sock.close()
        return self.output

    def _read_log(self) -> str:
        self.log.flush()
        self.log.seek(0)
        return self.log.read().decode(errors="replace")


def _base_env() -> dict[str, str]:
    """A clean environment: no OTEL_*/APITALLY_* of ours, no PYTEST_CURRENT_TEST (apitally 1.x does
    not activate under pytest)."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/tmp"),
        "TMPDIR": os.environ.get("TMPDIR", "/tmp"),
        "LANG": "C.UTF-8",
    }


@contextlib.contextmanager
def _run(name: str, command: list[str], env: Mapping[str, str], cwd: str | Path) -> Iterator[PeerApp]:
    """Starts ``command`` on a socket bound here (``{fd}`` in the command or env is its descriptor);
    yields once it accepts connections; stops it at exit."""
    with tempfile.TemporaryFile() as log, bound_socket() as sock:
        host, port = sock.getsockname()
        fd = str(sock.fileno())
        proc = subprocess.Popen(
            [part.replace("{fd}", fd) for part in command],
            env={**_base_env(), **{k: v.replace("{fd}", fd) for k, v in env.items()}},
            cwd=cwd,
            pass_fds=[sock.fileno()],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        app = PeerApp(name, f"http://{host}:{port}", proc, sock, log)
        try:
            app.wait_ready()
            yield app
        finally:
            app.stop()


def _venv_python(variant: str) -> str:
    python = python_for(variant, create=True)
    if python is None:
        raise RuntimeError(
            f"could not create the {variant} environment under benchmarks/.venvs "
            f"({' '.join(PEER_REQUIREMENTS[variant])})"
        )
    return python


def _uvicorn(python: str, module: str) -> list[str]:
    return [
        python,
        "-m",
        "uvicorn",
        f"{module}:app",
        "--app-dir",
        str(PEERS_DIR),  # the app alone on the path: the peer's venv has none of the project
        "--fd",
        "{fd}",
        "--log-level",
        "warning",
    ]


@contextlib.contextmanager
def run_apitally1_app(
    endpoint: str, token: str, env: str, *, extra_env: Mapping[str, str] | None = None
) -> Iterator[PeerApp]:
    """apitally 1.0.0 exporting to ``endpoint`` (its ``APITALLY_OTLP_ENDPOINT``: a base URL; it posts
    to ``/v1/traces``, ``/v1/logs`` and ``/v1/metrics``, about every 15 s after a first export 2 s
    after startup, and everything left at shutdown). ``token`` must match ``^apt_[a-zA-Z0-9]{24}$``
    or apitally disables itself."""
    python = _venv_python(APITALLY1_VENV)
    peer_env = {
        "APITALLY_WRITE_TOKEN": token,
        "APITALLY_ENV": env,
        "APITALLY_OTLP_ENDPOINT": endpoint,
        **(extra_env or {}),
    }
    with _run("apitally 1.0.0", _uvicorn(python, "apitally1_app"), peer_env, ROOT) as app:
        yield app


def otlp_env(endpoint: str, token: str, env: str, service_name: str) -> dict[str, str]:
    """The standard OTEL_* variables a plain SDK needs to export to the hub."""
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_EXPORTER_OTLP_HEADERS": f"Authorization=Bearer%20{token},Apitally-Env={env}",
        "OTEL_SEMCONV_STABILITY_OPT_IN": "http",
        "OTEL_METRIC_EXPORT_INTERVAL": "1000",
        "OTEL_BSP_SCHEDULE_DELAY": "500",
        "OTEL_BLRP_SCHEDULE_DELAY": "500",
        "OTEL_SERVICE_NAME": service_name,
    }


@contextlib.contextmanager
def run_otel_sdk_app(
    endpoint: str, token: str, env: str, *, extra_env: Mapping[str, str] | None = None
) -> Iterator[PeerApp]:
    """The plain OpenTelemetry Python SDK app, exporting traces, metrics (cumulative, every second)
    and logs to ``endpoint`` (``OTEL_EXPORTER_OTLP_ENDPOINT``) with the token and env as headers."""
    python = _venv_python(OTEL_SDK_VENV)
    peer_env = {**otlp_env(endpoint, token, env, "otel-sdk-peer"), **(extra_env or {})}
    with _run("OpenTelemetry SDK app", _uvicorn(python, "otel_sdk_app"), peer_env, ROOT) as app:
        yield app


# -- Node.js -----------------------------------------------------------------------------------
def ensure_node() -> tuple[str, str]:
    """The paths of ``node`` and ``npm``; raises RuntimeError saying what to install when they are
    missing or too old."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        missing = " and ".join(n for n, p in (("node", node), ("npm", npm)) if p is None)
        raise RuntimeError(
            f"the Node.js peer needs {missing} on PATH: install them (Debian: "
            f"`apt-get install -y {DEBIAN_NODE_PACKAGES}`; Node >= {MIN_NODE[0]}.{MIN_NODE[1]})"
        )
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=True).stdout.strip()
    match = re.match(r"v(\d+)\.(\d+)", version)
    if match is None or (int(match[1]), int(match[2])) < MIN_NODE:
        raise RuntimeError(
            f"the Node.js peer needs Node >= {MIN_NODE[0]}.{MIN_NODE[1]} (the pinned OpenTelemetry JS "
            f"packages' engines); {node} is {version}"
        )
    return node, npm


def ensure_node_modules() -> str:
    """Installs ``node/node_modules`` with ``npm ci`` (the committed lockfile) unless it is there and
    up to date; returns the ``node`` path."""
    node, npm = ensure_node()
    lock = NODE_DIR / "package-lock.json"
    digest = hashlib.sha256(lock.read_bytes() + (NODE_DIR / "package.json").read_bytes()).hexdigest()
    marker = NODE_DIR / "node_modules" / ".peer-installed"
    with open(lock, "rb") as guard:  # a lock on the lockfile (only read): several test processes at once
        fcntl.flock(guard, fcntl.LOCK_EX)
        if marker.exists() and marker.read_text() == digest:
            return node
        result = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=NODE_DIR,
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"`npm ci` in {NODE_DIR} failed ({result.returncode}):\n{result.stderr[-3000:]}"
            )
        marker.write_text(digest)
    return node


@contextlib.contextmanager
def run_node_express_app(
    endpoint: str, token: str, env: str, *, extra_env: Mapping[str, str] | None = None
) -> Iterator[PeerApp]:
    """The Node.js Express service, exporting traces and metrics (cumulative, every second) to
    ``endpoint`` with the OpenTelemetry JS SDK's OTLP/HTTP protobuf exporters."""
    node = ensure_node_modules()
    peer_env = {
        **otlp_env(endpoint, token, env, "node-express-peer"),
        "OTEL_LOGS_EXPORTER": "none",
        "PEER_FD": "{fd}",
        **(extra_env or {}),
    }
    with _run("Node.js Express app", [node, "app.js"], peer_env, NODE_DIR) as app:
        yield app


__all__ = [
    "PeerApp",
    "ensure_node",
    "ensure_node_modules",
    "otlp_env",
    "run_apitally1_app",
    "run_node_express_app",
    "run_otel_sdk_app",
]
