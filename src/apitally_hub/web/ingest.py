"""Ingest endpoints: ``POST /v2/{client_id}/{env}/startup | sync | log?uuid=`` (hub-protocol.md).

Order of checks: client id (malformed or not allowed → 404), env (→ 422), injected faults,
admission before the body is read (the client's ingest rate → 429, the body budget → 503, both
with Retry-After; see :mod:`.admission`), media type (→ 415), body size (→ 413) and time
(→ 408), JSON/gzip well-formedness (→ 400), field validation (→ 422).

An accepted message is committed to the store's queue, then answered 202 — folding it into the
aggregates happens off the request path (:mod:`.worker`) — so a 2xx always means the message is
stored. A resend of a stored ``message_uuid`` (or log file ``uuid``) gets 200 with ``"status":
"duplicate"`` and is not counted again. Parsing, decompression and store work run in worker
threads, at most :data:`PARSE_WORKERS` parses at a time (their memory is a few times the body's).
Request-log lines over the hub's limits are cut or refused
(:mod:`~apitally_hub.protocol.log_limits`); what is queued is the file as kept.
"""

from __future__ import annotations

import functools
import gzip
import json
import logging
from collections.abc import Callable
from typing import Any, Literal

import anyio
import anyio.to_thread
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from apitally_hub.errors import HubError, field_error, unprocessable
from apitally_hub.ingest import bodies, folding
from apitally_hub.ingest.admission import Ticket
from apitally_hub.log_throttle import LogThrottle
from apitally_hub.protocol.checker import FieldError, TimeWindow
from apitally_hub.protocol.log_limits import LogLimits, cut_line
from apitally_hub.protocol.log_lines import validate_log_lines
from apitally_hub.protocol.messages import (
    ENV_MESSAGE,
    is_valid_env,
    normalize_client_id,
    validate_startup,
    validate_sync,
)
from apitally_hub.storage.records import AppKey, RawMessage, Rejection
from apitally_hub.web.context import HubContext

_logger = logging.getLogger(__name__)

INLINE_PARSE_LIMIT = 64 * 1024
"""Bodies up to this size are parsed on the event loop; bigger ones in a worker thread."""

RETRY_LATER = frozenset({429, 503})
"""Answers that ask the client to come back (not rejections: neither logged nor recorded)."""

PARSE_WORKERS = 2
"""Worker threads parsing big bodies at once (more would not run faster under the GIL, only
hold more parsed objects in memory)."""

Validator = Callable[..., list[FieldError]]


def _parse_message(body: bytes, validate: Validator, allow_extra: bool) -> dict[str, Any]:
    message = bodies.parse_json(body)
    errors = validate(message, allow_extra=allow_extra)
    if errors:
        raise unprocessable(errors)
    assert isinstance(message, dict)  # validators reject anything else
    return message


def _parse_log(
    body: bytes, limits: LogLimits, allow_extra: bool, window: TimeWindow, ticket: Ticket
) -> list[tuple[str, dict[str, Any]]]:
    """Decompress, parse, cut and validate a request-log file, one line at a time; each kept line
    is added to the body budget before the next is read."""
    lines: list[tuple[int, str, Any]] = []
    pieces = bodies.gunzip_lines(body, max_total=limits.max_total(len(body)), max_line=limits.max_line)
    for index, raw in pieces:
        parsed = bodies.parse_line(index, raw)
        if parsed is None:
            continue
        text, value = parsed
        if cut_line(value):
            text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        ticket.grow(len(text))
        lines.append((index, text, value))
    errors = validate_log_lines(
        [(index, value) for index, _, value in lines], allow_extra=allow_extra, window=window
    )
    if errors:
        raise unprocessable(errors)
    return [(text, value) for _, text, value in lines]


def _encode_log(lines: list[tuple[str, dict[str, Any]]]) -> bytes:
    """The file as the hub keeps it (lines cut to the limits), for the folding worker."""
    return gzip.compress("".join(text + "\n" for text, _ in lines).encode(), compresslevel=1)


def _accepted(stored: bool, **extra: Any) -> JSONResponse:
    status = "accepted" if stored else "duplicate"
    return JSONResponse({"status": status, **extra}, status_code=202 if stored else 200)


class IngestEndpoints:
    def __init__(self, context: HubContext) -> None:
        self.context = context
        self._log = LogThrottle(_logger, interval=10.0)
        self._parse_limiter: anyio.CapacityLimiter | None = None

    async def _in_worker(self, func: Callable[..., Any], *args: Any) -> Any:
        if self._parse_limiter is None:  # created in the event loop, on first use
            self._parse_limiter = anyio.CapacityLimiter(PARSE_WORKERS)
        return await anyio.to_thread.run_sync(func, *args, limiter=self._parse_limiter)

    def routes(self) -> list[Route]:
        prefix = "/v2/{client_id}/{env}"
        return [
            Route(f"{prefix}/startup", self.startup, methods=["POST"]),
            Route(f"{prefix}/sync", self.sync, methods=["POST"]),
            Route(f"{prefix}/log", self.log, methods=["POST"]),
        ]

    def _address(self, request: Request) -> tuple[str, str]:
        client_id = normalize_client_id(request.path_params["client_id"])
        if client_id is None or not self.context.config.is_allowed(client_id):
            raise HubError(404, "Unknown client id")
        env = request.path_params["env"]
        if not is_valid_env(env):
            raise field_error(("path", "env"), ENV_MESSAGE, "string_pattern_mismatch")
        return client_id, env

    def _time_window(self) -> TimeWindow:
        return TimeWindow(self.context.clock(), self.context.config.retention_seconds)

    def _fault(self, endpoint: str) -> Response | None:
        fault = self.context.faults.take(endpoint)
        if fault is None:
            return None
        _logger.info("Answering /%s with injected status %d", endpoint, fault.status_code)
        return JSONResponse(fault.body, status_code=fault.status_code, headers=dict(fault.headers))

    async def _reject(self, client_id: str, env: str, endpoint: str, exc: HubError) -> None:
        if exc.status_code in RETRY_LATER:
            return
        summary = str(exc.detail)
        if len(summary) > 500:
            summary = summary[:500] + "..."
        self._log.warning(
            f"reject:{endpoint}",
            "Rejected /%s for %s/%s with %d: %s",
            endpoint,
            client_id,
            env,
            exc.status_code,
            summary,
        )
        rejection = Rejection(
            AppKey(client_id, env), endpoint, exc.status_code, json.dumps(exc.detail), self.context.clock()
        )
        try:
            await self.context.run(lambda: self.context.store.record_rejection(rejection))
        except Exception:  # the rejection is what matters; recording it is best effort
            _logger.exception("Could not record a rejected /%s message", endpoint)

    async def _commit(self, message: RawMessage) -> bool:
        stored = await self.context.run(lambda: self.context.store.enqueue(message))
        if stored and self.context.worker is not None:
            self.context.worker.notify()
        return stored

    async def _json_message(
        self, request: Request, endpoint: Literal["startup", "sync"], validate: Validator
    ) -> Response:
        client_id, env = self._address(request)
        fault = self._fault(endpoint)
        if fault is not None:
            return fault
        config = self.context.config
        async with self.context.admission.admit(client_id, request, config.max_body_bytes) as ticket:
            try:
                bodies.require_media_type(request, bodies.JSON_MEDIA_TYPES)
                bodies.require_encoding(request, frozenset({"identity"}))
                body = await bodies.read_body(
                    request, config.max_body_bytes, timeout=config.body_timeout, on_chunk=ticket.grow
                )
                ticket.charge(len(body))
                if len(body) <= INLINE_PARSE_LIMIT:
                    message = _parse_message(body, validate, config.allow_extra_fields)
                else:
                    message = await self._in_worker(_parse_message, body, validate, config.allow_extra_fields)
            except HubError as exc:
                await self._reject(client_id, env, endpoint, exc)
                raise
            stored_body = await self.context.run(lambda: folding.encode_json_body(body))
            stored = await self._commit(
                RawMessage(
                    AppKey(client_id, env),
                    endpoint,
                    message["message_uuid"],
                    message["instance_uuid"],
                    self.context.clock(),
                    stored_body,
                    "zlib",
                    folding.item_count(message) if endpoint == "sync" else 1,
                )
            )
        return _accepted(stored, message_uuid=message["message_uuid"])

    async def startup(self, request: Request) -> Response:
        return await self._json_message(request, "startup", validate_startup)

    async def sync(self, request: Request) -> Response:
        validate = functools.partial(validate_sync, window=self._time_window())
        return await self._json_message(request, "sync", validate)

    async def log(self, request: Request) -> Response:
        client_id, env = self._address(request)
        fault = self._fault("log")
        if fault is not None:
            return fault
        config = self.context.config
        async with self.context.admission.admit(client_id, request, config.max_log_bytes) as ticket:
            try:
                file_uuid = request.query_params.get("uuid")
                if file_uuid is None:
                    raise field_error(("query", "uuid"), "Field required", "missing")
                if normalize_client_id(file_uuid) != file_uuid:
                    raise field_error(
                        ("query", "uuid"), "Input should be a lowercase hyphenated UUID", "uuid_parsing"
                    )
                bodies.require_media_type(request, bodies.LOG_MEDIA_TYPES, optional=True)
                bodies.require_encoding(request, frozenset({"identity", "gzip"}))
                body = await bodies.read_body(
                    request, config.max_log_bytes, timeout=config.body_timeout, on_chunk=ticket.grow
                )
                ticket.charge(len(body))
                lines = await self._in_worker(
                    _parse_log,
                    body,
                    LogLimits(config.max_log_decompressed_bytes),
                    config.allow_extra_fields,
                    self._time_window(),
                    ticket,
                )
                ticket.charge(sum(len(text) for text, _ in lines))
            except HubError as exc:
                await self._reject(client_id, env, "log", exc)
                raise
            kept = await self.context.run(lambda: _encode_log(lines))
            stored = await self._commit(
                RawMessage(
                    AppKey(client_id, env),
                    "log",
                    file_uuid,
                    None,
                    self.context.clock(),
                    kept,
                    "gzip",
                    len(lines),
                )
            )
        return _accepted(stored, uuid=file_uuid, lines=len(lines))
