"""The ``hub`` and ``report`` subcommands. Heavy imports (starlette, uvicorn) happen when run."""

from __future__ import annotations

import argparse
import logging
import os
import ssl
import sys
from typing import Any

from apitally_hub.settings import (
    DEFAULT_BODY_TIMEOUT,
    DEFAULT_DAILY_RETENTION_DAYS,
    DEFAULT_HOURLY_RETENTION_DAYS,
    DEFAULT_INGEST_BURST,
    DEFAULT_INGEST_RATE,
    DEFAULT_MAX_INFLIGHT_BODY_BYTES,
    DEFAULT_MAX_QUEUE_LAG,
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


def _non_negative(value: str) -> float:
    number = float(value)
    if not number >= 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return number


def _byte_count(value: str) -> int:
    """``67108864``, ``64MB``, ``64MiB``, ``500kB``..."""
    units = {"": 1, "kb": 1000, "mb": 10**6, "gb": 10**9, "kib": 2**10, "mib": 2**20, "gib": 2**30}
    text = value.strip().lower()
    digits = text.rstrip("kmgib")
    try:
        number = float(digits) * units[text[len(digits) :]]
    except (KeyError, ValueError):
        raise argparse.ArgumentTypeError(f"{value!r} is not a byte count (e.g. 64MiB)") from None
    if not number > 0:
        raise argparse.ArgumentTypeError("must be positive")
    return int(number)


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
    access = hub.add_argument_group(
        "access control",
        "Reads (the query API) need a bearer token when one is configured; without one the hub"
        " binds loopback only. Tokens: --token and --token-file, else APITALLY_HUB_TOKEN"
        " (comma-separated).",
    )
    access.add_argument(
        "--token", dest="tokens", action="append", metavar="TOKEN", help="a read token (repeatable)"
    )
    access.add_argument("--token-file", metavar="PATH", help="read tokens from a file, one per line")
    access.add_argument(
        "--allowed-host",
        dest="allowed_hosts",
        action="append",
        type=_allowed_host,
        metavar="NAME",
        help="a Host name to serve besides loopback and the bind address (.example.com: the domain"
        " and its subdomains; *: no Host check); repeatable",
    )
    tls = hub.add_argument_group("TLS and reverse proxies")
    tls.add_argument("--ssl-certfile", metavar="PATH", help="serve HTTPS with this certificate (PEM)")
    tls.add_argument("--ssl-keyfile", metavar="PATH", help="its private key (PEM), unless in the certfile")
    tls.add_argument(
        "--forwarded-allow-ips",
        metavar="IPS",
        help="proxies (comma-separated, or *) whose X-Forwarded-For/-Proto headers are believed"
        " (default: $FORWARDED_ALLOW_IPS, else 127.0.0.1)",
    )
    limits = hub.add_argument_group("limits", "What clients can make the hub hold (docs/hub-protocol.md §8).")
    limits.add_argument(
        "--max-inflight-body-bytes",
        type=_byte_count,
        default=DEFAULT_MAX_INFLIGHT_BODY_BYTES,
        metavar="BYTES",
        help="request bodies held at once, all clients together; over it ingest answers 503 (default: 64MiB)",
    )
    limits.add_argument(
        "--ingest-rate",
        type=_byte_count_or_zero,
        default=DEFAULT_INGEST_RATE,
        metavar="BYTES",
        help="bytes per second one client id may send on average; over it 429 (default: 4MiB; 0: off)",
    )
    limits.add_argument(
        "--ingest-burst",
        type=_byte_count,
        default=DEFAULT_INGEST_BURST,
        metavar="BYTES",
        help="bytes one client id may send at once (default: 256MiB)",
    )
    limits.add_argument(
        "--body-timeout",
        type=_positive,
        default=DEFAULT_BODY_TIMEOUT,
        metavar="SECONDS",
        help="time to send a whole request body; 408 after it (default: %(default)g)",
    )
    limits.add_argument(
        "--header-timeout",
        type=_positive,
        default=10.0,
        metavar="SECONDS",
        help="time to send a request's headers; the connection is closed after it (default: %(default)g)",
    )
    limits.add_argument(
        "--keep-alive-timeout",
        type=int,
        default=5,
        metavar="SECONDS",
        help="idle time between requests on a connection (default: %(default)s)",
    )
    limits.add_argument(
        "--max-queue-lag",
        type=_positive,
        default=DEFAULT_MAX_QUEUE_LAG,
        metavar="SECONDS",
        help="when folding falls this far behind, the clients that caused it get 503 (default: 30)",
    )
    limits.add_argument(
        "--max-connections",
        type=int,
        metavar="N",
        help="open connections at most (default: the fd limit minus 256)",
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
    alerts = hub.add_argument_group("alerting")
    alerts.add_argument(
        "--alert-interval",
        type=_positive,
        default=60.0,
        metavar="SECONDS",
        help="evaluate the alert rules every SECONDS (default: 60)",
    )
    alerts.add_argument(
        "--alerts-file",
        metavar="PATH",
        help="channels, rules and health checks as code (TOML), loaded at start (see the README)",
    )
    hub.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    hub.set_defaults(handler=run_hub)

    report = subparsers.add_parser("report", help="print a report of one app's data from a hub")
    report.add_argument("--hub", default="http://127.0.0.1:8250", help="hub base URL (default: %(default)s)")
    report.add_argument("--client-id", required=True, type=_client_id, metavar="UUID")
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


def _byte_count_or_zero(value: str) -> int:
    return 0 if value.strip() in ("0", "off") else _byte_count(value)


def _allowed_host(value: str) -> str:
    from apitally_hub.security.hosts import HostPolicy

    try:
        HostPolicy([value])
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value


class _ConfigError(Exception):
    """A configuration the hub refuses to start with (exit code 2, one line)."""


def _check_tls(certfile: str | None, keyfile: str | None) -> None:
    if keyfile and not certfile:
        raise _ConfigError("--ssl-keyfile needs --ssl-certfile")
    if certfile:
        try:
            ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(certfile, keyfile)
        except (OSError, ssl.SSLError) as exc:
            raise _ConfigError(f"cannot use the TLS certificate {certfile!r}: {exc}") from None


def run_hub(args: argparse.Namespace) -> int:
    """Run the local hub in the foreground (Ctrl+C stops it)."""
    from apitally_hub.security.hosts import InsecureBindError, require_token_off_loopback
    from apitally_hub.security.tokens import TokenError, resolve_tokens
    from apitally_hub.server import Transport, serve

    if args.action == "migrate":
        return migrate(args.db)
    try:
        tokens = resolve_tokens(args.tokens, args.token_file, os.environ)
        _check_tls(args.ssl_certfile, args.ssl_keyfile)
        if args.max_connections is not None and args.max_connections < 1:
            raise _ConfigError("--max-connections must be at least 1")
        if args.keep_alive_timeout < 1:
            raise _ConfigError("--keep-alive-timeout must be at least 1")
        transport = Transport(
            args.ssl_certfile,
            args.ssl_keyfile,
            args.forwarded_allow_ips,
            header_timeout=args.header_timeout,
            keep_alive_timeout=args.keep_alive_timeout,
            max_connections=args.max_connections,
        )
        require_token_off_loopback(args.host, tokens)  # before logging is set up: a refusal is one line
        alerting = alert_settings(args)
        if alerting is None:
            return 2
        logging.basicConfig(
            level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
        return serve(
            args.host,
            args.port,
            args.db,
            log_level=args.log_level,
            tokens=tokens,
            allowed_hosts=args.allowed_hosts or (),
            transport=transport,
            client_ids=args.client_ids,
            retention=Retention(
                minutes=args.retention_days,
                hours=args.hourly_retention_days,
                days=args.daily_retention_days,
                request_log=args.request_log_retention_days,
                raw_messages=args.raw_retention_days,
            ),
            allow_extra_fields=args.allow_extra_fields,
            max_inflight_body_bytes=args.max_inflight_body_bytes,
            ingest_rate=args.ingest_rate,
            ingest_burst=args.ingest_burst,
            body_timeout=args.body_timeout,
            max_queue_lag=args.max_queue_lag,
            alerting=alerting,
        )
    except (TokenError, InsecureBindError, _ConfigError) as exc:
        print(f"apitally-otel hub: {exc}", file=sys.stderr)
        return 2


def alert_settings(args: argparse.Namespace) -> Any:
    """The alerting settings; a rules file is checked before the hub binds (None: it is invalid)."""
    import time
    from pathlib import Path

    from apitally_hub.alerting import rulesfile
    from apitally_hub.alerting.settings import AlertSettings

    path = Path(args.alerts_file) if args.alerts_file else None
    if path is not None:
        try:
            rulesfile.load(path, time.time())
        except rulesfile.RulesFileError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return None
    return AlertSettings(interval=args.alert_interval, rules_file=path)


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
