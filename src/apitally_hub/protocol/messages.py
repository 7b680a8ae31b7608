"""Strict validators for the JSON messages of hub-protocol.md §3 (startup) and §4 (sync).

Each validator is pure: it takes the decoded JSON document and returns a list of
:class:`~apitally_hub.checker.FieldError` (empty when the message is valid). Unknown keys are
rejected (``extra_forbidden``) unless ``allow_extra`` is set.
"""

from __future__ import annotations

import contextlib
import json
import re
import uuid
from typing import Any

from apitally_hub.protocol.checker import (
    MAX_BYTE_SUM,
    MAX_COUNT,
    Checker,
    FieldError,
    Loc,
    TimeWindow,
    TooManyErrors,
    present,
)

ENV_PATTERN = "^[A-Za-z0-9_-]{1,32}$"
"""Env names: ASCII letters, digits, ``_`` and ``-`` (the 0.x client's ``\\w`` would admit any
Unicode letter or digit, which no real env name needs and which look-alike letters abuse)."""
ENV_RE = re.compile(ENV_PATTERN[1:-1], re.ASCII)
ENV_MESSAGE = f"env should match {ENV_PATTERN}"

MAX_IDENTIFIER = 128
MAX_NAME = 64
MAX_EXCEPTION_MSG = 2048
MAX_TRACEBACK = 65536

_STARTUP_KEYS = ("instance_uuid", "message_uuid", "paths", "versions", "client")
_SYNC_KEYS = (
    "instance_uuid",
    "message_uuid",
    "timestamp",
    "requests",
    "validation_errors",
    "server_errors",
    "consumers",
    "resources",
)
_REQUEST_KEYS = (
    "consumer",
    "method",
    "path",
    "status_code",
    "request_count",
    "request_size_sum",
    "response_size_sum",
    "response_times",
    "request_sizes",
    "response_sizes",
)
_VALIDATION_ERROR_KEYS = ("consumer", "method", "path", "loc", "msg", "type", "error_count")
_SERVER_ERROR_KEYS = (
    "consumer",
    "method",
    "path",
    "type",
    "msg",
    "traceback",
    "sentry_event_id",
    "error_count",
)
_CONSUMER_KEYS = ("identifier", "name", "group")


def is_valid_env(env: str) -> bool:
    return ENV_RE.fullmatch(env) is not None


def normalize_client_id(value: str) -> str | None:
    """Return the canonical lowercase hyphenated form of a UUID client id, or None if malformed."""
    if len(value) != 36:
        return None
    try:
        parsed = uuid.UUID(value)
    except ValueError:
        return None
    canonical = str(parsed)
    return canonical if canonical == value.lower() else None


def validate_startup(message: Any, *, allow_extra: bool = False) -> list[FieldError]:
    checker = Checker(allow_extra=allow_extra)
    with contextlib.suppress(TooManyErrors):
        _check_startup(checker, message)
    return checker.errors


def validate_sync(
    message: Any, *, allow_extra: bool = False, window: TimeWindow | None = None
) -> list[FieldError]:
    """``window``: the timestamps the hub accepts now (None: any plausible epoch time)."""
    checker = Checker(allow_extra=allow_extra)
    with contextlib.suppress(TooManyErrors):
        _check_sync(checker, message, window)
    return checker.errors


def _check_startup(c: Checker, message: Any) -> None:
    msg = c.obj(message, (), _STARTUP_KEYS, ("openapi",))
    if msg is None:
        return
    for key in ("instance_uuid", "message_uuid"):
        if present(msg, key):
            c.uuid(msg[key], (key,))
    if present(msg, "paths"):
        paths = c.array(msg["paths"], ("paths",))
        for i, item in enumerate(paths or ()):
            loc: Loc = ("paths", i)
            entry = c.obj(item, loc, ("method", "path"))
            if entry is None:
                continue
            if present(entry, "method"):
                method = c.method(entry["method"], (*loc, "method"), upper=False)
                if method is not None and method.upper() in ("HEAD", "OPTIONS"):
                    c.add((*loc, "method"), "HEAD and OPTIONS are not listed", "value_error")
            if present(entry, "path"):
                c.route_path(entry["path"], (*loc, "path"))
    if present(msg, "openapi", nullable=True):
        _check_openapi(c, msg["openapi"])
    if present(msg, "versions"):
        _check_versions(c, msg["versions"])
    if present(msg, "client"):
        c.string(msg["client"], ("client",), min_len=1, max_len=64)


def _check_openapi(c: Checker, value: Any) -> None:
    text = c.string(value, ("openapi",))
    if text is None:
        return
    try:
        document = json.loads(text)
    except (ValueError, RecursionError):
        c.add(("openapi",), "Input should be the OpenAPI document as a JSON string", "json_invalid")
        return
    if not isinstance(document, dict):
        c.add(("openapi",), "The OpenAPI document should be a JSON object", "json_invalid")


def _check_versions(c: Checker, value: Any) -> None:
    if not isinstance(value, dict):
        c.add(("versions",), "Input should be an object", "object_type")
        return
    for name, version in value.items():
        loc: Loc = ("versions", name)
        if not name:
            c.add(loc, "Package name should not be empty", "string_too_short")
            continue
        c.string(version, loc, min_len=1, max_len=128)


def _check_sync(c: Checker, message: Any, window: TimeWindow | None) -> None:
    msg = c.obj(message, (), _SYNC_KEYS)
    if msg is None:
        return
    for key in ("instance_uuid", "message_uuid"):
        if present(msg, key):
            c.uuid(msg[key], (key,))
    if present(msg, "timestamp"):
        c.recent_timestamp(msg["timestamp"], ("timestamp",), window)
    item_checks = (
        ("requests", _check_request_item),
        ("validation_errors", _check_validation_error_item),
        ("server_errors", _check_server_error_item),
        ("consumers", _check_consumer_item),
    )
    for key, check_item in item_checks:
        if present(msg, key):
            items = c.array(msg[key], (key,))
            for i, item in enumerate(items or ()):
                check_item(c, item, (key, i))
    if isinstance(msg.get("requests"), list):
        _check_unique_requests(c, msg["requests"])
    if present(msg, "resources", nullable=True):
        resources = c.obj(msg["resources"], ("resources",), ("cpu_percent", "memory_rss"))
        if resources is not None:
            if present(resources, "cpu_percent"):
                c.number(resources["cpu_percent"], ("resources", "cpu_percent"), ge=0)
            if present(resources, "memory_rss"):
                c.integer(resources["memory_rss"], ("resources", "memory_rss"), ge=0)


def _check_consumer_ref(c: Checker, item: dict[str, Any], loc: Loc) -> None:
    """``consumer``, ``method`` and ``path``: the key shared by every sync item."""
    if present(item, "consumer", nullable=True):
        c.string(item["consumer"], (*loc, "consumer"), min_len=1, max_len=MAX_IDENTIFIER, stripped=True)
    if present(item, "method"):
        method = c.method(item["method"], (*loc, "method"))
        if method == "OPTIONS":
            c.add((*loc, "method"), "OPTIONS requests are never counted", "value_error")
    if present(item, "path"):
        c.route_path(item["path"], (*loc, "path"))


def _check_request_item(c: Checker, value: Any, loc: Loc) -> None:
    item = c.obj(value, loc, _REQUEST_KEYS)
    if item is None:
        return
    _check_consumer_ref(c, item, loc)
    if present(item, "status_code"):
        c.integer(item["status_code"], (*loc, "status_code"), ge=100, le=599)
    count = None
    if present(item, "request_count"):
        count = c.integer(item["request_count"], (*loc, "request_count"), ge=0, le=MAX_COUNT)
    size_sums: dict[str, int | None] = {}
    for key in ("request_size_sum", "response_size_sum"):
        if present(item, key):
            size_sums[key] = c.integer(item[key], (*loc, key), ge=0, le=MAX_BYTE_SUM)
    if present(item, "response_times"):
        times = c.bins(item["response_times"], (*loc, "response_times"), multiple_of=10)
        if times is not None and count is not None and sum(times.values()) != count:
            c.add(
                (*loc, "response_times"),
                f"Histogram counts should add up to request_count ({count})",
                "histogram_sum",
            )
    for key, sum_key in (("request_sizes", "request_size_sum"), ("response_sizes", "response_size_sum")):
        if present(item, key):
            sizes = c.bins(item[key], (*loc, key))
            if sizes is not None and count is not None and sum(sizes.values()) > count:
                c.add(
                    (*loc, key),
                    f"Histogram counts should not exceed request_count ({count})",
                    "histogram_sum",
                )
            elif sizes is not None and (total := size_sums.get(sum_key)) is not None:
                _check_size_sum(c, total, sizes, (*loc, sum_key))


def _check_size_sum(c: Checker, total: int, sizes: dict[int, int], loc: Loc) -> None:
    """A size sum must be one the bins allow: bin ``k`` holds sizes ``k * 1000 .. k * 1000 + 999``."""
    low = sum(count * kb * 1000 for kb, count in sizes.items())
    high = sum(count * (kb * 1000 + 999) for kb, count in sizes.items())
    if not low <= total <= high:
        c.add(loc, f"Size sum should lie within the bins' bounds [{low}, {high}]", "size_sum_mismatch")


def _check_unique_requests(c: Checker, items: list[Any]) -> None:
    seen: set[tuple[Any, ...]] = set()
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            continue
        key = tuple(repr(item.get(k)) for k in ("consumer", "method", "path", "status_code"))
        if key in seen:
            c.add(
                ("requests", i), "Duplicate item for (consumer, method, path, status_code)", "duplicate_item"
            )
        seen.add(key)


def _check_validation_error_item(c: Checker, value: Any, loc: Loc) -> None:
    item = c.obj(value, loc, _VALIDATION_ERROR_KEYS)
    if item is None:
        return
    _check_consumer_ref(c, item, loc)
    if present(item, "loc"):
        parts = c.array(item["loc"], (*loc, "loc"))
        for j, part in enumerate(parts or ()):
            c.string(part, (*loc, "loc", j))
    for key in ("msg", "type"):
        if present(item, key):
            c.string(item[key], (*loc, key))
    if present(item, "error_count"):
        c.integer(item["error_count"], (*loc, "error_count"), ge=0, le=MAX_COUNT)


def _check_server_error_item(c: Checker, value: Any, loc: Loc) -> None:
    item = c.obj(value, loc, _SERVER_ERROR_KEYS)
    if item is None:
        return
    _check_consumer_ref(c, item, loc)
    if present(item, "type"):
        c.string(item["type"], (*loc, "type"), min_len=1, max_len=1024)
    if present(item, "msg"):
        c.string(item["msg"], (*loc, "msg"), max_len=MAX_EXCEPTION_MSG)
    if present(item, "traceback"):
        c.string(item["traceback"], (*loc, "traceback"), max_len=MAX_TRACEBACK)
    if present(item, "sentry_event_id", nullable=True):
        c.string(item["sentry_event_id"], (*loc, "sentry_event_id"), min_len=1, max_len=64)
    if present(item, "error_count"):
        c.integer(item["error_count"], (*loc, "error_count"), ge=0, le=MAX_COUNT)


def _check_consumer_item(c: Checker, value: Any, loc: Loc) -> None:
    item = c.obj(value, loc, _CONSUMER_KEYS)
    if item is None:
        return
    if present(item, "identifier"):
        c.string(item["identifier"], (*loc, "identifier"), min_len=1, max_len=MAX_IDENTIFIER, stripped=True)
    for key in ("name", "group"):
        if present(item, key, nullable=True):
            c.string(item[key], (*loc, key), max_len=MAX_NAME, stripped=True)
    if item.get("name") is None and item.get("group") is None and "name" in item and "group" in item:
        c.add(loc, "A consumer is listed only when it has a name or a group", "value_error")
