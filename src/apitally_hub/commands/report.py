"""``apitally-otel report``: print a report of one app's data from a hub (its query API)."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from apitally_hub.config import client_id_arg

Subparsers = Any
"""``argparse._SubParsersAction`` (private in the standard library, so typed loosely here)."""


def register(subparsers: Subparsers) -> None:
    report = subparsers.add_parser("report", help="print a report of one app's data from a hub")
    report.add_argument("--hub", default="http://127.0.0.1:8250", help="hub base URL (default: %(default)s)")
    report.add_argument("--client-id", required=True, type=client_id_arg, metavar="UUID")
    report.add_argument("--env", default="dev")
    report.add_argument("--token", help="bearer token for the hub's reads (default: $APITALLY_HUB_TOKEN)")
    report.add_argument("--ca-file", metavar="PATH", help="CA bundle that signed the hub's certificate")
    report.add_argument("--since", default="1h", help="window start: 1h, 30m, 2d, seconds, or ISO time")
    report.add_argument("--json", action="store_true", help="print a JSON document instead of tables")
    logs = report.add_argument_group("request log filters")
    logs.add_argument("--method", help="only requests with this method")
    logs.add_argument("--path", help="only requests to this route template")
    logs.add_argument("--status", help="a status code (404) or class (4xx)")
    logs.add_argument("--consumer", help="only requests of this consumer")
    logs.add_argument("--search", help="text to find in the URL")
    report.set_defaults(handler=run_report)


def run_report(args: argparse.Namespace) -> int:
    from apitally_hub.report.report import run_report as report
    from apitally_hub.security.tokens import resolve_client_token

    return report(
        args.hub,
        args.client_id,
        args.env,
        token=resolve_client_token(args.token, os.environ),
        ca_file=args.ca_file,
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
