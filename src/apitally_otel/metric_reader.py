"""ApitallyMetricReader: a PeriodicExportingMetricReader that also drains the span processor's aggregate.

Every interval it collects whatever the MeterProvider it is registered with has (usually nothing:
the request metrics are not SDK instruments but the span processor's own bounded aggregate, see
:mod:`apitally_otel._aggregator`) and adds the interval drained from
:class:`~apitally_otel.ApitallySpanProcessor` as OTel metric data under the ``apitally_otel``
instrumentation scope. It always produces data, so the exporter sends a sync every interval — the
hub's heartbeat — even with no traffic, and it works without being registered on a MeterProvider.

The same derived request metrics can also go to other backends, computed once: exporters passed as
``forward_to`` (or, with ``APITALLY_OTLP_METRICS=true``, an ``OTLPMetricExporter`` configured by
the standard ``OTEL_EXPORTER_OTLP_*`` variables) receive the ``http.server.request.duration`` and
body-size histograms, with fixed bucket bounds and ``apitally.consumer.identifier`` attributes.

Fork safety: a fork waits for a collection in progress, so no lock on the collection path (the
SDK's, the aggregator's drain) is copied while held. The child starts with fresh locks and an
empty aggregate: what was counted before the fork is the parent's to report (so the SDK's re-export
of pre-fork data in the child carries nothing for the hub). Our child handler runs before the
SDK's, which restarts the export thread. Identity and the quiet mode of forked processes: see
:mod:`apitally_otel.metric_exporter`.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry.instrumentation.utils import suppress_instrumentation
from opentelemetry.sdk.metrics.export import (
    MetricExporter,
    MetricsData,
    PeriodicExportingMetricReader,
    ResourceMetrics,
    ScopeMetrics,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from apitally_otel._config import otlp_metrics_enabled, resolve_sync_interval
from apitally_otel._gil import gc_paused, release
from apitally_otel._metrics import SCOPE_NAME, for_otlp, interval_to_metrics, iter_scope_metrics
from apitally_otel.metric_exporter import _TEMPORALITY as _DELTA_TEMPORALITY
from apitally_otel.metric_exporter import ApitallyMetricExporter
from apitally_otel.span_processor import ApitallySpanProcessor
from apitally_otel.version import __version__

_logger = logging.getLogger(__name__)

_SCOPE = InstrumentationScope(SCOPE_NAME, __version__)
_Collect = Callable[..., "MetricsData | None"]
_FORK_GUARD_TIMEOUT = 2.0


class ApitallyMetricReader(PeriodicExportingMetricReader):
    """Syncs with the hub every ``sync_interval`` seconds (default 60, or ``APITALLY_SYNC_INTERVAL``,
    or ``OTEL_METRIC_EXPORT_INTERVAL`` in ms). Built with no arguments it configures itself from env
    vars, which is what ``OTEL_METRICS_EXPORTER=apitally`` does.
    """

    def __init__(
        self,
        exporter: MetricExporter | None = None,
        *,
        span_processor: ApitallySpanProcessor | None = None,
        sync_interval: float | None = None,
        export_timeout_millis: float | None = None,
        forward_to: Sequence[MetricExporter] | None = None,
    ) -> None:
        self._sdk_collect: _Collect | None = None
        self.forward_to = list(forward_to) if forward_to is not None else _forward_from_env()
        self._fork_guard = threading.Lock()  # held by each collection, and by fork() meanwhile
        self._fork_guard_held = False
        self.span_processor = span_processor if span_processor is not None else ApitallySpanProcessor()
        self.exporter = exporter if exporter is not None else ApitallyMetricExporter()
        _register_at_fork(self)  # before the SDK's handler: the child is reset before its thread restarts
        super().__init__(
            self.exporter,
            export_interval_millis=resolve_sync_interval(sync_interval) * 1000,
            export_timeout_millis=export_timeout_millis,
        )

    # The SDK stores the MeterProvider's collect callback in ``_collect``; wrapping it here is
    # what lets every collection include the processor's interval (and work unregistered).
    @property  # type: ignore[override]
    def _collect(self) -> _Collect:
        return self._collect_with_requests

    @_collect.setter  # type: ignore[override]
    def _collect(self, value: _Collect | None) -> None:
        self._sdk_collect = value

    def _collect_with_requests(self, reader: Any, timeout_millis: float = 10_000) -> MetricsData:
        with self._fork_guard:
            sdk_data = self._sdk_collect(reader, timeout_millis=timeout_millis) if self._sdk_collect else None
            interval = self.span_processor.aggregator.drain()
        interval.resolve_sentry_links()  # may wait a moment for Sentry (see _sentry): not under the guard
        scope_metrics = ScopeMetrics(_SCOPE, interval_to_metrics(interval), "")
        if sdk_data is None or not sdk_data.resource_metrics:
            return MetricsData([ResourceMetrics(Resource.get_empty(), [scope_metrics], "")])
        first, *rest = sdk_data.resource_metrics
        merged = ResourceMetrics(first.resource, [*first.scope_metrics, scope_metrics], first.schema_url)
        return MetricsData([merged, *rest])

    def collect(self, timeout_millis: float = 10_000) -> None:  # type: ignore[misc]
        # No automatic garbage collection while an interval is converted: the churn of a large
        # interval would otherwise trigger full collections that stall the event loop (see _gil).
        with gc_paused():
            super().collect(timeout_millis=timeout_millis)

    def _receive_metrics(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> None:
        try:
            self._export_and_forward(metrics_data, timeout_millis, **kwargs)
        finally:
            for metric in iter_scope_metrics(metrics_data):
                points = getattr(metric.data, "data_points", None)
                if isinstance(points, list):
                    release(points)  # ours, built per interval: freed in slices, not in one cascade

    def _export_and_forward(self, metrics_data: MetricsData, timeout_millis: float, **kwargs: Any) -> None:
        super()._receive_metrics(metrics_data, timeout_millis=timeout_millis, **kwargs)
        if not self.forward_to:
            return
        ours = [m for m in iter_scope_metrics(metrics_data)]
        data = MetricsData(
            [ResourceMetrics(_resource(metrics_data), [ScopeMetrics(_SCOPE, for_otlp(ours), "")], "")]
        )
        with suppress_instrumentation():  # the exporters' own HTTP calls are not app traffic
            for exporter in self.forward_to:
                try:
                    exporter.export(data, timeout_millis=timeout_millis)
                except Exception:  # another backend's failure must not stop the hub sync
                    _logger.exception(
                        "apitally-otel: forwarding metrics to %s failed", type(exporter).__name__
                    )

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        super().shutdown(timeout_millis=timeout_millis, **kwargs)
        for exporter in self.forward_to:
            try:
                exporter.shutdown(timeout_millis=timeout_millis)
            except Exception:  # shutting down another backend's exporter must not raise here
                _logger.exception("apitally-otel: shutting down %s failed", type(exporter).__name__)

    def _before_fork(self) -> None:
        # Bounded: a collection never waits on the hub (export only enqueues).
        self._fork_guard_held = self._fork_guard.acquire(timeout=_FORK_GUARD_TIMEOUT)

    def _after_fork_in_parent(self) -> None:
        if self._fork_guard_held:
            self._fork_guard_held = False
            self._fork_guard.release()

    def _after_fork_in_child(self) -> None:
        self._fork_guard = threading.Lock()
        self._fork_guard_held = False
        self._export_lock = threading.Lock()
        # What was counted before the fork belongs to the parent, which reports it itself.
        self.span_processor.aggregator.reset_after_fork()


def _resource(metrics_data: MetricsData) -> Resource:
    first = next(iter(metrics_data.resource_metrics), None)
    return first.resource if first is not None else Resource.get_empty()


def _forward_from_env() -> list[MetricExporter]:
    if not otlp_metrics_enabled():
        return []
    try:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    except ImportError as exc:  # the [otlp] extra is not installed: the hub sync works without it
        _logger.error(
            "apitally-otel: not forwarding metrics: APITALLY_OTLP_METRICS=true needs the OTLP exporter, "
            "pip install 'apitally-otel[otlp]' (%s)",
            exc,
        )
        return []
    try:
        return [OTLPMetricExporter(preferred_temporality=dict(_DELTA_TEMPORALITY))]
    except Exception:  # e.g. an invalid OTEL_EXPORTER_OTLP_* value: the hub sync must still work
        _logger.exception("apitally-otel: not forwarding metrics: the OTLP exporter could not be built")
        return []


def _register_at_fork(reader: ApitallyMetricReader) -> None:
    if not hasattr(os, "register_at_fork"):  # pragma: no cover - Windows
        return
    ref = weakref.ref(reader)  # the handlers must not keep readers alive

    def call(name: str) -> Callable[[], None]:
        def handler() -> None:
            target = ref()
            if target is not None:
                getattr(target, name)()

        return handler

    os.register_at_fork(
        before=call("_before_fork"),
        after_in_parent=call("_after_fork_in_parent"),
        after_in_child=call("_after_fork_in_child"),
    )
