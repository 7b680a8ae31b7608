"""The ``apitally-otel`` command line.

Each subcommand lives with its feature: a module listed in ``SUBCOMMAND_MODULES`` exposes
``register(subparsers)``, which adds its parser(s) and sets ``handler`` (``args -> int``) as a
default. Registering modules import only argparse-level code; handlers import the rest.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

SUBCOMMAND_MODULES: tuple[str, ...] = (
    "apitally_otel.hub.cli",  # hub, report
    "apitally_otel.demo.cli",  # demo
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="apitally-otel",
        description="API monitoring for Starlette and FastAPI on OpenTelemetry: local hub, reports, demo.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in SUBCOMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    return int(handler(args))


if __name__ == "__main__":
    sys.exit(main())
