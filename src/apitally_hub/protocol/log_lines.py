"""Strict validator for request-log lines (hub-protocol.md §5).

Optional keys may be absent or ``null`` (the client omits null or empty values). Errors are
located as ``("lines", <0-based line index>, ...)``.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
from collections.abc import Sequence
from typing import Any

from apitally_hub.protocol.checker import (
    MAX_BYTE_SUM,
    Checker,
    FieldError,
    Loc,
    TimeWindow,
    TooManyErrors,
    present,
)
from apitally_hub.protocol.messages import MAX_EXCEPTION_MSG, MAX_IDENTIFIER, MAX_TRACEBACK

MAX_LOG_RECORDS = 1000
MAX_SPANS = 1000
"""Spans per line: the client keeps the first 1 000 spans of a request's trace."""
_MAX_NANOS = 2**63 - 1

_SPAN_ID_RE = re.compile(r"[0-9a-f]{16}")
_TRACE_ID_RE = re.compile(r"[0-9a-f]{32}")
_URL_RE = re.compile(r"https?://\S+", re.IGNORECASE)
_SPAN_KINDS = frozenset({"INTERNAL", "SERVER", "CLIENT", "PRODUCER", "CONSUMER"})
_SPAN_STATUSES = frozenset({"UNSET", "OK", "ERROR"})

_LINE_OPTIONAL = ("exception", "logs", "spans", "trace_id")
_REQUEST_OPTIONAL = ("path", "headers", "size", "consumer", "body", "client_ip", "attributes")
MAX_CLIENT_IP = 64
"""Longest ``request.client_ip`` text: an IPv6 address with a zone fits."""
MAX_ATTRIBUTES = 20
"""Custom attributes per line (``request.attributes``, the client's ``set_request_attribute``)."""
MAX_ATTRIBUTE_KEY = 64
MAX_ATTRIBUTE_VALUE = 256
ATTRIBUTE_KEY_RE = re.compile(rf"[A-Za-z0-9_.\-]{{1,{MAX_ATTRIBUTE_KEY}}}")
"""An attribute's key: 1 to 64 ASCII letters, digits, ``_``, ``.`` or ``-``."""
ATTRIBUTE_KEY_MSG = f"Attribute key should be 1 to {MAX_ATTRIBUTE_KEY} characters of A-Z a-z 0-9 _ . -"
_RESPONSE_OPTIONAL = ("headers", "size", "body")


def validate_log_lines(
    lines: Sequence[tuple[int, Any]], *, allow_extra: bool = False, window: TimeWindow | None = None
) -> list[FieldError]:
    """Validate decoded NDJSON lines given as ``(line_index, value)``; line uuids must be unique.

    ``window``: the request timestamps the hub accepts now (None: any plausible epoch time).
    """
    checker = Checker(allow_extra=allow_extra)
    seen: set[str] = set()
    with contextlib.suppress(TooManyErrors):
        for index, value in lines:
            loc: Loc = ("lines", index)
            _check_line(checker, value, loc, window)
            uuid = value.get("uuid") if isinstance(value, dict) else None
            if isinstance(uuid, str):
                if uuid in seen:
                    checker.add((*loc, "uuid"), "Duplicate request uuid in this file", "duplicate_item")
                seen.add(uuid)
    return checker.errors


def _check_line(c: Checker, value: Any, loc: Loc, window: TimeWindow | None) -> None:
    line = c.obj(value, loc, ("uuid", "request", "response"), _LINE_OPTIONAL)
    if line is None:
        return
    if present(line, "uuid"):
        c.uuid(line["uuid"], (*loc, "uuid"))
    if present(line, "request"):
        _check_request(c, line["request"], (*loc, "request"), window)
    if present(line, "response"):
        _check_response(c, line["response"], (*loc, "response"))
    if present(line, "exception", nullable=True):
        _check_exception(c, line["exception"], (*loc, "exception"))
    if present(line, "logs", nullable=True):
        records = c.array(line["logs"], (*loc, "logs"), max_items=MAX_LOG_RECORDS)
        for i, record in enumerate(records or ()):
            _check_log_record(c, record, (*loc, "logs", i))
    if present(line, "spans", nullable=True):
        spans = c.array(line["spans"], (*loc, "spans"), max_items=MAX_SPANS)
        for i, span in enumerate(spans or ()):
            _check_span(c, span, (*loc, "spans", i))
    if present(line, "trace_id", nullable=True):
        c.string(
            line["trace_id"], (*loc, "trace_id"), pattern=_TRACE_ID_RE, pattern_msg="Should be 32 hex digits"
        )


def _check_headers(c: Checker, value: Any, loc: Loc) -> None:
    headers = c.array(value, loc)
    for i, pair in enumerate(headers or ()):
        if not isinstance(pair, list) or len(pair) != 2:
            c.add((*loc, i), "Header should be a [name, value] pair", "header_pair")
            continue
        c.string(pair[0], (*loc, i, 0), min_len=1)
        c.string(pair[1], (*loc, i, 1))


def _check_request(c: Checker, value: Any, loc: Loc, window: TimeWindow | None) -> None:
    request = c.obj(value, loc, ("timestamp", "method", "url"), _REQUEST_OPTIONAL)
    if request is None:
        return
    if present(request, "timestamp"):
        c.recent_timestamp(request["timestamp"], (*loc, "timestamp"), window)
    if present(request, "method"):
        c.method(request["method"], (*loc, "method"))
    if present(request, "path", nullable=True):
        c.route_path(request["path"], (*loc, "path"))
    if present(request, "url"):
        c.string(request["url"], (*loc, "url"), pattern=_URL_RE, pattern_msg="Input should be an http(s) URL")
    if present(request, "headers", nullable=True):
        _check_headers(c, request["headers"], (*loc, "headers"))
    if present(request, "size", nullable=True):
        c.integer(request["size"], (*loc, "size"), ge=0, le=MAX_BYTE_SUM)
    if present(request, "consumer", nullable=True):
        c.string(request["consumer"], (*loc, "consumer"), min_len=1, max_len=MAX_IDENTIFIER, stripped=True)
    if present(request, "body", nullable=True):
        c.base64(request["body"], (*loc, "body"))
    if present(request, "client_ip", nullable=True):
        _check_ip(c, request["client_ip"], (*loc, "client_ip"))
    if present(request, "attributes", nullable=True):
        _check_attributes(c, request["attributes"], (*loc, "attributes"))


def _check_attributes(c: Checker, value: Any, loc: Loc) -> None:
    """``{key: text}``: at most :data:`MAX_ATTRIBUTES`, keys matching :data:`ATTRIBUTE_KEY_RE`,
    string values of at most :data:`MAX_ATTRIBUTE_VALUE` characters."""
    if not isinstance(value, dict):
        c.add(loc, "Input should be an object", "object_type")
        return
    if len(value) > MAX_ATTRIBUTES:
        c.add(loc, f"Object should have at most {MAX_ATTRIBUTES} attributes", "too_long")
        return
    for key, text in value.items():
        if ATTRIBUTE_KEY_RE.fullmatch(key) is None:
            c.add((*loc, key[:100]), ATTRIBUTE_KEY_MSG, "attribute_key")
            continue
        c.string(text, (*loc, key), max_len=MAX_ATTRIBUTE_VALUE)


def _check_ip(c: Checker, value: Any, loc: Loc) -> None:
    text = c.string(value, loc, min_len=1, max_len=MAX_CLIENT_IP)
    if text is None:
        return
    try:
        ipaddress.ip_address(text)
    except ValueError:
        c.add(loc, "Input should be an IPv4 or IPv6 address", "ip_address")


def _check_response(c: Checker, value: Any, loc: Loc) -> None:
    response = c.obj(value, loc, ("status_code", "response_time"), _RESPONSE_OPTIONAL)
    if response is None:
        return
    if present(response, "status_code"):
        c.integer(response["status_code"], (*loc, "status_code"), ge=100, le=599)
    if present(response, "response_time"):
        c.number(response["response_time"], (*loc, "response_time"), ge=0)
    if present(response, "headers", nullable=True):
        _check_headers(c, response["headers"], (*loc, "headers"))
    if present(response, "size", nullable=True):
        c.integer(response["size"], (*loc, "size"), ge=0, le=MAX_BYTE_SUM)
    if present(response, "body", nullable=True):
        c.base64(response["body"], (*loc, "body"))


def _check_exception(c: Checker, value: Any, loc: Loc) -> None:
    exception = c.obj(value, loc, ("type", "message", "traceback"), ("sentry_event_id",))
    if exception is None:
        return
    if present(exception, "type"):
        c.string(exception["type"], (*loc, "type"), min_len=1, max_len=1024)
    if present(exception, "message"):
        c.string(exception["message"], (*loc, "message"), max_len=MAX_EXCEPTION_MSG)
    if present(exception, "traceback"):
        c.string(exception["traceback"], (*loc, "traceback"), max_len=MAX_TRACEBACK)
    if present(exception, "sentry_event_id", nullable=True):
        c.string(exception["sentry_event_id"], (*loc, "sentry_event_id"), min_len=1, max_len=64)


def _check_log_record(c: Checker, value: Any, loc: Loc) -> None:
    record = c.obj(value, loc, ("timestamp", "logger", "level", "message"), ("file", "line"))
    if record is None:
        return
    if present(record, "timestamp"):
        c.timestamp(record["timestamp"], (*loc, "timestamp"))
    for key in ("logger", "level"):
        if present(record, key):
            c.string(record[key], (*loc, key))
    if present(record, "message"):
        c.string(record["message"], (*loc, "message"), max_len=MAX_EXCEPTION_MSG)
    if present(record, "file", nullable=True):
        c.string(record["file"], (*loc, "file"))
    if present(record, "line", nullable=True):
        c.integer(record["line"], (*loc, "line"), ge=0)


def _check_span(c: Checker, value: Any, loc: Loc) -> None:
    required = ("span_id", "name", "kind", "start_time", "end_time", "status")
    span = c.obj(value, loc, required, ("parent_span_id", "attributes"))
    if span is None:
        return
    if present(span, "span_id"):
        c.string(
            span["span_id"], (*loc, "span_id"), pattern=_SPAN_ID_RE, pattern_msg="Should be 16 hex digits"
        )
    if present(span, "parent_span_id", nullable=True):
        c.string(
            span["parent_span_id"],
            (*loc, "parent_span_id"),
            pattern=_SPAN_ID_RE,
            pattern_msg="Should be 16 hex digits",
        )
    if present(span, "name"):
        c.string(span["name"], (*loc, "name"))
    kind = c.string(span["kind"], (*loc, "kind")) if present(span, "kind") else None
    if kind is not None and kind not in _SPAN_KINDS:
        c.add((*loc, "kind"), f"Input should be one of {sorted(_SPAN_KINDS)}", "enum")
    status = c.string(span["status"], (*loc, "status")) if present(span, "status") else None
    if status is not None and status not in _SPAN_STATUSES:
        c.add((*loc, "status"), f"Input should be one of {sorted(_SPAN_STATUSES)}", "enum")
    start = end = None
    if present(span, "start_time"):
        start = c.integer(span["start_time"], (*loc, "start_time"), ge=0, le=_MAX_NANOS)
    if present(span, "end_time"):
        end = c.integer(span["end_time"], (*loc, "end_time"), ge=0, le=_MAX_NANOS)
    if start is not None and end is not None and end < start:
        c.add((*loc, "end_time"), "end_time should not be before start_time", "value_error")
    if present(span, "attributes", nullable=True) and not isinstance(span["attributes"], dict):
        c.add((*loc, "attributes"), "Input should be an object", "object_type")
