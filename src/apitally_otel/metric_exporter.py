"""ApitallyMetricExporter: turns MetricsData into hub sync messages and hands them to the HubClient.

``export()`` runs on the metric reader's thread. It converts (pure functions in ``_hub.encoding``),
enqueues, and returns; delivery, retries and backoff happen on the HubClient's own thread.

Processes and ``fork()`` (gunicorn, ``--preload``, multiprocessing):

- The ``instance_uuid`` is taken (a slot lock file, see ``_hub.instance``) when first needed, so a
  process that never sends anything holds no slot.
- A forked child is a new instance: new HubClient (empty queue, own thread), new id, new resource
  baseline. It stays *quiet* (sends nothing, not even heartbeats) until it serves: the app's
  lifespan startup (:meth:`set_app`) or a sync carrying request data. A pool process forked by a
  serving app therefore never shows up as an instance at the hub.
- The parent after a fork: if it has not served (no lifespan startup, no request data), it is a
  pre-fork master (gunicorn ``--preload``): it goes quiet too, and stays so until it serves. It
  keeps its slot, if it took one, so worker ids stay stable across worker restarts.
- What the parent counted before the fork is reported by the parent only (the reader resets the
  child's aggregate).

Shutdown: :meth:`force_flush` (what lifespan shutdown calls) and :meth:`shutdown` (interpreter
exit) wait for the hub at most ``shutdown_timeout`` seconds (``APITALLY_SHUTDOWN_TIMEOUT``, default
5), whatever the caller's timeout; a request still hanging after one of them is not waited for
again by the next, so the two together stay within about one deadline.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
import weakref
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

from apitally_otel._config import (
    ConfigError,
    HubSettings,
    resolve_hub_timeout,
    resolve_proxy,
    resolve_settings,
    resolve_shutdown_timeout,
)
from apitally_otel._gil import release
from apitally_otel._hub.client import MAX_BACKOFF_CAP, HubClient
from apitally_otel._hub.encoding import encode_startup, encode_sync
from apitally_otel._hub.instance import instance_uuid, release_after_fork, release_instance_uuid
from apitally_otel._hub.resources import ResourceSampler
from apitally_otel._hub.startup import app_info

_logger = logging.getLogger(__name__)

_DATA_KEYS = ("requests", "validation_errors", "server_errors", "consumers")

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

    Arguments fall back to ``APITALLY_CLIENT_ID``, ``APITALLY_ENV``, ``APITALLY_HUB_BASE_URL``,
    ``APITALLY_PROXY`` (else the standard ``HTTPS_PROXY``/``NO_PROXY`` variables apply),
    ``APITALLY_SHUTDOWN_TIMEOUT`` and ``APITALLY_HUB_TIMEOUT`` (the deadline of one hub request).
    An invalid configuration logs one error and turns the exporter into a no-op; it never raises.
    """

    def __init__(
        self,
        client_id: str | None = None,
        env: str | None = None,
        hub_base_url: str | None = None,
        *,
        settings: HubSettings | None = None,
        proxy: str | None = None,
        shutdown_timeout: float | None = None,
        hub_timeout: float | None = None,
        _transport: httpx.BaseTransport | None = None,
        _clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(preferred_temporality=_TEMPORALITY)
        self._clock = _clock
        self._lock = threading.Lock()
        self._shutdown = False
        self._resources = ResourceSampler()
        self._client: HubClient | None = None
        self._instance: str | None = None
        self._startup_payload: dict[str, Any] | None = None
        self._startup_sent = False
        self._active = True  # False: quiet until this process serves (see the module docstring)
        self._app_started = False
        self._served = False
        self.shutdown_timeout = resolve_shutdown_timeout(shutdown_timeout)
        self.hub_timeout = resolve_hub_timeout(hub_timeout)
        try:
            self.settings: HubSettings | None = settings or resolve_settings(client_id, env, hub_base_url)
            resolved_proxy = resolve_proxy(proxy)
        except ConfigError as exc:
            _logger.error("apitally-otel disabled: %s", exc)
            self.settings = None
            return
        self._client_options: dict[str, Any] = {
            "transport": _transport,
            "proxy": resolved_proxy,
            "clock": _clock,
            "request_timeout": self.hub_timeout,
            # Retry at least once per sync interval, as the 0.x client did (and tests run fast).
            "max_backoff": min(max(self.settings.sync_interval, 1.0), MAX_BACKOFF_CAP),
        }
        self._client = HubClient(self.settings, **self._client_options)
        _register_at_fork(self)

    @property
    def proxy(self) -> str | None:
        """The proxy for hub requests given explicitly (``proxy=`` / ``APITALLY_PROXY``), if any."""
        options = getattr(self, "_client_options", None)
        return options["proxy"] if options else None

    @property
    def enabled(self) -> bool:
        return self._client is not None and not self._shutdown

    @property
    def client(self) -> HubClient | None:
        return self._client

    @property
    def instance_uuid(self) -> str:
        """This process's instance id (taken on first use); empty when disabled."""
        if self.settings is None:
            return ""
        with self._lock:
            return self._identity()

    def _identity(self) -> str:  # holding self._lock
        if self._instance is None:
            assert self.settings is not None
            self._instance = instance_uuid(self.settings.client_id, self.settings.env)
        return self._instance

    def set_app(self, app: Any, app_version: str | None = None, *, openapi: bool = True) -> None:
        """Describe the app to the hub: the startup message is (re)sent until the hub accepts it."""
        if self._client is None or self._shutdown:
            return
        paths, openapi_json, versions = app_info(app, app_version, openapi=openapi)
        with self._lock:
            self._startup_payload = {"paths": paths, "versions": versions, "openapi": openapi_json}
            self._app_started = self._active = True
            self._send_startup()

    def _send_startup(self) -> None:  # holding self._lock
        if self._client is None or self._startup_payload is None:
            return
        self._startup_sent = True
        self._client.set_startup(
            encode_startup(
                instance_uuid=self._identity(), message_uuid=str(uuid.uuid4()), **self._startup_payload
            )
        )

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        client = self._client
        if client is None:
            return MetricExportResult.SUCCESS
        if self._shutdown or client.stopped:
            return MetricExportResult.FAILURE
        try:
            payload = encode_sync(
                metrics_data,
                instance_uuid="",
                message_uuid=str(uuid.uuid4()),
                timestamp=self._clock(),
                resources=self._resources.sample(),
            )
            with self._lock:
                if any(payload[key] for key in _DATA_KEYS):
                    self._served = True
                    if not self._active:
                        self._active = True
                        if self._startup_payload is not None and not self._startup_sent:
                            self._send_startup()
                elif not self._active:
                    return MetricExportResult.SUCCESS  # quiet: nothing to report, no heartbeat
                payload["instance_uuid"] = self._identity()
            queued = client.enqueue_sync(payload)
            for key in _DATA_KEYS:
                release(payload[key])  # the encoded bytes are queued; free the items in slices
        except Exception:  # export() reports failure, it never raises
            _logger.exception("apitally-otel: failed to build the sync message")
            return MetricExportResult.FAILURE
        return MetricExportResult.SUCCESS if queued else MetricExportResult.FAILURE

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        """Deliver what is queued, waiting at most ``min(timeout, shutdown_timeout)``.

        This is the final delivery on lifespan shutdown: uvicorn re-raises SIGTERM after its
        graceful shutdown, so no interpreter-exit handler runs after it.
        """
        client = self._client
        if client is None:
            return True
        delivered = client.flush(min(max(timeout_millis / 1000, 0.0), self.shutdown_timeout))
        if not delivered and not client.stopped:
            _logger.warning(
                "apitally-otel: %d message(s) not delivered to the hub yet (kept for retry)", client.pending
            )
        return delivered

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        """Final delivery within ``min(timeout, shutdown_timeout)``; warns when called twice."""
        with self._lock:
            if self._shutdown:
                _logger.warning("apitally-otel: the exporter was already shut down")
                return
            self._shutdown = True
        # The SDK's PeriodicExportingMetricReader passes ``timeout=`` (milliseconds).
        timeout_ms = kwargs.get("timeout", timeout_millis)
        timeout = min(max(float(timeout_ms) / 1000, 0.0), self.shutdown_timeout)
        if self._client is not None:
            self._client.shutdown(timeout)
        with self._lock:
            if self._instance is not None:
                release_instance_uuid(self._instance)

    # -- fork ------------------------------------------------------------------------------
    def _after_fork_in_child(self) -> None:
        self._lock = threading.Lock()  # another thread of the parent may have held it
        if self._client is None or self.settings is None:
            return
        release_after_fork()
        self._instance = None
        self._client = HubClient(self.settings, **self._client_options)
        self._resources.reset()
        self._startup_sent = False
        self._active = self._app_started = self._served = False

    def _after_fork_in_parent(self) -> None:
        if not (self._app_started or self._served):
            self._active = False  # a pre-fork master: its workers report


def _register_at_fork(exporter: ApitallyMetricExporter) -> None:
    if not hasattr(os, "register_at_fork"):  # pragma: no cover - Windows
        return
    ref = weakref.ref(exporter)  # the handlers must not keep exporters alive

    def in_child() -> None:
        target = ref()
        if target is not None:
            target._after_fork_in_child()

    def in_parent() -> None:
        target = ref()
        if target is not None:
            target._after_fork_in_parent()

    os.register_at_fork(after_in_child=in_child, after_in_parent=in_parent)
