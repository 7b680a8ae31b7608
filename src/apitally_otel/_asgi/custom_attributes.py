"""``set_request_attribute``: a custom attribute of the current request, set by the app.

The attribute is kept on the current request's :class:`~apitally_otel._asgi.context.RequestRecord`
(shared by endpoints in the threadpool and ``BaseHTTPMiddleware`` tasks, like ``set_consumer``).
The capture puts the attributes on the request's SERVER span as
``apitally.request.attribute.<key>`` just before the span ends, and the request-log item carries
them as ``request.attributes`` (hub-protocol §5) when the request is logged.

Bounds (the hub refuses a log line beyond them): at most :data:`MAX_ATTRIBUTES` per request,
keys of at most :data:`MAX_KEY_LENGTH` characters of ``[A-Za-z0-9_.-]``, values converted to text
and cut to :data:`MAX_VALUE_LENGTH` characters.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping

from opentelemetry import trace

from apitally_otel._asgi.context import current_request
from apitally_otel._request_log.log_capture import MAX_ATTRIBUTE_KEY as MAX_KEY_LENGTH
from apitally_otel._request_log.log_capture import MAX_ATTRIBUTE_VALUE as MAX_VALUE_LENGTH
from apitally_otel._request_log.log_capture import MAX_ATTRIBUTES

_logger = logging.getLogger(__name__)

SPAN_ATTRIBUTE_PREFIX = "apitally.request.attribute."
KEY_PATTERN = re.compile(rf"[A-Za-z0-9_.\-]{{1,{MAX_KEY_LENGTH}}}")
_WARN_EVERY = 60.0
_said_outside = False
_warned_at: dict[str, float] = {}


def set_request_attribute(key: str, value: str | int | float | bool) -> None:
    """Attach a custom attribute to the current request, from anywhere in its handling.

    The request's SERVER span gets it as ``apitally.request.attribute.<key>``, and its
    request-log item (when request logging is on and the request is logged) as
    ``request.attributes``, which the hub shows on the request's page and filters by
    (``attribute=key:value``).

    ``key``: 1 to 64 characters of ``A-Z a-z 0-9 _ . -``. ``value``: a string, int, float or bool,
    converted to text (``str(value)``) and cut to 256 characters. At most 20 attributes per
    request: setting a key again replaces its value, further keys are dropped. A bad key or value
    is dropped with a warning (at most one a minute per kind). Outside a monitored request this
    does nothing (one debug line says so). Never raises.
    """
    try:
        record = current_request.get()
        if record is None:
            _say_outside()
            return
        if not isinstance(key, str) or KEY_PATTERN.fullmatch(key) is None:
            _warn(
                "key",
                "apitally-otel: set_request_attribute() key %r dropped: 1 to %d characters of"
                " A-Z a-z 0-9 _ . - are allowed",
                _preview(key),
                MAX_KEY_LENGTH,
            )
            return
        text = value_text(value)
        if text is None:
            _warn(
                "value",
                "apitally-otel: set_request_attribute() value of %r dropped: a %s (str, int, float"
                " or bool are allowed)",
                key,
                type(value).__name__,
            )
            return
        attributes = record.attributes
        if attributes is None:
            attributes = record.attributes = {}
        elif key not in attributes and len(attributes) >= MAX_ATTRIBUTES:
            _warn(
                "many",
                "apitally-otel: set_request_attribute() key %r dropped: at most %d attributes per request",
                key,
                MAX_ATTRIBUTES,
            )
            return
        attributes[key] = text
    except Exception:  # user-facing API called from request handlers: never raise into the app
        _logger.exception("apitally-otel: set_request_attribute() failed")


def value_text(value: object) -> str | None:
    """The attribute value as text, cut to :data:`MAX_VALUE_LENGTH`; None for another type."""
    if isinstance(value, str):
        text = str.__str__(value)  # a str subclass (an enum member): its text, not its repr
    elif isinstance(value, (int, float)):  # bool included
        try:
            text = str(value)
        except Exception:  # a subclass's own __str__ failed: a value we cannot use
            return None
        if not isinstance(text, str):
            return None
    else:
        return None
    return text[:MAX_VALUE_LENGTH]


def put_on_span(span: trace.Span, attributes: Mapping[str, str]) -> None:
    """The request's attributes onto its (open, recording) SERVER span."""
    span.set_attributes({SPAN_ATTRIBUTE_PREFIX + key: value for key, value in attributes.items()})


def _preview(key: object) -> object:
    return key[:80] if isinstance(key, str) else type(key).__name__


def _say_outside() -> None:
    global _said_outside
    if not _said_outside:
        _said_outside = True
        _logger.debug("apitally-otel: set_request_attribute() outside of a monitored request; ignored")


def _warn(kind: str, message: str, *args: object) -> None:
    now = time.monotonic()
    last = _warned_at.get(kind)
    if last is None or now - last >= _WARN_EVERY:
        _warned_at[kind] = now
        _logger.warning(message, *args)
