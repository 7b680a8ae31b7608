"""What the endpoints share: the configuration, the read tokens, the store and the query layer (both set
up by the app's lifespan), the folding worker, the ingest admission (body budget, per-client
rate), faults and the clock."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

import anyio
import anyio.to_thread

from apitally_hub.config import HubConfig
from apitally_hub.errors import HubError
from apitally_hub.ingest.admission import Admission
from apitally_hub.ingest.faults import FaultPlan
from apitally_hub.ingest.worker import Folder
from apitally_hub.limits.backlog import Backlog
from apitally_hub.limits.budget import BodyBudget
from apitally_hub.limits.rate import IngestRateLimiter
from apitally_hub.query.service import QueryService
from apitally_hub.security.tokens import TokenSet
from apitally_hub.security.write_tokens import WriteTokenCache
from apitally_hub.storage.base import Storage

if TYPE_CHECKING:
    from apitally_hub.alerting.workers import Alerting

T = TypeVar("T")

WORKER_THREADS = 8
"""Store calls from request handlers run on at most this many threads at once."""


@dataclass
class HubContext:
    config: HubConfig
    faults: FaultPlan = field(default_factory=FaultPlan)
    clock: Callable[[], float] = time.time
    storage: Storage | None = None
    worker: Folder | None = None
    alerting: Alerting | None = None
    _limiter: anyio.CapacityLimiter | None = None
    tokens: TokenSet = field(default_factory=TokenSet)
    """The read tokens (none: reads are open, on loopback only)."""
    write_tokens: WriteTokenCache = field(default_factory=WriteTokenCache)
    """Which app an OTLP write token names, remembered briefly; cleared when one is revoked."""
    admission: Admission = field(init=False)

    def __post_init__(self) -> None:
        config = self.config
        rates = None
        if config.ingest_rate > 0:
            rates = IngestRateLimiter(config.ingest_rate, config.ingest_burst)
        self.admission = Admission(
            BodyBudget(config.max_inflight_body_bytes), rates, Backlog(config.max_queue_lag)
        )

    @property
    def store(self) -> Storage:
        if self.storage is None:
            raise HubError(503, "The hub is starting or stopping", {"Retry-After": "1"})
        return self.storage

    @property
    def queries(self) -> QueryService:
        return QueryService(
            self.store,
            self.config.retention.by_resolution,
            default_sync_interval=self.config.default_sync_interval,
            uptime_min_window=self.config.alerting.uptime_min_window,
            clock=self.clock,
        )

    async def run(self, work: Callable[[], T]) -> T:
        """Run blocking store work on a worker thread (the event loop never waits on the database)."""
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(WORKER_THREADS)
        return await anyio.to_thread.run_sync(work, limiter=self._limiter)
