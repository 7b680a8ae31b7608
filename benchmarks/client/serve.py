"""Serve one variant of one app with uvicorn on an inherited socket (for the throughput benchmark).

    python -m benchmarks.client.serve --variant otel --app starlette --sink-url http://127.0.0.1:PORT \\
        --fd N [--loop asyncio|uvloop] [--http h11|httptools] [--gc-stats PATH]

Every variant gets the same server settings (the loop and protocol asked for, no access log).
With ``--gc-stats``, each SIGUSR1 writes the garbage collector's work so far to PATH (JSON).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
from typing import Any

import uvicorn

from benchmarks.client import apps, collector


def write_collector_stats(path: str) -> None:
    collections = collector.Collections().start()

    def write(signum: int, frame: Any) -> None:
        partial = path + ".partial"
        with open(partial, "w") as f:
            json.dump(collections.snapshot(), f)
        os.replace(partial, path)  # the benchmark reads whole files only

    signal.signal(signal.SIGUSR1, write)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--variant", required=True, choices=apps.VARIANTS)
    parser.add_argument("--app", required=True, choices=apps.APPS)
    parser.add_argument("--sink-url", required=True)
    parser.add_argument("--fd", required=True, type=int)
    parser.add_argument("--loop", default="asyncio", choices=["asyncio", "uvloop"])
    parser.add_argument("--http", default="h11", choices=["h11", "httptools"])
    parser.add_argument("--gc-stats", help="where SIGUSR1 writes the collector's work so far")
    args = parser.parse_args()
    if args.gc_stats:
        write_collector_stats(args.gc_stats)
    handle = apps.setup(args.variant, args.app, args.sink_url)
    # socket(fileno=) detects the family (uvicorn's own --fd assumes AF_UNIX, so asyncio would not
    # set TCP_NODELAY on the connections and every response would wait for a delayed ACK).
    sock = socket.socket(fileno=args.fd)
    config = uvicorn.Config(
        handle.app, loop=args.loop, http=args.http, lifespan="on", access_log=False, log_level="warning"
    )
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
