"""The ``hub`` and ``report`` subcommands. Heavy imports (starlette, uvicorn) happen when run."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from apitally_hub.settings import DEFAULT_RETENTION_DAYS, normalize_client_id

Subparsers = Any
"""``argparse._SubParsersAction`` (private in the standard library, so typed loosely here)."""


def _client_id(value: str) -> str:
    canonical = normalize_client_id(value)
    if canonical is None:
        raise argparse.ArgumentTypeError(f"{value!r} is not a UUID")
    return canonical


def _positive(value: str) -> float:
    number = float(value)
    if not number > 0:
        raise argparse.ArgumentTypeError("must be positive")
    return number


def register(subparsers: Subparsers) -> None:
    hub = subparsers.add_parser(
        "hub", help="run a local hub that receives and stores monitoring data", description=run_hub.__doc__
    )
    hub.add_argument("--host", default="127.0.0.1", help="interface to bind (default: 127.0.0.1)")
    hub.add_argument("--port", type=int, default=8250, help="port to listen on (default: 8250; 0 = any free)")
    hub.add_argument(
        "--db", default="./apitally-hub.sqlite", help="SQLite file (default: ./apitally-hub.sqlite)"
    )
    hub.add_argument(
        "--client-id",
        dest="client_ids",
        action="append",
        type=_client_id,
        metavar="UUID",
        help="accept only this client id (repeatable; default: any UUID)",
    )
    hub.add_argument("--retention-days", type=_positive, default=DEFAULT_RETENTION_DAYS)
    hub.add_argument(
        "--allow-extra-fields",
        action="store_true",
        help="ignore unknown message fields instead of rejecting them",
    )
    hub.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    hub.set_defaults(handler=run_hub)

    report = subparsers.add_parser("report", help="print a report of one app's data from a hub")
    report.add_argument("--hub", default="http://127.0.0.1:8250", help="hub base URL (default: %(default)s)")
    report.add_argument("--client-id", required=True, type=_client_id, metavar="UUID")
    report.add_argument("--env", default="dev")
    report.add_argument("--since", default="1h", help="window start: 1h, 30m, 2d, seconds, or ISO time")
    report.add_argument("--json", action="store_true", help="print a JSON document instead of tables")
    logs = report.add_argument_group("request log filters")
    logs.add_argument("--method", help="only requests with this method")
    logs.add_argument("--path", help="only requests to this route template")
    logs.add_argument("--status", help="a status code (404) or class (4xx)")
    logs.add_argument("--consumer", help="only requests of this consumer")
    logs.add_argument("--search", help="text to find in the URL")
    report.set_defaults(handler=run_report)


def run_hub(args: argparse.Namespace) -> int:
    """Run the local hub in the foreground (Ctrl+C stops it)."""
    from apitally_hub.server import serve

    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    return serve(
        args.host,
        args.port,
        args.db,
        log_level=args.log_level,
        client_ids=args.client_ids,
        retention_days=args.retention_days,
        allow_extra_fields=args.allow_extra_fields,
    )


def run_report(args: argparse.Namespace) -> int:
    from apitally_hub.report.report import run_report as report

    return report(
        args.hub,
        args.client_id,
        args.env,
        since=args.since,
        as_json=args.json,
        out=sys.stdout,
        err=sys.stderr,
        request_filters={
            "method": args.method,
            "path": args.path,
            "status": args.status,
            "consumer": args.consumer,
            "q": args.search,
        },
    )
