"""apitally-otel's hub: receives the client's monitoring data (docs/hub-protocol.md), stores it,
and answers queries. Run it with ``apitally-otel hub``; use :class:`HubServer` in tests.

Needs the ``hub`` extra (``pip install 'apitally-otel[hub]'``). The names below are imported on
first use, so ``import apitally_hub`` (and the ``apitally-otel`` command line) works without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from apitally_hub.config import HubConfig
    from apitally_hub.ingest.faults import FaultPlan
    from apitally_hub.report.client import HubQueryClient, HubQueryError
    from apitally_hub.server import HubServer, serve
    from apitally_hub.web.app import create_app

__all__ = ["FaultPlan", "HubConfig", "HubQueryClient", "HubQueryError", "HubServer", "create_app", "serve"]


def __getattr__(name: str) -> Any:
    # Plain imports on first use (PEP 562): the server and the app need uvicorn and Jinja2.
    if name == "HubConfig":
        from apitally_hub.config import HubConfig

        return HubConfig
    if name == "FaultPlan":
        from apitally_hub.ingest.faults import FaultPlan

        return FaultPlan
    if name in ("HubQueryClient", "HubQueryError"):
        from apitally_hub.report import client

        return getattr(client, name)
    if name in ("HubServer", "serve"):
        from apitally_hub import server

        return getattr(server, name)
    if name == "create_app":
        from apitally_hub.web.app import create_app

        return create_app
    raise AttributeError(f"module 'apitally_hub' has no attribute {name!r}")
