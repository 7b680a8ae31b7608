"""What the endpoints share: settings, the database (opened by the app's lifespan), faults, clock,
and the ingest admission (body budget, per-client rate)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from apitally_hub.errors import HubError
from apitally_hub.ingest.admission import Admission
from apitally_hub.ingest.faults import FaultPlan
from apitally_hub.limits.budget import BodyBudget
from apitally_hub.limits.rate import IngestRateLimiter
from apitally_hub.settings import HubSettings
from apitally_hub.storage.sqlite.database import Database


@dataclass
class HubContext:
    settings: HubSettings
    faults: FaultPlan = field(default_factory=FaultPlan)
    clock: Callable[[], float] = time.time
    db: Database | None = None
    admission: Admission = field(init=False)

    def __post_init__(self) -> None:
        settings = self.settings
        rates = None
        if settings.ingest_rate > 0:
            rates = IngestRateLimiter(settings.ingest_rate, settings.ingest_burst)
        self.admission = Admission(BodyBudget(settings.max_inflight_body_bytes), rates)

    @property
    def database(self) -> Database:
        if self.db is None:
            raise HubError(503, "The hub is starting or stopping")
        return self.db
