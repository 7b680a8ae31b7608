"""Links to Sentry: the id of the event Sentry captured for an exception we report.

Only when the app uses sentry-sdk (2.x), already imported by the app (this module looks in
``sys.modules`` and never imports it) and initialised (``sentry_sdk.get_client().is_active()``);
otherwise nothing here calls into it. Then one global event processor is added to Sentry, once per
process: for each event Sentry captures for an exception, it stores the event id on that exception
object, in a :class:`SentryLink`. Our server errors and request-log items hold the link of their
exception, so both orders work: the app may report to Sentry before or after we see the exception.

An exception that escapes the endpoint is captured by Sentry's ASGI middleware, which runs outside
ours: after our middleware has finished with the request. So the threads that read links (the
metric reader's, the request logger's) wait for a link that is still empty, at most until
:data:`GRACE` seconds after it was made; an exception Sentry never captures (``ignore_errors``, a
handled exception the app does not report) costs that wait once and goes without an id. The
processor runs before the app's ``before_send`` and error sampling, so an event they then drop
still lends its id.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import time
from typing import Any

_logger = logging.getLogger(__name__)

GRACE = 1.0
_ATTRIBUTE = "__apitally_otel_sentry__"
_lock = threading.Lock()
_installed = False


class SentryLink:
    """The Sentry event id of one exception, set when Sentry captures it (from any thread)."""

    __slots__ = ("_resolved", "deadline", "event_id")

    def __init__(self) -> None:
        self.event_id: str | None = None
        self.deadline = time.monotonic() + GRACE
        self._resolved = threading.Event()

    def resolve(self, event_id: str) -> None:
        if self.event_id is None:  # the first event captured for the exception is the one linked
            self.event_id = event_id
            self._resolved.set()

    def wait(self) -> str | None:
        """The event id, waiting for it until the link's deadline; None if Sentry did not capture it."""
        if self.event_id is None:
            remaining = self.deadline - time.monotonic()
            if remaining > 0:
                self._resolved.wait(remaining)
        return self.event_id


def active() -> bool:
    """Whether the app imported and initialised sentry-sdk."""
    sdk = sys.modules.get("sentry_sdk")
    if sdk is None:
        return False
    try:
        return bool(sdk.get_client().is_active())
    except Exception:  # sentry-sdk 1.x or a broken install: no links, nothing else changes
        _logger.debug("apitally-otel: cannot tell whether Sentry is initialised", exc_info=True)
        return False


def install() -> bool:
    """Add our event processor to Sentry if it is imported and initialised; whether it is there."""
    global _installed
    if _installed:
        return True
    if not active():
        return False
    with _lock:
        if not _installed:
            scope = sys.modules.get("sentry_sdk.scope")
            add = getattr(scope, "add_global_event_processor", None)
            if add is None:
                _logger.debug("apitally-otel: this sentry-sdk has no global event processors; no links")
                return False
            add(_processor)
            _installed = True
            _logger.debug("apitally-otel: linking server errors to Sentry events")
    return True


def link(exc: BaseException) -> SentryLink | None:
    """The link of ``exc`` to its Sentry event (made now if need be); None without Sentry."""
    try:
        return _link_of(exc) if install() else None
    except Exception:  # never let Sentry bookkeeping fail the request
        _logger.debug("apitally-otel: could not link an exception to Sentry", exc_info=True)
        return None


def _link_of(exc: BaseException) -> SentryLink:
    with _lock:
        try:
            found = vars(exc).get(_ATTRIBUTE)  # not getattr: a user __getattr__ must not run here
        except TypeError:
            found = None
        if isinstance(found, SentryLink):
            return found
        made = SentryLink()
        # An exception type that refuses attributes: this link is only ours.
        with contextlib.suppress(AttributeError, TypeError):
            setattr(exc, _ATTRIBUTE, made)
        return made


def _processor(event: Any, hint: Any) -> Any:
    """Sentry's global event processor: remember the event id on the exception it reports."""
    try:
        exc_info = hint.get("exc_info") if isinstance(hint, dict) else None
        event_id = event.get("event_id") if isinstance(event, dict) else None
        if exc_info and isinstance(exc_info[1], BaseException) and isinstance(event_id, str):
            _link_of(exc_info[1]).resolve(event_id)
    except Exception:  # must never break the app's own Sentry reporting
        _logger.debug("apitally-otel: Sentry event processor failed", exc_info=True)
    return event
