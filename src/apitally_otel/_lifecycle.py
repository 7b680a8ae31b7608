"""The app's lifecycle as the hub sees it: the startup message, and the final delivery at shutdown.

One implementation for both ways in: ``instrument_app`` and the zero-code hook (``auto``) each
build a :class:`Lifecycle` and hand it to the capture middleware, which calls it from a worker
thread at lifespan startup (or at the first request without lifespan) and at lifespan shutdown.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any

from apitally_otel._config import HubSettings
from apitally_otel._request_log.logger import RequestLogger
from apitally_otel.metric_exporter import ApitallyMetricExporter
from apitally_otel.metric_reader import ApitallyMetricReader
from apitally_otel.request_logging import RequestLoggingConfig

_logger = logging.getLogger(__name__)


class Lifecycle:
    def __init__(
        self,
        reader: ApitallyMetricReader,
        exporter: ApitallyMetricExporter,
        request_logger: RequestLogger | None = None,
        *,
        app_version: str | None = None,
        send_openapi: bool = True,
    ) -> None:
        self.reader = reader
        self.exporter = exporter
        self.request_logger = request_logger
        self.app_version = app_version
        self.send_openapi = send_openapi

    def on_app_startup(self, app: Any) -> None:
        self.exporter.set_app(app, self.app_version, openapi=self.send_openapi)

    def on_app_shutdown(self) -> None:
        # One final collection and delivery attempt, bounded by one deadline for everything; the
        # periodic reader keeps running (an interpreter-exit shutdown reports what comes after).
        final_flush(self.reader, self.exporter, self.request_logger)


def final_flush(
    reader: ApitallyMetricReader, exporter: ApitallyMetricExporter, request_logger: RequestLogger | None
) -> None:
    """The lifespan-shutdown delivery: metrics, then request logs, within ``shutdown_timeout`` in all."""
    deadline = time.monotonic() + exporter.shutdown_timeout
    reader.force_flush(timeout_millis=exporter.shutdown_timeout * 1000)
    if request_logger is not None:
        request_logger.flush(max(deadline - time.monotonic(), 0.0))


def build_request_logger(
    config: RequestLoggingConfig | None, settings: HubSettings, exporter: ApitallyMetricExporter
) -> RequestLogger | None:
    """A RequestLogger when request logging is enabled (argument, else env vars); None otherwise.
    It reaches the hub the way ``exporter`` does (proxy, deadline per request)."""
    config = config if config is not None else RequestLoggingConfig.from_env()
    if not config.enabled:
        return None
    try:
        return RequestLogger(
            config,
            settings,
            upload_interval=settings.sync_interval,
            proxy=exporter.proxy,
            request_timeout=exporter.hub_timeout,
        )
    except re.error as exc:
        _logger.error("apitally-otel: request logging disabled: invalid pattern (%s)", exc)
        return None
