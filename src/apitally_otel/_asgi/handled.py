"""``capture_exception``: report an exception the app handled itself as a server error.

The exception is kept on the current request's :class:`~apitally_otel._asgi.context.RequestRecord`
(shared by endpoints in the threadpool and ``BaseHTTPMiddleware`` tasks, like ``set_consumer``);
when the request is counted, the span processor turns it into a server error with the request's
route and consumer (hub-protocol §4.3), whatever the status code, and the request-log item carries
it when the request is logged.
"""

from __future__ import annotations

import logging

from opentelemetry import trace

from apitally_otel import _sentry
from apitally_otel._asgi.context import HandledError, RequestRecord, current_request

_logger = logging.getLogger(__name__)

MAX_PER_REQUEST = 100
_said: set[str] = set()


def capture_exception(exc: BaseException) -> None:
    """Record ``exc``, an exception the app handled, as a server error of the current request.

    The error gets the request's route and consumer and is counted even though the response is
    not a 500; the current span gets the standard ``exception`` event; the request's log item
    (when request logging is on and the request is logged) carries it, with the Sentry event id
    when Sentry captured the exception. Outside a monitored request this does nothing (one debug
    line says so). At most 100 exceptions per request are kept. Never raises.
    """
    try:
        record = current_request.get()
        if record is None:
            _say_once("outside", "apitally-otel: capture_exception() outside of a monitored request; ignored")
            return
        if not isinstance(exc, BaseException):
            _say_once("type", "apitally-otel: capture_exception() needs an exception; ignored")
            return
        _add(record, exc)
    except Exception:  # user-facing API called from request handlers: never raise into the app
        _logger.exception("apitally-otel: capture_exception() failed")


def _add(record: RequestRecord, exc: BaseException) -> None:
    handled = record.handled
    if handled is None:
        handled = record.handled = []
    elif any(error.exception is exc for error in handled):
        return  # reported twice: one error
    if len(handled) >= MAX_PER_REQUEST:
        _say_once("many", "apitally-otel: over 100 exceptions captured in one request; ignoring the rest")
        return
    span = trace.get_current_span()
    if span.is_recording():
        span.record_exception(exc)
    handled.append(HandledError(exc, _sentry.link(exc)))


def _say_once(key: str, message: str) -> None:
    if key not in _said:
        _said.add(key)
        _logger.debug(message)
