"""The ``hub`` and ``report`` subcommands. Heavy imports (starlette, uvicorn) happen when run."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from apitally_hub.settings import (
    DEFAULT_DAILY_RETENTION_DAYS,
    DEFAULT_HOURLY_RETENTION_DAYS,
    DEFAULT_RAW_RETENTION_DAYS,
    DEFAULT_REQUEST_LOG_RETENTION_DAYS,
    DEFAULT_RETENTION_DAYS,
    Retention,
    normalize_client_id,
)

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
    hub.add_argument(
        "action",
        nargs="?",
        choices=["serve", "migrate"],
        default="serve",
        help="serve (default), or migrate: bring the store's schema up to date and exit",
    )
    hub.add_argument("--host", default="127.0.0.1", help="interface to bind (default: 127.0.0.1)")
    hub.add_argument("--port", type=int, default=8250, help="port to listen on (default: 8250; 0 = any free)")
    hub.add_argument(
        "--db",
        default="./apitally-hub.sqlite",
        help="a SQLite file, or a PostgreSQL URL postgresql://user:pass@host:5432/db"
        " (default: ./apitally-hub.sqlite)",
    )
    hub.add_argument(
        "--client-id",
        dest="client_ids",
        action="append",
        type=_client_id,
        metavar="UUID",
        help="accept only this client id (repeatable; default: any UUID)",
    )
    retention = hub.add_argument_group("retention (days)")
    retention.add_argument(
        "--retention-days",
        type=_positive,
        default=DEFAULT_RETENTION_DAYS,
        help="per-minute data (default: 30)",
    )
    retention.add_argument(
        "--hourly-retention-days",
        type=_positive,
        default=DEFAULT_HOURLY_RETENTION_DAYS,
        help="per-hour data (395)",
    )
    retention.add_argument(
        "--daily-retention-days",
        type=_positive,
        default=DEFAULT_DAILY_RETENTION_DAYS,
        help="per-day data (1826)",
    )
    retention.add_argument(
        "--request-log-retention-days",
        type=_positive,
        default=DEFAULT_REQUEST_LOG_RETENTION_DAYS,
        help="request log (15)",
    )
    retention.add_argument(
        "--raw-retention-days", type=_positive, default=DEFAULT_RAW_RETENTION_DAYS, help="raw messages (3)"
    )
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
    retention = Retention(
        minutes=args.retention_days,
        hours=args.hourly_retention_days,
        days=args.daily_retention_days,
        request_log=args.request_log_retention_days,
        raw_messages=args.raw_retention_days,
    )
    if args.action == "migrate":
        return migrate(args.db)
    return serve(
        args.host,
        args.port,
        args.db,
        log_level=args.log_level,
        client_ids=args.client_ids,
        retention=retention,
        allow_extra_fields=args.allow_extra_fields,
    )


def migrate(db: str) -> int:
    """``hub migrate``: run the store's pending migrations and say where it stands."""
    from apitally_hub.storage import create_storage, redact_url

    try:
        storage = create_storage(db)
        version = storage.open()
    except Exception as exc:  # a CLI: report any failure in one line
        print(f"error: cannot migrate {redact_url(db)}: {exc}", file=sys.stderr)
        return 1
    storage.close()
    print(f"{storage.url}: schema version {version}")
    return 0


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
