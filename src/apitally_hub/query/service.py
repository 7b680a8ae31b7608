"""The hub's query layer: every number the JSON API, the dashboard, the report and alerting show
comes from a method of :class:`QueryService` (one code path), computed from
:class:`~apitally_hub.storage.base.Storage` with the windows planned by :mod:`.planner` and the
statistics of :mod:`.stats`.

Its methods come by family, each from its own module over the shared :class:`~.base.QueryBase`:
:mod:`.apps`, :mod:`.endpoints`, :mod:`.traffic` (charts and histograms), :mod:`.consumers`,
:mod:`.errors`, :mod:`.instances` (and uptime), :mod:`.requests` (request log and rejections),
and :mod:`.alert_values` (what alert rules see). A number shown in two places is computed by one
method, whichever family asks for it.

Methods are synchronous (call them from a worker thread) and return plain JSON-able values.
Lists are paged: ``limit`` items from ``cursor`` (an opaque string from the previous page's
``next_cursor``; None when there is no next page; see :mod:`.cursors`).
"""

from __future__ import annotations

from apitally_hub.query.alert_values import AlertValueQueries
from apitally_hub.query.apps import AppQueries
from apitally_hub.query.consumers import ConsumerQueries
from apitally_hub.query.endpoints import EndpointQueries
from apitally_hub.query.errors import ErrorQueries
from apitally_hub.query.requests import RequestLogQueries
from apitally_hub.query.traffic import TrafficQueries


class QueryService(
    AppQueries,
    EndpointQueries,
    TrafficQueries,
    ConsumerQueries,
    ErrorQueries,
    RequestLogQueries,
    AlertValueQueries,
):
    """All the queries, over one store: ``QueryService(storage, retention, *,
    default_sync_interval=60.0, uptime_min_window=UPTIME_MIN_WINDOW, clock=time.time)``
    (:class:`~.base.QueryBase`)."""


__all__ = ["QueryService"]
