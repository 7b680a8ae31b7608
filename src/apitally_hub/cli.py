"""The ``apitally-otel`` command line: ``hub``, ``report``, ``apps``, ``alerts``, ``demo``.

Each subcommand is a module of :mod:`apitally_hub.commands` with ``register(subparsers)``, which
adds its parser(s) and sets ``handler`` (``args -> int``) as a default. Registering imports only
argparse-level code; handlers import the rest, so the command line answers (with the install hint)
even where the ``hub`` extra is missing.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from collections.abc import Sequence

from apitally_hub.commands import alerts, apps, demo, hub, report

SUBCOMMANDS = (hub, report, apps, alerts, demo)

HUB_REQUIREMENTS: tuple[str, ...] = ("uvicorn", "jinja2")
"""Import names the ``hub`` extra provides; every subcommand needs them."""

INSTALL_HINT = "pip install 'apitally-otel[hub]'"


def missing_hub_requirements() -> list[str]:
    return [name for name in HUB_REQUIREMENTS if importlib.util.find_spec(name) is None]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="apitally-otel",
        description="API monitoring for Starlette and FastAPI on OpenTelemetry: local hub, reports, demo.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in SUBCOMMANDS:
        command.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    missing = missing_hub_requirements()
    if missing:
        print(
            f"apitally-otel {args.command} needs the hub extra"
            f" ({', '.join(missing)} is not installed): {INSTALL_HINT}",
            file=sys.stderr,
        )
        return 2
    return int(handler(args))


if __name__ == "__main__":
    sys.exit(main())
