"""Reading request bodies under limits: streamed size checks, strict JSON, bounded streaming gunzip.

The parsing helpers are synchronous and pure (run them in a worker thread for big inputs);
they raise :class:`~apitally_hub.errors.HubError` with the status to answer: 400 for
malformed input, 413 for too large, 415 for an unsupported media type or encoding.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import anyio
from starlette.requests import ClientDisconnect, Request

from apitally_hub.errors import HubError, field_error

JSON_MEDIA_TYPES = frozenset({"application/json"})
LOG_MEDIA_TYPES = frozenset({"application/octet-stream", "application/gzip", "application/x-gzip"})


def media_type(request: Request) -> str | None:
    value = request.headers.get("content-type")
    return value.split(";", 1)[0].strip().lower() if value else None


UTF8_CHARSETS = frozenset({"utf-8", "utf8"})


def charset(request: Request) -> str | None:
    """The ``charset`` parameter of the Content-Type (lower case, unquoted), or None."""
    for parameter in request.headers.get("content-type", "").split(";")[1:]:
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "charset":
            return value.strip().strip('"').lower()
    return None


def require_media_type(request: Request, allowed: frozenset[str], *, optional: bool = False) -> None:
    """415 for a media type not in ``allowed`` or a charset other than UTF-8 (the only encoding
    the protocol's JSON and NDJSON use; a latin-1 body would be decoded wrongly, not refused)."""
    media = media_type(request)
    if (media is None and not optional) or (media is not None and media not in allowed):
        raise HubError(415, f"Unsupported media type {media!r}; expected one of {sorted(allowed)}")
    declared = charset(request)
    if declared is not None and declared not in UTF8_CHARSETS:
        raise HubError(415, f"Unsupported charset {declared!r}; bodies must be UTF-8")


def require_encoding(request: Request, allowed: frozenset[str]) -> None:
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in allowed:
        raise HubError(415, f"Unsupported content encoding {encoding!r}")


DEFAULT_BODY_TIMEOUT = 30.0
"""Seconds a client has to send a whole body (the protocol's clients give up after 10 s)."""


async def read_body(
    request: Request,
    limit: int,
    *,
    timeout: float = DEFAULT_BODY_TIMEOUT,
    on_chunk: Callable[[int], None] | None = None,
) -> bytes:
    """The whole body, refusing with 413 as soon as it exceeds ``limit`` bytes and with 408 when it
    takes longer than ``timeout`` seconds (a slow sender holds a connection and budget).

    ``on_chunk(size)`` is called before a chunk beyond the declared ``Content-Length`` (all of
    them when there is none) is kept: the body budget grows there and may raise.
    """
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise HubError(413, f"Request body is larger than {limit} bytes")
    reserved = int(declared) if declared.isdigit() else 0
    body = bytearray()
    try:
        with anyio.fail_after(timeout):
            async for chunk in request.stream():
                if len(body) + len(chunk) > limit:
                    raise HubError(413, f"Request body is larger than {limit} bytes")
                extra = len(body) + len(chunk) - max(reserved, len(body))
                if on_chunk is not None and extra > 0:
                    on_chunk(extra)
                body += chunk
    except ClientDisconnect:
        raise HubError(400, "Client disconnected while sending the body") from None
    except TimeoutError:
        raise HubError(408, f"The request body did not arrive within {timeout:g} s") from None
    return bytes(body)


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise ValueError(f"duplicate key {key!r}")
            seen.add(key)
    return result


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def loads_strict(text: str) -> Any:
    """``json.loads`` refusing duplicate keys and NaN/Infinity; raises ValueError or RecursionError."""
    return json.loads(text, object_pairs_hook=_object_without_duplicates, parse_constant=_reject_constant)


def _require_encodable(value: Any, text: str) -> None:
    """Refuse lone surrogates (a ``\\ud800`` escape): valid JSON, but not encodable as UTF-8."""
    if "\\ud" not in text and "\\uD" not in text:
        return
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except (UnicodeEncodeError, RecursionError):
        raise ValueError("text contains a lone UTF-16 surrogate escape") from None


def loads_checked(text: str) -> Any:
    """:func:`loads_strict` that also refuses lone surrogates; raises ValueError or RecursionError."""
    value = loads_strict(text)
    _require_encodable(value, text)
    return value


def parse_json(body: bytes) -> Any:
    try:
        return loads_checked(body.decode("utf-8"))
    except UnicodeDecodeError:
        raise HubError(400, "Request body is not valid UTF-8") from None
    except (ValueError, RecursionError) as exc:
        raise HubError(400, f"Malformed JSON: {exc}") from None


_GUNZIP_STEP = 256 * 1024


def _gunzip(data: bytes, limit: int) -> Iterator[bytes]:
    """Decompressed pieces of a gzip stream (concatenated members allowed), at most ``limit`` bytes."""
    if not data:
        raise HubError(400, "Request body is empty; expected a gzip stream")
    produced = 0
    pending = data
    decompressor = zlib.decompressobj(wbits=31)
    try:
        while True:
            piece = decompressor.decompress(pending, min(_GUNZIP_STEP, limit - produced + 1))
            produced += len(piece)
            if produced > limit:
                raise HubError(413, f"Decompressed body is larger than {limit} bytes")
            if piece:
                yield piece
            pending = decompressor.unconsumed_tail
            if decompressor.eof:
                pending = decompressor.unused_data
                if not pending.strip(b"\0"):
                    return
                decompressor = zlib.decompressobj(wbits=31)
            elif not pending and not piece:
                raise HubError(400, "Truncated gzip stream")
    except zlib.error as exc:
        raise HubError(400, f"Request body is not a valid gzip stream: {exc}") from None


def gunzip(data: bytes, *, limit: int) -> bytes:
    """A whole gzip stream decompressed (at most ``limit`` bytes: 413 beyond)."""
    return b"".join(_gunzip(data, limit))


def gunzip_lines(data: bytes, *, max_total: int, max_line: int) -> Iterator[tuple[int, bytes]]:
    """The lines of a gzip NDJSON body as ``(line_index, raw_line)``, decompressed as they are read,
    so that only one line is held at a time: 413 when the whole would exceed ``max_total`` bytes
    or one line ``max_line`` bytes (a 48 kB upload can hold a 49 MB line)."""
    pending = bytearray()
    index = 0
    for piece in _gunzip(data, max_total):
        pending += piece
        while (end := pending.find(b"\n")) >= 0:
            if end > max_line:
                break
            yield index, bytes(pending[:end])
            del pending[: end + 1]
            index += 1
        if len(pending) > max_line:
            raise field_error(
                ("lines", index), f"Line is longer than {max_line} bytes decompressed", "line_too_long", 413
            )
    if pending:
        yield index, bytes(pending)


def parse_line(index: int, raw: bytes) -> tuple[str, Any] | None:
    """One NDJSON line as ``(text, value)``, None when blank; 400 naming the line when malformed."""
    try:
        text = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise field_error(("lines", index), "Line is not valid UTF-8", "utf8_invalid", 400) from None
    if not text:
        return None
    try:
        return text, loads_checked(text)
    except (ValueError, RecursionError) as exc:
        raise field_error(("lines", index), f"Malformed JSON: {exc}", "json_invalid", 400) from None
