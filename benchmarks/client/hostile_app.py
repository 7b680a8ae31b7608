"""Serve the app of ``hostile_hub.py`` — the Starlette benchmark app, instrumented from
``APITALLY_*`` env vars — with uvicorn on an inherited socket.

    python -m benchmarks.client.hostile_app --fd N
"""

from __future__ import annotations

import argparse
import socket

import uvicorn

import apitally_otel
from benchmarks.client import apps


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fd", required=True, type=int)
    args = parser.parse_args()
    app = apps.build_starlette()
    apitally_otel.instrument_app(app)
    # socket(fileno=) detects the family, so asyncio sets TCP_NODELAY (see serve.py).
    sock = socket.socket(fileno=args.fd)
    config = uvicorn.Config(
        app, loop="asyncio", http="h11", lifespan="on", access_log=False, log_level="warning"
    )
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
