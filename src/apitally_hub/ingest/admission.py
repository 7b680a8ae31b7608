"""Admission of an ingest request, before its body is read: the client's rate limit (429), the
folding backlog it caused (503, :mod:`~apitally_hub.limits.backlog`) and the process-wide body
budget (503), all with ``Retry-After``, which clients honour and retry.

``async with admission.admit(client_id, request, limit) as ticket:`` wraps reading, parsing and
storing one message; the ticket grows the budget reservation (chunked bodies, decompressed
request-log lines) and charges the client's bucket; everything is given back on exit.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.requests import Request

from apitally_hub.errors import HubError
from apitally_hub.limits import backlog
from apitally_hub.limits.backlog import Backlog
from apitally_hub.limits.budget import BodyBudget, BudgetExhausted, Reservation
from apitally_hub.limits.rate import IngestRateLimiter
from apitally_hub.log_throttle import LogThrottle

_logger = logging.getLogger(__name__)

BUDGET_RETRY_AFTER = 2
"""Seconds a client is asked to wait when the body budget is spent (bodies in flight finish fast)."""


class Ticket:
    """One admitted request's share of the budget and of its client's rate."""

    def __init__(self, admission: Admission, client_id: str, reservation: Reservation) -> None:
        self._admission = admission
        self._client_id = client_id
        self.reservation = reservation

    def grow(self, size: int) -> None:
        """Hold ``size`` more bytes (thread-safe); 503 when the budget is spent."""
        try:
            self.reservation.grow(size)
        except BudgetExhausted:
            raise self._admission.busy() from None

    def charge(self, size: int) -> None:
        """Count ``size`` bytes against the client's ingest rate."""
        if self._admission.rates is not None:
            self._admission.rates.charge(self._client_id, size)


class Admission:
    def __init__(
        self, budget: BodyBudget, rates: IngestRateLimiter | None, queue: Backlog | None = None
    ) -> None:
        self.budget = budget
        self.rates = rates
        self.queue = queue or Backlog()
        self.log = LogThrottle(_logger)

    def busy(self) -> HubError:
        self.log.warning(
            "budget",
            "Answered 503: request bodies in flight reached the budget of %d bytes",
            self.budget.capacity,
        )
        return HubError(
            503,
            "The hub is busy with other uploads; retry later",
            {"Retry-After": str(BUDGET_RETRY_AFTER)},
        )

    @asynccontextmanager
    async def admit(self, client_id: str, request: Request, limit: int) -> AsyncIterator[Ticket]:
        """``limit``: the endpoint's body limit. Reserves the declared ``Content-Length`` up front
        (none when it is over ``limit``: reading answers 413 at once); a body without one grows the
        reservation chunk by chunk."""
        retry_after = self.rates.retry_after(client_id) if self.rates is not None else None
        if retry_after is not None:
            self.log.warning("rate", "Answered 429: client %s is over its ingest rate", client_id)
            raise HubError(
                429, "Ingest rate exceeded for this client id; retry later", {"Retry-After": str(retry_after)}
            )
        if self.queue.holds_back(client_id):
            self.log.warning("backlog", "Answered 503: folding is behind on client %s's messages", client_id)
            raise HubError(
                503,
                "The hub has not yet stored what this client id sent before; retry later",
                {"Retry-After": str(backlog.RETRY_AFTER)},
            )
        declared = request.headers.get("content-length", "")
        size = int(declared) if declared.isascii() and declared.isdigit() and len(declared) < 19 else 0
        try:
            reservation = self.budget.reserve(size if size <= limit else 0)
        except BudgetExhausted:
            raise self.busy() from None
        try:
            yield Ticket(self, client_id, reservation)
        finally:
            reservation.release()
