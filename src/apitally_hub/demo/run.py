"""``apitally-otel demo``: hub, app, traffic, final sync, report.

1. a local hub (:class:`~apitally_hub.HubServer`) on a free loopback port (or ``--port``), with a
   temporary database or ``--db``; its dashboard URL is printed;
2. the demo app (:mod:`.app`) under ``python -m uvicorn --fd N`` in a subprocess, instrumented
   through APITALLY_* variables (a fresh client id, env ``demo``, a sync every 2 s, request
   logging with headers, bodies, log records and spans);
3. :mod:`.traffic` for ``--duration`` seconds, with a progress line;
4. SIGTERM to the app: its lifespan shutdown makes the final sync; then wait until the hub's counts
   are complete;
5. the report (as ``apitally-otel report`` prints it) and a check that the hub counted exactly
   what was sent, per endpoint and status and per consumer.

With ``--serve`` (:func:`serve_demo`), steps 4 and 5 wait: after the first traffic the hub and
the app keep running with gentle background traffic until Ctrl+C, so the dashboard shows live
data.

Everything started is stopped and temporary files are removed, also on Ctrl+C or SIGTERM.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import signal
import site
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

import httpx

from apitally_hub.report.client import HubQueryClient, HubQueryError
from apitally_hub.report.report import build_report
from apitally_hub.report.text import render_text
from apitally_hub.server import HubServer

from .consumers import consumer_tables_json
from .traffic import CONCURRENCY, GENTLE_THINK_SECONDS, Ledger, generate_traffic

ENV = "demo"
SYNC_INTERVAL = 2.0
APP_TARGET = "apitally_hub.demo.app:app"
"""The demo app ships with the client package; it is started by name, never imported here."""
APP_START_TIMEOUT = 30.0
APP_STOP_TIMEOUT = 20.0
FINAL_SYNC_TIMEOUT = 10.0
INSTALL_HINT = "pip install 'apitally-otel[hub,fastapi]'"
REQUEST_LOGGING = {
    "APITALLY_REQUEST_LOGGING_ENABLED": "true",
    "APITALLY_REQUEST_LOGGING_LOG_REQUEST_HEADERS": "true",
    "APITALLY_REQUEST_LOGGING_LOG_REQUEST_BODY": "true",
    "APITALLY_REQUEST_LOGGING_LOG_RESPONSE_BODY": "true",
    "APITALLY_REQUEST_LOGGING_CAPTURE_LOGS": "true",
    "APITALLY_REQUEST_LOGGING_CAPTURE_TRACES": "true",
}
"""The demo app logs every request with everything the client can capture (masking the API
keys), so the dashboard's request log has something to show."""
SERVE_ROUND_SECONDS = 60.0
"""``--serve`` sends its background traffic in rounds of this length (a line after each)."""


class DemoError(Exception):
    """The demo cannot go on; the message says why."""


def missing_requirements() -> list[str]:
    """The demo app's optional dependencies that are not installed."""
    return [name for name in ("fastapi", "pydantic") if importlib.util.find_spec(name) is None]


def _tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    kept = text.splitlines()[-lines:]
    return "\n".join("    " + line for line in kept)


def _python_path() -> str | None:
    """PYTHONPATH for the app: this checkout's packages first unless it is in a site directory (then the
    same interpreter finds it anyway; putting site-packages first could shadow the standard library)."""
    package_root = str(Path(__file__).resolve().parents[2])
    site_dirs = {os.path.realpath(p) for p in [*site.getsitepackages(), site.getusersitepackages()]}
    current = os.environ.get("PYTHONPATH")
    if os.path.realpath(package_root) in site_dirs:
        return current
    return os.pathsep.join(filter(None, [package_root, current]))


class DemoApp:
    """The demo app under uvicorn in a subprocess, on a loopback socket bound here and passed by fd."""

    def __init__(self, hub_url: str, client_id: str, workdir: Path) -> None:
        self.log_path = workdir / "app.log"
        app_tmp = workdir / "tmp"  # the app's temp files (instance slot locks) go with the demo
        app_tmp.mkdir()
        # IPPROTO_TCP (not 0) and TCP_NODELAY: no ~40 ms Nagle/delayed-ACK stalls per response.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # inherited by accepted sockets
            sock.bind(("127.0.0.1", 0))
            sock.set_inheritable(True)
            self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
            env = {k: v for k, v in os.environ.items() if not k.startswith(("APITALLY_", "OTEL_"))}
            env.update(
                APITALLY_CLIENT_ID=client_id,
                APITALLY_ENV=ENV,
                APITALLY_HUB_BASE_URL=hub_url,
                APITALLY_SYNC_INTERVAL=f"{SYNC_INTERVAL:g}",
                APITALLY_DEMO_CONSUMERS=consumer_tables_json(),
                PYTHONUNBUFFERED="1",
                TMPDIR=str(app_tmp),
                **REQUEST_LOGGING,
            )
            python_path = _python_path()
            if python_path:
                env["PYTHONPATH"] = python_path
            command = [
                sys.executable,
                "-m",
                "uvicorn",
                APP_TARGET,
                "--fd",
                str(sock.fileno()),
                "--lifespan",
                "on",
                "--log-level",
                "warning",
                "--no-access-log",
            ]
            with open(self.log_path, "wb") as log:
                self.proc = subprocess.Popen(
                    command,
                    env=env,
                    cwd=workdir,
                    pass_fds=[sock.fileno()],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # Ctrl+C reaches only the demo, which then stops the app
                )
        finally:
            sock.close()  # the child has its own copy; if it dies, connections are refused at once

    def log_tail(self) -> str:
        tail = _tail(self.log_path)
        return f"\n  app output (last lines):\n{tail}" if tail else ""

    def wait_ready(self, timeout: float = APP_START_TIMEOUT) -> float:
        """Wait until the app answers (a request to an unknown URL: not counted); seconds taken."""
        started = time.monotonic()
        with httpx.Client(base_url=self.url, timeout=5.0) as client:
            while True:
                if self.proc.poll() is not None:
                    raise DemoError(f"the demo app exited with code {self.proc.returncode}" + self.log_tail())
                with contextlib.suppress(httpx.TransportError):
                    client.get("/__ready__")
                    return time.monotonic() - started
                if time.monotonic() - started > timeout:
                    raise DemoError(f"the demo app did not start within {timeout:g} s" + self.log_tail())
                time.sleep(0.05)

    def stop(self, timeout: float = APP_STOP_TIMEOUT) -> bool:
        """SIGTERM and wait (SIGKILL after ``timeout``); False if it had to be killed. Idempotent."""
        if self.proc.poll() is not None:
            return True
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
            return True
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return False
        finally:
            if self.proc.poll() is None:  # interrupted while waiting (Ctrl+C): do not leave it behind
                self.proc.kill()
                self.proc.wait()

    @property
    def clean_exit(self) -> bool:
        return self.proc.returncode in (0, -signal.SIGTERM)


class ProgressLine:
    """Traffic progress on ``stream``: one updating line on a terminal, a line every 5 s otherwise."""

    def __init__(self, stream: TextIO, duration: float, every: float = 5.0) -> None:
        self.stream = stream
        self.duration = duration
        self.every = every
        self.tty = stream.isatty()
        self.printed_at = 0.0

    def text(self, elapsed: float, ledger: Ledger) -> str:
        classes = ", ".join(f"{k} {v}" for k, v in sorted(ledger.status_classes().items()))
        shown = min(elapsed, self.duration)
        text = f"  traffic: {shown:4.1f} s / {self.duration:g} s, {ledger.sent} requests sent"
        return f"{text} ({classes})" if classes else text

    def __call__(self, elapsed: float, ledger: Ledger) -> None:
        if self.tty:
            self.stream.write("\r\033[K" + self.text(elapsed, ledger))
            self.stream.flush()
        elif elapsed - self.printed_at >= self.every and elapsed < self.duration:  # finish() says the end
            self.printed_at = elapsed
            print(self.text(elapsed, ledger), file=self.stream, flush=True)

    def finish(self, elapsed: float, ledger: Ledger) -> None:
        if self.tty:
            self.stream.write("\r\033[K")
        print(self.text(elapsed, ledger) + " - done", file=self.stream, flush=True)


def hub_counts(client: HubQueryClient, client_id: str) -> Counter[tuple[str, str, int]]:
    """(method, path, status) -> requests, as the hub counted them."""
    counts: Counter[tuple[str, str, int]] = Counter()
    for endpoint in client.app(client_id, ENV, "endpoints", since="1h")["endpoints"]:
        for status, count in endpoint["status_codes"].items():
            counts[(endpoint["method"], endpoint["path"], int(status))] += count
    return counts


def wait_for_final_counts(
    client: HubQueryClient, client_id: str, expected: Counter[tuple[str, str, int]], timeout: float
) -> Counter[tuple[str, str, int]]:
    """Poll the hub until its counts equal ``expected`` (or ``timeout``); the last counts seen."""
    deadline = time.monotonic() + timeout
    while True:
        counts = hub_counts(client, client_id)
        if counts == expected or time.monotonic() > deadline:
            return counts
        time.sleep(0.1)


def _differences(expected: Counter[Any], actual: Counter[Any]) -> list[str]:
    keys = sorted(set(expected) | set(actual), key=str)
    return [f"{key}: sent {expected[key]}, hub {actual[key]}" for key in keys if expected[key] != actual[key]]


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM to the demo stops it like Ctrl+C (cleanup runs); only possible in the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_demo(
    *,
    db: str | None = None,
    duration: float = 20.0,
    as_json: bool = False,
    serve: bool = False,
    port: int = 0,
    out: TextIO,
    err: TextIO,
) -> int:
    """Run the demo; returns the exit code (0 ok, 1 failed, 2 FastAPI missing, 130 interrupted).
    ``serve``: keep running with background traffic until Ctrl+C (then 0)."""
    missing = missing_requirements()
    if missing:
        print(
            f"error: the demo app needs FastAPI, which is not installed (missing: {', '.join(missing)}).\n"
            f"Install it with:  {INSTALL_HINT}",
            file=err,
        )
        return 2
    try:
        with _sigterm_as_interrupt():
            if serve:
                return serve_demo(db, duration, port, out, err)
            return _run(db, duration, as_json, port, out, err)
    except KeyboardInterrupt:
        print("\ninterrupted: the app and the hub are stopped", file=err)
        return 130
    except (DemoError, HubQueryError) as exc:
        print(f"error: {exc}", file=err)
        return 1


def dashboard_url(hub_url: str, client_id: str) -> str:
    return f"{hub_url}/apps/{client_id}/{ENV}"


@contextlib.contextmanager
def _hub_and_app(
    db: str | None, port: int, client_id: str, err: TextIO
) -> Iterator[tuple[HubServer, DemoApp, Path]]:
    """The hub and the running demo app (stopped, and temporary files removed, on exit)."""
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="apitally-demo-")))
        if db is not None:
            db_path = Path(db).expanduser().resolve()
            db_path.parent.mkdir(parents=True, exist_ok=True)
        else:
            db_path = workdir / "hub.sqlite"
        try:
            hub = stack.enter_context(HubServer(db_path, port=port))
        except (RuntimeError, OSError) as exc:
            raise DemoError(f"cannot start the hub: {exc}") from exc
        print(f"apitally-otel demo: local hub on {hub.url} (database: {db_path})", file=err)
        print(f"  dashboard: {dashboard_url(hub.url, client_id)}", file=err)
        print(
            f"  starting the demo app (FastAPI under uvicorn; client id {client_id}, env {ENV},"
            f" sync every {SYNC_INTERVAL:g} s)",
            file=err,
            flush=True,
        )
        app = DemoApp(hub.url, client_id, workdir)
        stack.callback(app.stop)
        took = app.wait_ready()
        print(f"  app ready on {app.url} in {took:.1f} s", file=err, flush=True)
        yield hub, app, db_path


def _first_traffic(app: DemoApp, duration: float, err: TextIO) -> Ledger:
    print(f"  sending traffic for {duration:g} s from {CONCURRENCY} concurrent clients", file=err, flush=True)
    progress = ProgressLine(err, duration)
    started = time.monotonic()
    ledger = generate_traffic(app.url, duration, progress=progress)
    progress.finish(time.monotonic() - started, ledger)
    return ledger


def serve_demo(db: str | None, duration: float, port: int, out: TextIO, err: TextIO) -> int:
    """``demo --serve``: the first traffic, then gentle background traffic until Ctrl+C."""
    client_id = str(uuid.uuid4())
    with _hub_and_app(db, port, client_id, err) as (hub, app, _):
        _first_traffic(app, duration, err)
        url = dashboard_url(hub.url, client_id)
        print(
            f"\nThe dashboard: {url}\n(all apps: {hub.url}/)  Ctrl+C stops the hub and the app.",
            file=out,
            flush=True,
        )
        sent = 0
        try:
            while True:
                if app.proc.poll() is not None:
                    raise DemoError(f"the demo app exited with code {app.proc.returncode}" + app.log_tail())
                ledger = generate_traffic(
                    app.url, SERVE_ROUND_SECONDS, concurrency=2, think=GENTLE_THINK_SECONDS
                )
                sent += ledger.sent
                print(f"  background traffic: {sent} requests so far", file=err, flush=True)
        except KeyboardInterrupt:
            print("\nstopping: the app makes its final sync, then the hub stops", file=err, flush=True)
    return 0


def _run(db: str | None, duration: float, as_json: bool, port: int, out: TextIO, err: TextIO) -> int:
    client_id = str(uuid.uuid4())
    with _hub_and_app(db, port, client_id, err) as (hub, app, db_path):
        ledger = _first_traffic(app, duration, err)

        print("  stopping the app (SIGTERM: its shutdown makes the final sync)", file=err, flush=True)
        if not app.stop():
            raise DemoError(f"the demo app did not stop within {APP_STOP_TIMEOUT:g} s" + app.log_tail())
        if not app.clean_exit:
            print(f"warning: the demo app exited with code {app.proc.returncode}{app.log_tail()}", file=err)
        if ledger.failures:
            raise DemoError(
                f"{len(ledger.failures)} request(s) got no response: {ledger.failures[0]}" + app.log_tail()
            )

        with HubQueryClient(hub.url) as client:
            counted = wait_for_final_counts(client, client_id, ledger.counted, FINAL_SYNC_TIMEOUT)
            instances = client.app(client_id, ENV, "instances")["instances"]
            if not instances or not counted:
                raise DemoError("the hub received no data from the demo app" + app.log_tail())
            report = {"hub": hub.url, **build_report(client, client_id, ENV, "1h")}
        print(f"  the hub has the final sync ({instances[0]['syncs']} syncs)", file=err, flush=True)

    hub_consumers = Counter({c["identifier"]: c["requests"] for c in report["consumers"]})
    differences = _differences(ledger.counted, counted) + _differences(ledger.consumers, hub_consumers)
    match = not differences
    unknown = sum(ledger.uncounted.values())
    verdict = "exact match, per endpoint and status and per consumer" if match else "MISMATCH"
    summary = (
        f"sent {ledger.counted_total} requests to counted endpoints, the hub counted"
        f" {sum(counted.values())}: {verdict} (plus {unknown} to unknown URLs, not counted by design)"
    )
    database = str(db_path) if db is not None else None
    if as_json:
        report["demo"] = {
            "duration_s": duration,
            "database": database,
            "match": match,
            "differences": differences,
            "sent": ledger.as_dict(),
        }
        json.dump(report, out, indent=2)
        out.write("\n")
        out.flush()
        info = err
    else:
        out.write(render_text(report))
        out.write("\n")
        info = out
    if database is not None:
        print(
            f"database: {database}  (to browse it again: apitally-otel hub --db {database}, then open"
            f" http://127.0.0.1:8250/ or run apitally-otel report --client-id {client_id} --env {ENV})",
            file=info,
        )
    print(summary, file=info, flush=True)
    for line in differences:
        print(f"  {line}", file=err)
    return 0 if match else 1
