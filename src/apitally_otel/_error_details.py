"""Pure helpers for error details: validation errors from 422 bodies, server errors from exceptions."""

from __future__ import annotations

import json
import traceback
import zlib

MAX_BODY_BYTES = 50_000  # hub-protocol §4.2: body read limit
MAX_DECOMPRESSED_BYTES = 200_000  # a gzip bomb stops here
MAX_MSG_LENGTH = 2048
MAX_TRACEBACK_LENGTH = 65_536
_MSG_TRUNCATED = "... (truncated)"
_TB_TRUNCATED = "... (truncated) ...\n"

ValidationErrorKey = tuple[tuple[str, ...], str, str]


def decode_body(body: bytes, content_encoding: str | None) -> bytes | None:
    """The body as plain bytes, or None when it cannot be decoded within the limits."""
    if not content_encoding or content_encoding.strip().lower() == "identity":
        return body
    if content_encoding.strip().lower() not in ("gzip", "x-gzip"):
        return None
    decompressor = zlib.decompressobj(wbits=47)  # gzip or zlib header
    try:
        out = decompressor.decompress(body, MAX_DECOMPRESSED_BYTES)
    except zlib.error:
        return None
    if decompressor.unconsumed_tail:
        return None  # more than MAX_DECOMPRESSED_BYTES: refuse rather than cut JSON in half
    return out


def parse_validation_errors(body: bytes) -> list[ValidationErrorKey]:
    """``(loc, msg, type)`` of each well-formed item of ``{"detail": [...]}``; [] for anything else."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):  # not JSON, invalid UTF-8, absurd nesting
        return []
    if not isinstance(data, dict):
        return []
    detail = data.get("detail")
    if not isinstance(detail, list):
        return []
    errors: list[ValidationErrorKey] = []
    for item in detail:
        if not isinstance(item, dict):
            continue
        loc, msg, type_ = item.get("loc"), item.get("msg"), item.get("type")
        if not isinstance(loc, (list, tuple)) or not isinstance(msg, str) or not isinstance(type_, str):
            continue
        if not all(isinstance(part, (str, int, float)) and not isinstance(part, bool) for part in loc):
            continue
        errors.append((tuple(str(part) for part in loc), msg[:MAX_MSG_LENGTH], type_[:256]))
    return errors


def first_leaf(exc: BaseException) -> BaseException:
    """Exception groups (e.g. from anyio task groups) collapse to their first leaf exception."""
    for _ in range(100):
        # BaseExceptionGroup (3.11+, or the exceptiongroup backport that anyio uses on 3.10)
        leaves = getattr(exc, "exceptions", None)
        if not isinstance(leaves, tuple) or not leaves or not isinstance(leaves[0], BaseException):
            break
        exc = leaves[0]
    return exc


def server_error_details(exc: BaseException) -> tuple[str, str, str]:
    """``(type, msg, traceback)`` as hub-protocol §4.3 defines them."""
    exc = first_leaf(exc)
    cls = type(exc)
    type_name = f"{cls.__module__}.{cls.__qualname__}"
    try:
        msg = str(exc).strip()
    except Exception:  # a broken __str__ in user code must not stop us from reporting the error
        msg = ""
    if len(msg) > MAX_MSG_LENGTH:
        msg = msg[: MAX_MSG_LENGTH - len(_MSG_TRUNCATED)] + _MSG_TRUNCATED
    tb = "".join(traceback.format_exception(cls, exc, exc.__traceback__)).strip()
    return type_name, msg, truncate_traceback(tb)


def truncate_traceback(tb: str) -> str:
    """Keep the last lines (where the error is) within the size limit, marked as truncated."""
    if len(tb) <= MAX_TRACEBACK_LENGTH:
        return tb
    budget = MAX_TRACEBACK_LENGTH - len(_TB_TRUNCATED)
    lines = tb.splitlines(keepends=True)
    kept: list[str] = []
    size = 0
    for line in reversed(lines):
        if size + len(line) > budget:
            break
        kept.append(line)
        size += len(line)
    if not kept:  # one enormous last line: keep its tail
        return _TB_TRUNCATED + tb[-budget:]
    return _TB_TRUNCATED + "".join(reversed(kept))
