"""Per-request state shared by the capture middleware, user code and the span processor.

The capture middleware puts a :class:`RequestRecord` in a context variable. Code running for that
request — endpoints in the threadpool, ``BaseHTTPMiddleware`` child tasks — sees the same object
(contexts are copied, the object is shared), so :func:`set_consumer` works from anywhere, and the
span processor finds the record when the request's SERVER span ends in the same context. The
same goes for :func:`~apitally_otel.capture_exception` (:mod:`apitally_otel._asgi.handled`), whose
:class:`HandledError` entries the record holds, and for
:func:`~apitally_otel.set_request_attribute` (:mod:`apitally_otel._asgi.custom_attributes`).
"""

from __future__ import annotations

import logging
from contextvars import ContextVar
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from starlette.types import Message, Send

from apitally_otel import _sentry
from apitally_otel._consumers import ATTR_GROUP, ATTR_IDENTIFIER, ATTR_NAME, Consumer, make_consumer
from apitally_otel._request_log.log_capture import LogCapture

_logger = logging.getLogger(__name__)


class HandledError:
    """One exception reported with :func:`~apitally_otel.capture_exception`; its link to a Sentry event."""

    __slots__ = ("exception", "sentry")

    def __init__(self, exception: BaseException, sentry: _sentry.SentryLink | None) -> None:
        self.exception = exception
        self.sentry = sentry


class RequestRecord:
    """What the capture middleware measured for one HTTP request."""

    __slots__ = (
        "attributes",
        "consumer",
        "exception",
        "fallback_consumer",
        "handled",
        "log",
        "method",
        "request_size",
        "response_size",
        "route",
        "span_id",
        "status",
        "trace_id",
        "ttfb",
        "validation_body",
        "validation_encoding",
    )

    def __init__(self, method: str, trace_id: int, span_id: int) -> None:
        self.method = method
        self.trace_id = trace_id
        self.span_id = span_id
        self.route: str | None = None
        self.status: int | None = None
        self.ttfb: float | None = None
        self.request_size: int | None = None
        self.response_size: int | None = None
        self.exception: BaseException | None = None
        self.validation_body: bytes | None = None  # as sent: decoded and parsed off the event loop
        self.validation_encoding: str | None = None  # its Content-Encoding
        self.consumer: Consumer | None = None  # from set_consumer(): wins over every other source
        self.fallback_consumer: Consumer | None = None  # callback / request.state: after span attributes
        self.log: LogCapture | None = None  # when this request is request-logged
        self.handled: list[HandledError] | None = None  # from capture_exception()
        self.attributes: dict[str, str] | None = None  # from set_request_attribute()


current_request: ContextVar[RequestRecord | None] = ContextVar("apitally_otel_request", default=None)


async def send_last(send: Send, message: Message, outer: otel_context.Context | None = None) -> None:
    """Send a response's last message from outside the request: no current request, and ``outer``
    (the OpenTelemetry context the request came in with, if given) attached instead of its span's.

    At that message the server schedules the connection's keep-alive timeout, and the event loop
    copies the current context into the timer (asyncio and uvloop): the copy would keep the request's
    span and record (with its exception, traceback and logged bodies) alive until the timer is due,
    seconds later, and asyncio keeps it after the next request cancels the timer. Under load the
    collector then promotes every request's objects and runs full collections over them. What runs
    after the message (background tasks) is back in the request's context.
    """
    request_token = current_request.set(None)
    token = otel_context.attach(outer) if outer is not None else None
    try:
        await send(message)
    finally:
        if token is not None:
            otel_context.detach(token)
        current_request.reset(request_token)


def set_consumer(identifier: Any, name: Any = None, group: Any = None) -> None:
    """Identify the consumer of the current request, from anywhere in its handling.

    Strings are stripped and cut to 128 (identifier) and 64 (name, group) characters; an empty
    identifier clears nothing and is ignored. Never raises.
    """
    try:
        consumer = make_consumer(identifier, name, group)
        if consumer is None:
            return
        record = current_request.get()
        if record is not None:
            record.consumer = consumer
        span = trace.get_current_span()
        if span.is_recording():
            attributes: dict[str, str] = {ATTR_IDENTIFIER: consumer.identifier}
            if consumer.name:
                attributes[ATTR_NAME] = consumer.name
            if consumer.group:
                attributes[ATTR_GROUP] = consumer.group
            span.set_attributes(attributes)
        elif record is None:
            _logger.debug("set_consumer() called outside of a monitored request; ignored")
    except Exception:  # user-facing API called from request handlers: never raise into the app
        _logger.exception("set_consumer() failed")
