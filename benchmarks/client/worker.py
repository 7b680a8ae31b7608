"""One variant of one app, driven in-process by hand-built ASGI calls (no sockets).

Started by ``overhead.py`` with the Python of the variant's virtual environment::

    python -m benchmarks.client.worker --variant otel --app starlette --sink-url http://127.0.0.1:PORT

It builds the app, runs the lifespan startup, then answers JSON commands, one per line on stdin:
``{"cmd": "run", "scenario": NAME, "n": N}`` runs N requests and answers the wall-clock and CPU
microseconds per request (the variant's pending telemetry is flushed inside the timed window);
``{"cmd": "recorded"}`` answers how many requests the variant counted; ``{"cmd": "quit"}``.
Answers go to the original stdout; anything the libraries print goes to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import sys
import time
from importlib import metadata
from typing import Any, TextIO

from benchmarks.client import apps

Message = dict[str, Any]


def make_scope(scenario: apps.Scenario) -> dict[str, Any]:
    headers = [
        (b"host", b"127.0.0.1:8000"),
        (b"user-agent", b"bench/1.0"),
        (b"accept", b"*/*"),
        *scenario.headers,
    ]
    if scenario.body:
        headers.append((b"content-length", str(len(scenario.body)).encode()))
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": scenario.method,
        "scheme": "http",
        "path": scenario.path,
        "raw_path": scenario.path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }


async def call(app: Any, template: dict[str, Any], body: bytes) -> int:
    """One request: a fresh scope (middlewares write into it), one body message, a discarding send."""
    scope = dict(template)
    scope["state"] = {}
    received = False
    status = 0

    async def receive() -> Message:
        nonlocal received
        if received:
            return {"type": "http.disconnect"}
        received = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


class Lifespan:
    def __init__(self, app: Any) -> None:
        self.app = app
        self.inbox: asyncio.Queue[Message] = asyncio.Queue()
        self.outbox: asyncio.Queue[Message] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None

    async def _expect(self, sent: str, wanted: str) -> None:
        await self.inbox.put({"type": sent})
        message = await asyncio.wait_for(self.outbox.get(), 60)
        if message["type"] != wanted:
            raise RuntimeError(f"lifespan: expected {wanted}, got {message}")

    async def start(self) -> None:
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.3"}, "state": {}}
        self.task = asyncio.create_task(self.app(scope, self.inbox.get, self.outbox.put))
        await self._expect("lifespan.startup", "lifespan.startup.complete")

    async def stop(self) -> None:
        await self._expect("lifespan.shutdown", "lifespan.shutdown.complete")
        if self.task is not None:
            await asyncio.wait_for(self.task, 60)


async def run_batch(app: Any, scenario: apps.Scenario, n: int) -> int:
    template = make_scope(scenario)
    status = 0
    for _ in range(n):
        status = await call(app, template, scenario.body)
        await asyncio.sleep(0)  # let background tasks run between requests, as a server's loop does
    return status


def versions() -> dict[str, str]:
    found = {}
    for name in ("starlette", "fastapi", "pydantic", "opentelemetry-sdk", "apitally", "apitally-otel"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--variant", required=True, choices=apps.VARIANTS)
    parser.add_argument("--app", required=True, choices=apps.APPS)
    parser.add_argument("--sink-url", required=True)
    args = parser.parse_args()
    out: TextIO = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    sys.stdout = sys.stderr  # the protocol owns the real stdout

    def answer(payload: dict[str, Any]) -> None:
        out.write(json.dumps(payload) + "\n")
        out.flush()

    handle = apps.setup(args.variant, args.app, args.sink_url)
    scenarios = {s.name: s for s in apps.SCENARIOS if s.app == args.app}
    loop = asyncio.new_event_loop()
    lifespan = Lifespan(handle.app)
    loop.run_until_complete(lifespan.start())
    statuses = {name: loop.run_until_complete(run_batch(handle.app, s, 20)) for name, s in scenarios.items()}
    answer({"ready": True, "statuses": statuses, "versions": versions(), "python": sys.version.split()[0]})
    for line in sys.stdin:
        command = json.loads(line)
        if command["cmd"] == "run":
            scenario, n = scenarios[command["scenario"]], int(command["n"])
            gc.collect()
            cpu0, wall0 = time.process_time(), time.perf_counter()
            status = loop.run_until_complete(run_batch(handle.app, scenario, n))
            handle.flush()
            wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
            answer({"us": wall / n * 1e6, "cpu_us": cpu / n * 1e6, "status": status})
        elif command["cmd"] == "recorded":
            answer({"recorded": handle.recorded()})
        elif command["cmd"] == "quit":
            break
    loop.run_until_complete(lifespan.stop())
    answer({"bye": True})


if __name__ == "__main__":
    main()
