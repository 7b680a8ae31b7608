"""Reading and writing the attributes of the request's SDK span cheaply, on every request.

The SDK's public paths are made for any caller on any thread: a read-only view per read, two
locks, value cleaning and limit checks per write. For the handful of attributes we read and write
on each request, the span's own dict is used where that gives the same result, and the public API
everywhere else.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from opentelemetry import trace
from opentelemetry.attributes import BoundedAttributes


def span_attributes(span: trace.Span) -> Mapping[str, Any]:
    """The span's attributes for reading. For SDK spans, the plain dict inside their
    ``BoundedAttributes``: each lookup through the public read-only view costs ~1 µs, on every request."""
    bounded = getattr(span, "_attributes", None)
    plain = getattr(bounded, "_dict", None)
    if isinstance(plain, dict):
        return plain
    return getattr(span, "attributes", None) or {}


def put_attribute(span: trace.Span, key: str, value: str | int) -> None:
    """``span.set_attribute(key, value)``, for the few str/int attributes set on every request.

    On an open SDK span whose attributes have room and no value-length limit (for a str), the value
    goes straight into the span's attribute dict, where the SDK would put it (moved to the end if
    the key was there): the SDK's path (two locks, value cleaning, limit checks) costs ~1.5 µs a
    call, three or four calls on every request. Anything else takes the SDK's path, limits,
    dropped counts and the warning on an ended span included.
    """
    bounded = getattr(span, "_attributes", None)
    if type(bounded) is BoundedAttributes and getattr(span, "_end_time", 0) is None:
        plain = bounded._dict
        maxlen = bounded.maxlen
        if (
            not bounded._immutable
            and type(plain) is dict
            and (maxlen is None or len(plain) < maxlen)
            and (type(value) is int or (type(value) is str and bounded.max_value_len is None))
        ):
            if key in plain:
                del plain[key]
            plain[key] = value
            return
    span.set_attribute(key, value)
