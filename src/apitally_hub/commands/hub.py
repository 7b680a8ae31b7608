"""``apitally-otel hub [serve|migrate]``: run a hub in the foreground, or bring its store's schema
up to date. The options come from :class:`~apitally_hub.config.HubConfig`'s fields; heavy imports
(uvicorn, the web app) happen when it runs."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Any

from apitally_hub.config import ConfigError, add_arguments, load_config

Subparsers = Any
"""``argparse._SubParsersAction`` (private in the standard library, so typed loosely here)."""


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
    add_arguments(hub)
    hub.set_defaults(handler=run_hub)


def run_hub(args: argparse.Namespace) -> int:
    """Run the local hub in the foreground (Ctrl+C stops it)."""
    from apitally_hub.security.hosts import InsecureBindError, require_token_off_loopback
    from apitally_hub.server import serve

    if args.action == "migrate":
        return migrate(args.db)
    try:
        config = load_config(args, os.environ)
        require_token_off_loopback(config.host, config.tokens)  # before logging is set up: one line
    except (ConfigError, InsecureBindError) as exc:
        print(f"apitally-otel hub: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=config.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    return serve(config)


def migrate(db: str) -> int:
    """``hub migrate``: run the store's pending migrations and say where it stands."""
    from apitally_hub.storage import create_storage
    from apitally_hub.storage.urls import redact_url

    try:
        storage = create_storage(db)
        version = storage.open()
    except Exception as exc:  # a CLI: report any failure in one line
        print(f"error: cannot migrate {redact_url(db)}: {exc}", file=sys.stderr)
        return 1
    storage.close()
    print(f"{storage.url}: schema version {version}")
    return 0
