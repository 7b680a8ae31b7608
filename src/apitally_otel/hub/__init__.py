"""A local hub: receives the client's monitoring data (hub-protocol.md), stores it in SQLite
and answers queries. Run it with ``apitally-otel hub``; use :class:`HubServer` in tests."""

from __future__ import annotations

from .api_client import HubQueryClient, HubQueryError
from .app import create_app
from .faults import FaultPlan
from .server import HubServer, serve

__all__ = ["FaultPlan", "HubQueryClient", "HubQueryError", "HubServer", "create_app", "serve"]
