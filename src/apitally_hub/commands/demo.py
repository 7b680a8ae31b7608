"""The ``demo`` subcommand. Heavy imports (the hub, httpx, uvicorn) happen when it runs."""

from __future__ import annotations

import argparse
import sys
from typing import Any

Subparsers = Any
"""``argparse._SubParsersAction`` (private in the standard library, so typed loosely here)."""


def _duration(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of seconds") from None
    if not 0 < number <= 3600:
        raise argparse.ArgumentTypeError("must be more than 0 and at most 3600 seconds")
    return number


def register(subparsers: Subparsers) -> None:
    demo = subparsers.add_parser(
        "demo",
        help="see it work: a demo FastAPI app with simulated traffic, monitored into a local hub",
        description=(
            "Start a local hub and a demo FastAPI app (under uvicorn, in a subprocess) instrumented"
            " with apitally-otel, send it realistic mixed traffic from several consumers, stop it"
            " (final sync), print the hub's report and check that the hub counted exactly what was"
            " sent. With --serve, keep the hub and the app running with gentle background traffic"
            " until Ctrl+C, and browse the dashboard. Needs FastAPI: pip install 'apitally-otel[fastapi]'."
        ),
    )
    demo.add_argument(
        "--db", metavar="PATH", help="keep the hub's SQLite database in PATH (default: a temporary file)"
    )
    demo.add_argument(
        "--duration",
        type=_duration,
        default=20.0,
        metavar="SECONDS",
        help="how long to send traffic (default: 20)",
    )
    demo.add_argument("--json", action="store_true", help="print the report as JSON instead of tables")
    demo.add_argument(
        "--serve",
        action="store_true",
        help="after the first traffic, keep the hub and the app running with gentle traffic until"
        " Ctrl+C (to browse the dashboard on live data)",
    )
    demo.add_argument(
        "--port", type=int, default=0, help="the hub's port on 127.0.0.1 (default: any free port)"
    )
    demo.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from apitally_hub.demo.run import run_demo

    return run_demo(
        db=args.db,
        duration=args.duration,
        as_json=args.json,
        serve=args.serve,
        port=args.port,
        out=sys.stdout,
        err=sys.stderr,
    )
