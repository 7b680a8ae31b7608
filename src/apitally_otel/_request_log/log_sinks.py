"""Where captured log records come from: a handler on the standard library's root logger and, when
the app uses Loguru, a Loguru sink.

One of each per process, shared by every request logger that captures logs (``capture_logs=True``):
added by the first (:func:`acquire`), removed with the last (:func:`release`). Both hand a record
to the current request's log capture — found through the request's context, so endpoints in the
threadpool and background tasks count — and do nothing else.

Loguru is never imported here. Its sink is added once the app has started (:func:`attach_loguru`,
at lifespan startup completion or the first request), if ``loguru`` is in ``sys.modules`` by
then, so that it sees the app's own Loguru configuration: its level is the lowest level of the
app's sinks (DEBUG, Loguru's default, when that cannot be read), so adding it never makes Loguru
build records the app's sinks would filter out; and its filter returns False at once outside a
logged request, before Loguru formats anything.
"""

from __future__ import annotations

import contextlib
import logging
import math
import sys
import threading
from typing import Any

from apitally_otel._asgi.context import current_request

_logger = logging.getLogger(__name__)

_LOGURU_DEBUG = 10
_lock = threading.Lock()
_users = 0
_handler: logging.Handler | None = None
_loguru_sink_id: int | None = None


class _RootHandler(logging.Handler):
    """Adds log records emitted while a logged request is handled to that request's log item."""

    def emit(self, record: logging.LogRecord) -> None:
        request = current_request.get()
        if request is not None and request.log is not None:
            request.log.add_log_record(record)


def acquire() -> None:
    """A request logger that captures logs starts."""
    global _users, _handler
    with _lock:
        _users += 1
        if _handler is None:
            _handler = _RootHandler()
            logging.getLogger().addHandler(_handler)


def release() -> None:
    """A request logger that captures logs stops; the last one removes the handler and the sink."""
    global _users, _handler, _loguru_sink_id
    with _lock:
        _users = max(_users - 1, 0)
        if _users:
            return
        handler, _handler = _handler, None
        sink_id, _loguru_sink_id = _loguru_sink_id, None
    if handler is not None:
        logging.getLogger().removeHandler(handler)
    loguru = sys.modules.get("loguru")
    if sink_id is not None and loguru is not None:
        # ValueError: the app removed every Loguru handler (``logger.remove()``), ours included.
        with contextlib.suppress(ValueError):
            loguru.logger.remove(sink_id)


def attach_loguru() -> None:
    """Add the Loguru sink, once, if logs are captured and the app imported Loguru."""
    global _loguru_sink_id
    loguru = sys.modules.get("loguru")
    if loguru is None or _loguru_sink_id is not None or not _users:
        return
    with _lock:
        if _loguru_sink_id is not None or not _users:
            return
        try:
            logger = loguru.logger
            _loguru_sink_id = logger.add(
                _loguru_sink,
                level=_app_level(logger),
                format="{message}",
                filter=_in_logged_request,
                colorize=False,
                enqueue=False,
                catch=True,
            )
        except Exception:  # an unexpected Loguru: its records are not captured, nothing else changes
            _logger.exception("apitally-otel: could not add a Loguru sink; Loguru records are not captured")
            return
    _logger.debug("apitally-otel: capturing Loguru records of logged requests")


def loguru_attached() -> bool:
    return _loguru_sink_id is not None


def _app_level(logger: Any) -> int:
    # Loguru keeps the lowest level of its handlers here (0.5 to 0.7); inf when it has none.
    level = getattr(getattr(logger, "_core", None), "min_level", None)
    if isinstance(level, (int, float)) and not isinstance(level, bool) and math.isfinite(level):
        return int(level)
    return _LOGURU_DEBUG


def _in_logged_request(record: Any) -> bool:
    request = current_request.get()
    return request is not None and request.log is not None and request.log.item.logs is not None


def _loguru_sink(message: Any) -> None:
    request = current_request.get()
    if request is None or request.log is None:
        return
    try:
        request.log.add_loguru_record(message.record)
    except Exception:  # an odd record must not reach Loguru's error output for every log call
        _logger.debug("apitally-otel: could not capture a Loguru record", exc_info=True)
