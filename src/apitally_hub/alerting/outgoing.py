"""The hub's outgoing HTTP calls (webhooks, Slack, Teams, health checks) under two bounds: one
total deadline per attempt, and at most :data:`MAX_RESPONSE_BYTES` of any response read.

httpx's timeouts are per phase and per socket operation: a target that answers one byte just
before each read timeout holds a call for as long as it likes. Here every socket operation of a
call (connect, TLS handshake, each write, each read) gets at most the time left until the call's
deadline, so a call ends by its deadline whatever the target does. The deadline is per thread
(:func:`deadline`), and the transport (:func:`transport`) reads it at each operation, so one
pooled client serves every thread. (Name resolution is the system's: a hostname that takes long
to resolve is not bounded by it; the targets are configured by the hub's operators.)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpcore
import httpx
from opentelemetry.instrumentation.utils import suppress_instrumentation

MAX_RESPONSE_BYTES = 64 * 1024
"""Read at most this much of a response (its body is never shown; the status is what counts)."""

_local = threading.local()


def _remaining(timeout: float | None, error: type[Exception]) -> float | None:
    end: float | None = getattr(_local, "deadline", None)
    if end is None:
        return timeout
    left = end - time.monotonic()
    if left <= 0:
        raise error("the attempt's deadline passed")
    return left if timeout is None else min(timeout, left)


@contextmanager
def deadline(seconds: float) -> Iterator[float]:
    """Bound every socket operation of this thread's calls to ``seconds`` from now, in total;
    yields the deadline (``time.monotonic()``)."""
    previous = getattr(_local, "deadline", None)
    end = time.monotonic() + seconds
    _local.deadline = end if previous is None else min(end, previous)
    try:
        yield _local.deadline
    finally:
        _local.deadline = previous


class _Stream(httpcore.NetworkStream):
    def __init__(self, stream: httpcore.NetworkStream) -> None:
        self._stream = stream

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, _remaining(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, _remaining(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(
        self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        bound = _remaining(timeout, httpcore.ConnectTimeout)
        return _Stream(self._stream.start_tls(ssl_context, server_hostname, bound))

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class _Backend(httpcore.NetworkBackend):
    def __init__(self) -> None:
        self._backend = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.NetworkStream:
        bound = _remaining(timeout, httpcore.ConnectTimeout)
        return _Stream(self._backend.connect_tcp(host, port, bound, local_address, socket_options))

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Any = None
    ) -> httpcore.NetworkStream:
        bound = _remaining(timeout, httpcore.ConnectTimeout)
        return _Stream(self._backend.connect_unix_socket(path, bound, socket_options))

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)


def transport() -> httpx.HTTPTransport:
    """An httpx transport whose socket operations honour :func:`deadline`."""
    base = httpx.HTTPTransport()
    # httpx builds its httpcore pool without a way to pass a network backend: build the same pool
    # with ours (tests/hub/test_outgoing_bounds.py holds this to the pinned httpx)
    base._pool = httpcore.ConnectionPool(ssl_context=httpx.create_ssl_context(), network_backend=_Backend())
    return base


def client(transport_: httpx.BaseTransport | None, user_agent: str) -> httpx.Client:
    return httpx.Client(
        transport=transport_ if transport_ is not None else transport(),
        headers={"User-Agent": user_agent},
    )


@dataclass(frozen=True)
class Reply:
    status_code: int
    headers: httpx.Headers
    bytes_read: int

    @property
    def is_redirect(self) -> bool:
        return self.status_code in (301, 302, 303, 307, 308) and "location" in self.headers


def call(
    client_: httpx.Client,
    method: str,
    url: httpx.URL | str,
    *,
    seconds: float,
    content: bytes | None = None,
    headers: Mapping[str, str] | None = None,
) -> Reply:
    """One request under a total deadline of ``seconds``; reads at most :data:`MAX_RESPONSE_BYTES`
    of the response, then closes it. Raises httpx errors (a timeout as
    :class:`httpx.TimeoutException`)."""
    with deadline(seconds) as end, suppress_instrumentation():
        # the hub's own outgoing calls are never telemetry (no feedback loops)
        timeout = httpx.Timeout(max(end - time.monotonic(), 0.001))
        request = client_.build_request(method, url, content=content, headers=headers, timeout=timeout)
        response = client_.send(request, stream=True, follow_redirects=False)
        try:
            read = 0
            for chunk in response.iter_raw(16 * 1024):
                read += len(chunk)
                if read >= MAX_RESPONSE_BYTES:
                    break
            return Reply(response.status_code, response.headers, read)
        finally:
            response.close()
