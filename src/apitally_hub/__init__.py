"""apitally-otel's hub: receives the client's monitoring data (docs/hub-protocol.md), stores it,
and answers queries. Run it with ``apitally-otel hub``; use :class:`HubServer` in tests.

Needs the ``hub`` extra (``pip install 'apitally-otel[hub]'``). The names below are imported on
first use, so ``import apitally_hub`` (and the ``apitally-otel`` command line) works without it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from apitally_hub.app import create_app
    from apitally_hub.ingest.faults import FaultPlan
    from apitally_hub.report.client import HubQueryClient, HubQueryError
    from apitally_hub.server import HubServer, serve

_EXPORTS = {
    "FaultPlan": "apitally_hub.ingest.faults",
    "HubQueryClient": "apitally_hub.report.client",
    "HubQueryError": "apitally_hub.report.client",
    "HubServer": "apitally_hub.server",
    "create_app": "apitally_hub.app",
    "serve": "apitally_hub.server",
}

__all__ = ["FaultPlan", "HubQueryClient", "HubQueryError", "HubServer", "create_app", "serve"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'apitally_hub' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
