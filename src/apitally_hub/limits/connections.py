"""Connections: a header-read timeout, a connection limit below the fd limit, and a quiet log.

uvicorn's h11 protocol has a keep-alive timeout (armed after a response) but no timeout for
reading a request's headers: a connection that sends ``GET / HTTP/1.1\\r\\n`` and then a byte now
and then stays open for ever. ~1 000 of them at a 1 024 fd limit used to stop ``/health`` and
write 486 MB of "Too many open files" in 60 s. :class:`HubH11Protocol` (a subclass of uvicorn's
``H11Protocol``) therefore

- arms a timer when a connection opens and again when a response is complete (the idle wait for
  the next request), and cancels it when a request's headers are complete: a connection that
  has not delivered complete headers within ``header_timeout`` seconds (however it trickles
  bytes) is closed;
- keeps the number of open connections at most ``max_connections``, chosen below
  ``RLIMIT_NOFILE`` (:func:`default_max_connections`): at the limit, a new connection closes the
  connection that has waited longest for request headers (a half-open one or an idle keep-alive
  one) — so a flood of half-open connections churns among themselves while a real client's
  request, whose headers arrive at once, is served — and is refused only when every connection
  is busy with a request.

uvicorn's ``limit_concurrency`` is not used for this: it accepts every connection (so the fds
still run out) and answers 503 to new requests once connections reach the limit, half-open ones
included, which would turn a slowloris into a 503 for every real client.

The listen backlog is kept small (:data:`BACKLOG`) because asyncio accepts up to a backlog's
worth of connections in one go before any of their protocols runs; :data:`FD_RESERVE` leaves room
for those bursts, the database files and the log. Should accept() fail anyway (EMFILE), asyncio's
error report goes through :func:`quiet_exception_handler`: one line a minute, no traceback. The
warnings uvicorn's protocol logs per bad request ("Invalid HTTP request received.", "Unsupported
upgrade request.", ...) are throttled the same way (:class:`QuietLogger`).
"""

from __future__ import annotations

import asyncio
import logging
import resource
from collections.abc import Callable
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from apitally_hub.log_throttle import LogThrottle

_logger = logging.getLogger(__name__)

BACKLOG = 64
FD_RESERVE = 256
MIN_CONNECTIONS = 16


def default_max_connections(reserve: int = FD_RESERVE) -> int:
    """The connection limit for this process's soft ``RLIMIT_NOFILE`` (1 024 → 768)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft > 1_000_000:
        soft = 1_000_000
    return max(MIN_CONNECTIONS, soft - reserve)


class ConnectionGuard:
    """The connections of one server: which are open, which wait for request headers (oldest first)."""

    def __init__(self, max_connections: int, header_timeout: float) -> None:
        if max_connections < 1 or not header_timeout > 0:
            raise ValueError("max_connections and header_timeout must be positive")
        self.max_connections = max_connections
        self.header_timeout = header_timeout
        self.open: set[HubH11Protocol] = set()
        self.waiting: dict[HubH11Protocol, None] = {}  # insertion order: the oldest wait comes first
        self.timed_out = self.evicted = self.refused = 0
        self.log = LogThrottle(_logger)
        uvicorn_error = logging.getLogger("uvicorn.error")
        self.uvicorn_logger = QuietLogger(uvicorn_error, LogThrottle(uvicorn_error))

    def admit(self, protocol: HubH11Protocol) -> bool:
        if len(self.open) >= self.max_connections:
            victim = next(iter(self.waiting), None)
            if victim is None:
                self.refused += 1
                self.log.warning(
                    "refused",
                    "Refused a connection: all %d connections are busy with requests",
                    self.max_connections,
                )
                return False
            self.evicted += 1
            self.log.warning(
                "evicted",
                "At the connection limit (%d): closed the connection that waited longest for request headers",
                self.max_connections,
            )
            victim.close_waiting()
        self.open.add(protocol)
        return True

    def waits(self, protocol: HubH11Protocol) -> None:
        self.waiting.pop(protocol, None)
        self.waiting[protocol] = None

    def busy(self, protocol: HubH11Protocol) -> None:
        self.waiting.pop(protocol, None)

    def forget(self, protocol: HubH11Protocol) -> None:
        self.waiting.pop(protocol, None)
        self.open.discard(protocol)

    def timed_out_one(self) -> None:
        self.timed_out += 1
        self.log.warning(
            "header-timeout",
            "Closed a connection that sent no complete request headers within %g s",
            self.header_timeout,
        )


class QuietLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """uvicorn's ``uvicorn.error`` logger for one protocol class: warnings and errors at most once a
    minute per message (uvicorn's messages are fixed texts; request data is in the arguments)."""

    def __init__(self, logger: logging.Logger, throttle: LogThrottle) -> None:
        super().__init__(logger, {})
        self.throttle = throttle

    @property
    def level(self) -> int:  # uvicorn reads it to decide on TRACE logging
        return int(self.logger.level)

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        if level < logging.WARNING:
            self.logger.log(level, msg, *args, **kwargs)
        else:
            self.throttle.log(level, str(msg), str(msg), *args, exc_info=kwargs.get("exc_info"))


class HubH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a header-read timeout and the guard's connection limit.

    Use :func:`protocol_class` to get a subclass bound to one :class:`ConnectionGuard`.
    """

    guard: ConnectionGuard

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.logger = self.guard.uvicorn_logger  # type: ignore[assignment]
        self._header_timer: asyncio.TimerHandle | None = None
        self._seen_cycle: Any = None
        self._admitted = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if not self.guard.admit(self):
            transport.abort()
            return
        self._admitted = True
        super().connection_made(transport)
        self._await_headers()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._admitted:
            return  # refused in connection_made: nothing of uvicorn's was set up
        self._cancel_header_timer()
        self.guard.forget(self)
        super().connection_lost(exc)

    def handle_events(self) -> None:
        super().handle_events()
        if self.cycle is not None and self.cycle is not self._seen_cycle:
            self._seen_cycle = self.cycle  # a request's headers are complete: it is busy now
            self._cancel_header_timer()
            self.guard.busy(self)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and (self.cycle is None or self.cycle.response_complete):
            self._await_headers()  # idle until the next request (none pipelined)

    def close_waiting(self) -> None:
        self.guard.busy(self)
        self._cancel_header_timer()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def _await_headers(self) -> None:
        self._cancel_header_timer()
        self._header_timer = self.loop.call_later(self.guard.header_timeout, self._on_header_timeout)
        self.guard.waits(self)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _on_header_timeout(self) -> None:
        self._header_timer = None
        if self.transport is None or self.transport.is_closing():
            return
        if self.conn.their_state is h11.IDLE and self.conn.our_state is h11.IDLE:
            self.guard.timed_out_one()
        self.close_waiting()


def protocol_class(guard: ConnectionGuard) -> type[HubH11Protocol]:
    """A :class:`HubH11Protocol` subclass for one server (uvicorn instantiates the class itself)."""
    return type("BoundHubH11Protocol", (HubH11Protocol,), {"guard": guard})


def quiet_exception_handler(log: LogThrottle) -> Callable[[asyncio.AbstractEventLoop, dict[str, Any]], None]:
    """An event-loop exception handler that reports accept() failures (EMFILE, ENFILE, ...) once a
    minute without a traceback, and everything else as asyncio's default handler does."""

    def handle(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        message = str(context.get("message", ""))
        if message.startswith("socket.accept() out of system resource"):
            log.warning("accept", "accept() failed: %s", context.get("exception"))
            return
        loop.default_exception_handler(context)

    return handle
