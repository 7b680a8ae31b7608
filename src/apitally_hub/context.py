"""What the endpoints share: settings, the database (opened by the app's lifespan), faults, clock."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from apitally_hub.errors import HubError
from apitally_hub.ingest.faults import FaultPlan
from apitally_hub.settings import HubSettings
from apitally_hub.storage.sqlite.database import Database


@dataclass
class HubContext:
    settings: HubSettings
    faults: FaultPlan = field(default_factory=FaultPlan)
    clock: Callable[[], float] = time.time
    db: Database | None = None

    @property
    def database(self) -> Database:
        if self.db is None:
            raise HubError(503, "The hub is starting or stopping")
        return self.db
