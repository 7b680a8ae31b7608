"""ApitallyMetricExporter: turns MetricsData into hub sync messages and hands them to the HubClient.

``export()`` runs on the metric reader's thread. It converts (pure functions in ``_encoding``),
enqueues, and returns; delivery, retries and backoff happen on the HubClient's own thread.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
from opentelemetry.sdk.metrics import (
    Counter,
    Histogram,
    ObservableCounter,
    ObservableGauge,
    ObservableUpDownCounter,
    UpDownCounter,
)
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    MetricExporter,
    MetricExportResult,
    MetricsData,
)

from apitally_otel._client import HubClient
from apitally_otel._config import ConfigError, HubSettings, resolve_settings
from apitally_otel._encoding import encode_startup, encode_sync
from apitally_otel._instance import instance_uuid, release_after_fork
from apitally_otel._resources import ResourceSampler
from apitally_otel._startup import app_info

_logger = logging.getLogger(__name__)

_DELTA = AggregationTemporality.DELTA
_TEMPORALITY: dict[type, AggregationTemporality] = {
    Counter: _DELTA,
    UpDownCounter: _DELTA,
    Histogram: _DELTA,
    ObservableCounter: _DELTA,
    ObservableUpDownCounter: _DELTA,
    ObservableGauge: _DELTA,
}


class ApitallyMetricExporter(MetricExporter):
    """Sends the request metrics derived by apitally-otel to an Apitally hub.

    Arguments fall back to ``APITALLY_CLIENT_ID``, ``APITALLY_ENV`` and ``APITALLY_HUB_BASE_URL``.
    An invalid configuration logs one error and turns the exporter into a no-op; it never raises.
    """

    def __init__(
        self,
        client_id: str | None = None,
        env: str | None = None,
        hub_base_url: str | None = None,
        *,
        settings: HubSettings | None = None,
        _transport: httpx.BaseTransport | None = None,
        _clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(preferred_temporality=_TEMPORALITY)
        self._clock = _clock
        self._lock = threading.Lock()
        self._shutdown = False
        self._resources = ResourceSampler()
        self._client: HubClient | None = None
        self.instance_uuid = ""
        self._startup_payload: dict[str, Any] | None = None
        try:
            self.settings: HubSettings | None = settings or resolve_settings(client_id, env, hub_base_url)
        except ConfigError as exc:
            _logger.error("apitally-otel disabled: %s", exc)
            self.settings = None
            return
        self.instance_uuid = instance_uuid(self.settings.client_id, self.settings.env)
        self._client = HubClient(self.settings, transport=_transport, clock=_clock)
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._after_fork_in_child)

    @property
    def enabled(self) -> bool:
        return self._client is not None and not self._shutdown

    @property
    def client(self) -> HubClient | None:
        return self._client

    def set_app(self, app: Any, app_version: str | None = None, *, openapi: bool = True) -> None:
        """Describe the app to the hub: the startup message is (re)sent until the hub accepts it."""
        if self._client is None:
            return
        paths, openapi_json, versions = app_info(app, app_version, openapi=openapi)
        self._startup_payload = {"paths": paths, "versions": versions, "openapi": openapi_json}
        self._send_startup()

    def _send_startup(self) -> None:
        if self._client is None or self._startup_payload is None:
            return
        self._client.set_startup(
            encode_startup(
                instance_uuid=self.instance_uuid, message_uuid=str(uuid.uuid4()), **self._startup_payload
            )
        )

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        if self._client is None or self._shutdown:
            return MetricExportResult.SUCCESS if self._client is None else MetricExportResult.FAILURE
        try:
            payload = encode_sync(
                metrics_data,
                instance_uuid=self.instance_uuid,
                message_uuid=str(uuid.uuid4()),
                timestamp=self._clock(),
                resources=self._resources.sample(),
            )
            queued = self._client.enqueue_sync(payload)
        except Exception:  # export() reports failure, it never raises
            _logger.exception("apitally-otel: failed to build the sync message")
            return MetricExportResult.FAILURE
        return MetricExportResult.SUCCESS if queued else MetricExportResult.FAILURE

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        if self._client is None:
            return True
        return self._client.flush(timeout_millis / 1000)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        with self._lock:
            if self._shutdown:
                _logger.debug("apitally-otel: exporter already shut down")
                return
            self._shutdown = True
        if self._client is not None:
            self._client.shutdown(min(timeout_millis / 1000, 5.0))

    def _after_fork_in_child(self) -> None:
        # A forked worker is a new instance: its own identity, its own (empty) queue and thread.
        if self._client is None or self.settings is None:
            return
        release_after_fork()
        self.instance_uuid = instance_uuid(self.settings.client_id, self.settings.env)
        self._client = HubClient(self.settings, transport=self._client._transport, clock=self._clock)
        self._resources.reset()
        self._send_startup()
