"""One variant of one app behind uvicorn's real HTTP/1.1 protocol (h11), fed by in-memory transports.

Everything a request costs in a uvicorn server except the socket system calls: the protocol's
parsing, the request task it creates, its receive/send, keep-alive, with ``--connections``
connections in flight at once (as ``wrk -c`` keeps them) — and the CPU of every thread of the
process, timed per batch::

    python -m benchmarks.client.uvicorn_worker --variant otel --app starlette --sink-url http://127.0.0.1:PORT

No sockets and no other process, so it also runs under ``valgrind --tool=callgrind`` for
instruction counts per request that do not depend on what else the machine runs (see
``benchmarks/README.md``).

Commands (one JSON line each on stdin): ``{"cmd": "run", "scenario": NAME, "n": N}`` answers the
CPU µs per request of the main thread, of the whole process, and the garbage collector's share;
``{"cmd": "tracked", "scenario": NAME, "n": N}`` answers how many objects tracked by the garbage
collector N requests leave alive, per request (the collector paused meanwhile).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import sys
import time
from typing import Any, TextIO

import uvicorn
from uvicorn.lifespan.on import LifespanOn
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.server import ServerState

from benchmarks.client import apps, collector


class Transport(asyncio.Transport):
    """What H11Protocol needs of a socket transport; written bytes are dropped."""

    def __init__(self, port: int) -> None:
        super().__init__()
        self._extra = {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", port)}
        self.written = 0

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._extra.get(name, default)

    def write(self, data: bytes) -> None:  # type: ignore[override]
        self.written += len(data)

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def request_bytes(scenario: apps.Scenario) -> bytes:
    lines = [f"{scenario.method} {scenario.path} HTTP/1.1", "Host: 127.0.0.1:8000"]
    lines += [f"{k.decode()}: {v.decode()}" for k, v in scenario.headers]
    if scenario.body:
        lines.append(f"Content-Length: {len(scenario.body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + scenario.body


async def serve(protocols: list[H11Protocol], state: ServerState, data: bytes, n: int) -> None:
    """``n`` requests over the connections, each sending its next request once its response is out."""
    target = state.total_requests + n
    sent = 0
    idle = list(protocols)
    while state.total_requests < target:
        for protocol in idle:
            if sent < n:
                protocol.data_received(data)  # what the transport does when the socket is readable
                sent += 1
        await asyncio.sleep(0)  # one turn of the loop: the request tasks run
        idle = [p for p in protocols if p.cycle is None or p.cycle.response_complete]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--variant", required=True, choices=apps.VARIANTS)
    parser.add_argument("--app", required=True, choices=apps.APPS)
    parser.add_argument("--sink-url", required=True)
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()
    out: TextIO = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    sys.stdout = sys.stderr

    def answer(payload: dict[str, Any]) -> None:
        out.write(json.dumps(payload) + "\n")
        out.flush()

    handle = apps.setup(args.variant, args.app, args.sink_url)
    config = uvicorn.Config(
        handle.app, loop="asyncio", http="h11", lifespan="on", access_log=False, log_level="warning"
    )
    config.load()
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    lifespan = LifespanOn(config)
    loop.run_until_complete(lifespan.startup())
    state = ServerState()
    protocols = []
    for i in range(args.connections):
        protocol = H11Protocol(config, state, lifespan.state, loop)
        protocol.connection_made(Transport(50000 + i))
        protocols.append(protocol)
    scenarios = {s.name: s for s in apps.SCENARIOS if s.app == args.app}
    datas = {name: request_bytes(s) for name, s in scenarios.items()}
    for name in scenarios:
        loop.run_until_complete(serve(protocols, state, datas[name], 200))
    collections = collector.Collections().start()
    answer({"ready": True})
    for line in sys.stdin:
        command = json.loads(line)
        if command["cmd"] == "run":
            name, n = command["scenario"], int(command["n"])
            before = collections.snapshot()
            thread0, cpu0 = time.thread_time(), time.process_time()
            loop.run_until_complete(serve(protocols, state, datas[name], n))
            thread, cpu = time.thread_time() - thread0, time.process_time() - cpu0
            work = collector.difference(before, collections.snapshot(), n)
            answer(
                {
                    "main_us": thread / n * 1e6,
                    "cpu_us": cpu / n * 1e6,
                    "gc_us": work["gc_us_per_request"],
                    "gc_counts": work["counts"],
                }
            )
        elif command["cmd"] == "tracked":
            # Objects the garbage collector tracks that requests leave alive (the collector paused):
            # each one counts towards the next young collection, and is promoted if it survives it.
            name, n = command["scenario"], int(command["n"])
            handle.flush()
            handle.recorded()  # folds what earlier requests left pending: not this window's objects
            gc.collect()
            gc.disable()
            try:
                before = gc.get_count()[0]
                loop.run_until_complete(serve(protocols, state, datas[name], n))
                left = gc.get_count()[0] - before
            finally:
                gc.enable()
            answer({"tracked_per_request": left / n})
        elif command["cmd"] == "quit":
            break
    loop.run_until_complete(lifespan.shutdown())
    answer({"bye": True})


if __name__ == "__main__":
    main()
