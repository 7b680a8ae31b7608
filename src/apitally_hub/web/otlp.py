"""OTLP/HTTP ingest: ``POST /v1/traces``, ``/v1/metrics``, ``/v1/logs`` (docs/hub/otlp.md).

Order of checks: the write token (``Authorization: Bearer apt_…``: missing, malformed, unknown or
revoked → 401; :mod:`~apitally_hub.security.write_tokens` remembers a token's app for seconds),
the ``Apitally-Env`` header (→ 400 when not a valid env name), admission before the body is read
(the app's ingest rate → 429, the body budget or a folding backlog → 503, with Retry-After; the
same :mod:`~apitally_hub.ingest.admission` as ``/v2``), media type (``application/x-protobuf`` or
``application/json`` → else 415), content encoding (gzip or identity → else 415), body size and
time (→ 413, 408), decompression (→ 413 past the body limit or what the body budget can hold
parsed), decoding (→ 400). What the hub derives and stores is committed before the answer: 200
with an ``Export*ServiceResponse`` in the request's encoding — a partial success naming what was
refused and why, when something was — and ``Apitally-Export-Interval`` (seconds: 15, or 60 while
folding is behind), which apitally 1.x follows.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio
import anyio.to_thread
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from apitally_hub.errors import HubError
from apitally_hub.ingest import bodies
from apitally_hub.ingest.otlp import decoding
from apitally_hub.ingest.otlp.decoding import MediaType, OtlpDecodeError, Signal
from apitally_hub.ingest.otlp.intake import OtlpIntake, Outcome, Target
from apitally_hub.log_throttle import LogThrottle
from apitally_hub.protocol.checker import TimeWindow
from apitally_hub.protocol.messages import is_valid_env
from apitally_hub.storage.records import AppKey, Rejection
from apitally_hub.web.context import HubContext

_logger = logging.getLogger(__name__)

WRITE_TOKEN_RE = re.compile(r"apt_[A-Za-z0-9]{24}")
ENV_HEADER = "apitally-env"
INTERVAL_HEADER = "Apitally-Export-Interval"
EXPORT_INTERVAL = 15
EXPORT_INTERVAL_BEHIND = 60
PROTOBUF_TYPES = frozenset({"application/x-protobuf", "application/protobuf"})
JSON_TYPES = frozenset({"application/json"})
PARSE_WORKERS = 2
PARSED_FACTOR = 7
"""Memory taking a body holds, as a multiple of its decompressed size, charged to the body budget:
measured 5x in Python objects (tracemalloc) plus the parsed protobuf messages, for a 4.4 MB export
of apitally 1.x spans (benchmarks/hub/otlp.py: the hub's RSS grew 57 MB, the allocator's keep
included)."""

SIGNALS: tuple[Signal, ...] = ("traces", "metrics", "logs")

T = TypeVar("T")


class OtlpEndpoints:
    def __init__(self, context: HubContext) -> None:
        self.context = context
        self._log = LogThrottle(_logger, interval=10.0)
        self._parse_limiter: anyio.CapacityLimiter | None = None

    def routes(self) -> list[Route]:
        return [
            Route(f"/v1/{signal}", self._endpoint(signal), methods=["POST"], name=f"otlp:{signal}")
            for signal in SIGNALS
        ]

    def _endpoint(self, signal: Signal) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            return await self.export(request, signal)

        return endpoint

    async def _app_of(self, request: Request) -> str:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or WRITE_TOKEN_RE.fullmatch(token) is None:
            raise HubError(
                401,
                "A write token is required: Authorization: Bearer apt_… (the app's setup page shows it)",
                {"WWW-Authenticate": "Bearer"},
            )
        now = time.monotonic()
        known, client_id = self.context.write_tokens.get(token, now)
        if not known:
            client_id = await self.context.run(lambda: self.context.store.app_for_write_token(token))
            self.context.write_tokens.put(token, client_id, now)
        if client_id is None:
            raise HubError(401, "Unknown or revoked write token", {"WWW-Authenticate": "Bearer"})
        if not self.context.config.is_allowed(client_id):  # the --client-id allow-list, as for /v2
            raise HubError(401, "This hub does not take data for this app", {"WWW-Authenticate": "Bearer"})
        return client_id

    def _env_header(self, request: Request) -> str | None:
        env = request.headers.get(ENV_HEADER)
        if env is None:
            return None
        env = env.strip()
        if not is_valid_env(env):
            raise HubError(400, f"Apitally-Env should match ^[A-Za-z0-9_-]{{1,32}}$, got {env[:40]!r}")
        return env

    async def _default_env(self, client_id: str) -> str:
        record = await self.context.run(lambda: self.context.store.app_record(client_id))
        return record.envs[0] if record is not None and record.envs else "prod"

    def _media_type(self, request: Request) -> MediaType:
        media = bodies.media_type(request)
        if media in PROTOBUF_TYPES:
            return "protobuf"
        if media in JSON_TYPES:
            return "json"
        raise HubError(
            415, f"Unsupported media type {media!r}; expected application/x-protobuf or application/json"
        )

    async def _in_worker(self, func: Callable[..., T], *args: Any) -> T:
        if self._parse_limiter is None:  # created in the event loop, on first use
            self._parse_limiter = anyio.CapacityLimiter(PARSE_WORKERS)
        return await anyio.to_thread.run_sync(func, *args, limiter=self._parse_limiter)

    async def export(self, request: Request, signal: Signal) -> Response:
        client_id = await self._app_of(request)
        header_env = self._env_header(request)
        default_env = header_env or await self._default_env(client_id)
        config = self.context.config
        limit = config.max_body_bytes
        # what a body may decompress to: what the budget can hold with its parsing
        expanded_limit = max(min(limit, config.max_inflight_body_bytes // (PARSED_FACTOR + 1)), 1)
        gzipped = request.headers.get("content-encoding", "identity").strip().lower() == "gzip"
        if not gzipped:
            limit = expanded_limit
        async with self.context.admission.admit(client_id, request, limit) as ticket:
            try:
                media_type = self._media_type(request)
                bodies.require_encoding(request, frozenset({"identity", "gzip"}))
                body = await bodies.read_body(
                    request, limit, timeout=config.body_timeout, on_chunk=ticket.grow
                )
                ticket.charge(len(body))
                if gzipped:
                    body = await self._in_worker(lambda: bodies.gunzip(body, limit=expanded_limit))
                    ticket.grow(len(body))
                ticket.grow(len(body) * PARSED_FACTOR)
                intake = OtlpIntake(
                    self.context.store,
                    TimeWindow(self.context.clock(), config.retention_seconds),
                    config.allow_extra_fields,
                )
                target = Target(client_id, header_env, default_env)
                received_at = self.context.clock()
                try:
                    outcome: Outcome = await self._in_worker(
                        intake.take, target, signal, body, media_type, received_at
                    )
                except OtlpDecodeError as exc:
                    raise HubError(400, str(exc)) from None
            except HubError as exc:
                await self._reject(client_id, header_env or default_env, signal, exc)
                raise
        if outcome.messages and self.context.worker is not None:
            self.context.worker.notify()
        if outcome.rejected:
            self._log.warning(
                f"otlp-partial:{signal}",
                "Refused %d item(s) of an OTLP /v1/%s export for %s: %s",
                outcome.rejected,
                signal,
                client_id,
                outcome.error_message,
            )
        interval = EXPORT_INTERVAL_BEHIND if self.context.admission.queue.behind else EXPORT_INTERVAL
        content = decoding.encode_response(signal, media_type, outcome.rejected, outcome.error_message)
        return Response(
            content,
            status_code=200,
            media_type="application/x-protobuf" if media_type == "protobuf" else "application/json",
            headers={INTERVAL_HEADER: str(interval)},
        )

    async def _reject(self, client_id: str, env: str, signal: Signal, exc: HubError) -> None:
        if exc.status_code in (429, 503):
            return
        summary = str(exc.detail)[:500]
        self._log.warning(
            f"otlp-reject:{signal}",
            "Rejected OTLP /v1/%s for %s/%s with %d: %s",
            signal,
            client_id,
            env,
            exc.status_code,
            summary,
        )
        rejection = Rejection(
            AppKey(client_id, env),
            f"otlp:{signal}",
            exc.status_code,
            json.dumps(exc.detail),
            self.context.clock(),
        )
        try:
            await self.context.run(lambda: self.context.store.record_rejection(rejection))
        except Exception:  # the rejection is what matters; recording it is best effort
            _logger.exception("Could not record a rejected OTLP /v1/%s request", signal)
