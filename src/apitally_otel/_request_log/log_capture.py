"""Per-request capture of what request logging asked for (hub-protocol §5).

The capture middleware owns one :class:`LogCapture` per logged request. It only collects raw
facts on the request path (header lists, body chunks up to the limit, timings, log records — from
the standard library and from Loguru — and spans of the request); masking, exclusion callbacks,
base64 and JSON happen later on the request logger's thread.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from apitally_otel import _sentry
from apitally_otel.request_logging import RequestLoggingConfig

MAX_BODY_BYTES = 50_000
MAX_LOG_RECORDS = 1000
MAX_LOG_MESSAGE = 2048
MAX_SPANS = 1000
MAX_ATTRIBUTES = 20
"""Custom attributes per request (``set_request_attribute``); keys and values bounded as below."""
MAX_ATTRIBUTE_KEY = 64
MAX_ATTRIBUTE_VALUE = 256
# A record passed from one logging system to the other (Loguru's InterceptHandler recipe, or a
# Loguru sink that propagates to the standard library) reaches us twice, within microseconds.
_BRIDGE_WINDOW = 0.05
BODY_CONTENT_TYPES = (
    b"application/json",
    b"application/problem+json",
    b"application/vnd.api+json",
    b"text/plain",
)


@dataclass
class RawLogItem:
    """One request as captured, before masking: handed to the request logger's thread."""

    timestamp: float
    method: str
    path: str | None
    scope: dict[str, Any]  # a shallow copy: headers, query string, client, state (for callbacks)
    consumer: str | None = None
    request_size: int | None = None
    request_body: bytes | None = None
    request_body_too_large: bool = False
    status_code: int | None = None
    response_time: float | None = None
    response_headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    response_size: int | None = None
    response_body: bytes | None = None
    response_body_too_large: bool = False
    exception: BaseException | None = None
    sentry: _sentry.SentryLink | None = None  # the exception's Sentry event, when there is one
    logs: list[dict[str, Any]] | None = None
    spans: list[dict[str, Any]] | None = None
    trace_id: int = 0
    attributes: dict[str, str] | None = None  # set_request_attribute(): bounded when they were set

    def approximate_size(self) -> int:
        return (
            1000
            + len(self.request_body or b"")
            + len(self.response_body or b"")
            + 300 * len(self.spans or ())
            + 320 * len(self.attributes or ())
        )


def _allowed(content_type: bytes | None) -> bool:
    return content_type is not None and content_type.lower().startswith(BODY_CONTENT_TYPES)


class _Body:
    """Body chunks up to ``MAX_BODY_BYTES``; past that only the fact that it was too large."""

    __slots__ = ("parts", "size", "too_large")

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.size = 0
        self.too_large = False

    def add(self, chunk: bytes) -> None:
        if self.too_large or not chunk:
            return
        self.size += len(chunk)
        if self.size > MAX_BODY_BYTES:
            self.too_large = True
            self.parts = []
        else:
            self.parts.append(chunk)

    def value(self) -> bytes | None:
        return None if self.too_large else b"".join(self.parts)


class LogCapture:
    __slots__ = ("_last_record", "_request_body", "_response_body", "config", "item", "sampled")

    def __init__(
        self, config: RequestLoggingConfig, scope: MutableMapping[str, Any], sampled: bool = True
    ) -> None:
        self.config = config
        # False: captured only because sample_on_response may still keep it.
        self.sampled = sampled
        self.item = RawLogItem(time.time(), scope["method"], None, dict(scope))
        self._last_record: tuple[str, str, str, float] | None = None
        self._request_body: _Body | None = None
        self._response_body: _Body | None = None
        if config.log_request_body:
            content_type = next((v for k, v in scope.get("headers", ()) if k == b"content-type"), None)
            if _allowed(content_type):
                self._request_body = _Body()
        if config.capture_logs:
            self.item.logs = []
        if config.capture_traces:
            self.item.spans = []

    @property
    def wants_request_body(self) -> bool:
        return self._request_body is not None

    def on_request_body(self, chunk: bytes) -> None:
        if self._request_body is not None:
            self._request_body.add(chunk)

    def on_response_start(self, message: MutableMapping[str, Any]) -> None:
        headers = list(message.get("headers", ()))
        self.item.response_headers = headers
        if self.config.log_response_body:
            content_type = next((v for k, v in headers if k.lower() == b"content-type"), None)
            if _allowed(content_type):
                self._response_body = _Body()

    def on_response_body(self, chunk: bytes) -> None:
        if self._response_body is not None:
            self._response_body.add(chunk)

    def add_log_record(self, record: logging.LogRecord) -> None:
        """A record of the standard library's ``logging``."""
        logs = self.item.logs
        if logs is None or len(logs) >= MAX_LOG_RECORDS:
            return
        try:
            message = record.getMessage()
        except Exception:  # a bad %-format in the app's log call: keep the raw template
            message = str(record.msg)
        self._add(
            "logging", record.created, record.name, record.levelname, message, record.pathname, record.lineno
        )

    def add_loguru_record(self, record: Mapping[str, Any]) -> None:
        """A Loguru record (``message.record`` in a Loguru sink)."""
        logs = self.item.logs
        if logs is None or len(logs) >= MAX_LOG_RECORDS:
            return
        file = record["file"]
        self._add(
            "loguru",
            record["time"].timestamp(),
            record["name"] or "",
            record["level"].name,
            str(record["message"]),
            getattr(file, "path", None),
            record["line"],
        )

    def _add(
        self,
        source: str,
        timestamp: float,
        logger: str,
        level: str,
        message: str,
        file: str | None,
        line: int,
    ) -> None:
        message = message[:MAX_LOG_MESSAGE]
        last, self._last_record = self._last_record, (source, level, message, timestamp)
        if (
            last is not None
            and last[0] != source
            and last[1] == level
            and last[2] == message
            and abs(last[3] - timestamp) < _BRIDGE_WINDOW
        ):
            self._last_record = None  # the same record, bridged from the other system
            return
        logs = self.item.logs
        assert logs is not None
        logs.append(
            {
                "timestamp": timestamp,
                "logger": logger,
                "level": level,
                "message": message,
                "file": file,
                "line": line,
            }
        )

    def add_span(self, span: dict[str, Any]) -> None:
        spans = self.item.spans
        if spans is not None and len(spans) < MAX_SPANS:
            spans.append(span)

    def finish(self, record: Any, duration: float) -> RawLogItem:
        item = self.item
        item.path = record.route
        item.status_code = record.status
        item.response_time = duration
        item.request_size = record.request_size
        item.response_size = record.response_size
        if self.config.log_exception:
            # The exception that escaped, else the first one the app reported (capture_exception).
            if record.exception is not None:
                item.exception = record.exception
                item.sentry = _sentry.link(record.exception)  # Sentry's middleware captures it next
            elif record.handled:
                item.exception, item.sentry = record.handled[0].exception, record.handled[0].sentry
        item.trace_id = record.trace_id
        if record.attributes:
            item.attributes = dict(list(record.attributes.items())[:MAX_ATTRIBUTES])
        if self._request_body is not None:
            item.request_body = self._request_body.value()
            item.request_body_too_large = self._request_body.too_large
        if self._response_body is not None:
            item.response_body = self._response_body.value()
            item.response_body_too_large = self._response_body.too_large
        return item
