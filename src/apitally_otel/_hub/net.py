"""The network under a deadline: an httpcore network backend whose every step ends by the deadline
of the hub request it serves.

httpx's timeouts are per operation: a hub (or a proxy) that trickles a byte a second never trips a
10 s read timeout, and name resolution (``getaddrinfo``, blocking in C) has no timeout at all. Inside
a :class:`Deadline` (one per hub request), this backend bounds all of it:

- name resolution runs on a helper thread, waited for until the deadline. Lookups of one name
  share a thread and at most :data:`MAX_LOOKUPS` run at once, so a resolver that hangs cannot
  multiply threads; a lookup that outlives its deadline ends on its own and its answer is unused;
- connecting (address by address), the TLS handshake and every read and write get the time left as
  their timeout, and fail at once when none is left;
- at the deadline a timer shuts the request's socket down, which ends whatever is still blocked on
  it (httpcore's write loop, for one, restarts the socket timeout after every partial send).

Outside a :class:`Deadline` the backend behaves exactly like the one it wraps.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
import threading
import time
from collections.abc import Iterable
from contextvars import ContextVar, Token
from typing import Any

import httpcore

MAX_LOOKUPS = 4

_current: ContextVar[Deadline | None] = ContextVar("apitally_otel_deadline", default=None)


class Deadline:
    """``with Deadline(10.0):`` — every network step of the hub request inside ends within 10 s."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.expired = False
        self.stage = "waiting for a connection"  # what the request was doing: for the log line
        self._at = time.monotonic() + seconds
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._timer: threading.Timer | None = None
        self._done = False
        self._token: Token[Deadline | None] | None = None

    def __enter__(self) -> Deadline:
        self._at = time.monotonic() + self.seconds
        self._token = _current.set(self)
        return self

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self._done = True
            self._sockets.clear()
            timer = self._timer
        if timer is not None:
            timer.cancel()
        if self._token is not None:
            _current.reset(self._token)

    def remaining(self) -> float:
        return self._at - time.monotonic()

    def timeout(self, timeout: float | None, error: type[Exception]) -> float:
        """The timeout for one operation: the time left, or less; ``error`` when there is none."""
        left = self.remaining()
        if left <= 0:
            self.expired = True
            raise error(f"the {self.seconds:g} s deadline of the hub request passed")
        return left if timeout is None else min(timeout, left)

    def watch(self, sock: Any) -> None:
        """Shut ``sock`` down at the deadline if the request still uses it then."""
        if not isinstance(sock, socket.socket):
            return
        with self._lock:
            if self._done or sock in self._sockets:
                return
            self._sockets.append(sock)
            if self._timer is None:  # armed on the first socket: requests without one need no thread
                self._timer = threading.Timer(max(self.remaining(), 0.0), self._expire)
                self._timer.name = "apitally-otel-deadline"
                self._timer.daemon = True
                self._timer.start()

    def _expire(self) -> None:
        with self._lock:
            if self._done:
                return
            self.expired = True
            sockets = list(self._sockets)
        for sock in sockets:
            # The base class's shutdown also for TLS sockets: the SSL object stays with its reader.
            # A socket closed meanwhile has no descriptor any more: EBADF, nothing else is touched.
            with contextlib.suppress(OSError):
                socket.socket.shutdown(sock, socket.SHUT_RDWR)


def current_deadline() -> Deadline | None:
    return _current.get()


class DeadlineBackend(httpcore.NetworkBackend):
    """Wraps httpcore's backend (``inner``) so that each step respects the current :class:`Deadline`."""

    def __init__(self, inner: httpcore.NetworkBackend) -> None:
        self.inner = inner

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        deadline = _current.get()
        if deadline is None:
            return self.inner.connect_tcp(host, port, timeout, local_address, socket_options)
        options = list(socket_options) if socket_options is not None else None
        error: Exception = httpcore.ConnectError(f"no address for {host!r}")
        deadline.stage = f"resolving {host!r}"
        addresses = resolve(host, port, deadline.timeout(timeout, httpcore.ConnectTimeout))
        deadline.stage = f"connecting to {host}:{port}"
        for address in addresses:
            try:
                stream = self.inner.connect_tcp(
                    address, port, deadline.timeout(timeout, httpcore.ConnectTimeout), local_address, options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc  # the next address, while time is left
                continue
            wrapped = _DeadlineStream(stream)
            deadline.watch(stream.get_extra_info("socket"))
            return wrapped
        raise error

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        deadline = _current.get()
        if deadline is not None:
            timeout = deadline.timeout(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(self.inner.connect_unix_socket(path, timeout, socket_options))

    def sleep(self, seconds: float) -> None:
        self.inner.sleep(seconds)


class _DeadlineStream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self.inner = inner

    def _timeout(self, timeout: float | None, error: type[Exception], stage: str) -> float | None:
        deadline = _current.get()
        if deadline is None:
            return timeout
        deadline.stage = stage
        deadline.watch(self.inner.get_extra_info("socket"))  # also a pooled connection's socket
        return deadline.timeout(timeout, error)

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self.inner.read(max_bytes, self._timeout(timeout, httpcore.ReadTimeout, "reading the answer"))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self.inner.write(buffer, self._timeout(timeout, httpcore.WriteTimeout, "sending the request"))

    def close(self) -> None:
        self.inner.close()

    def start_tls(
        self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        # CPython bounds the whole handshake by the socket timeout, so the time left is enough here.
        timeout = self._timeout(timeout, httpcore.ConnectTimeout, "in the TLS handshake")
        return _DeadlineStream(self.inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        return self.inner.get_extra_info(info)


# -- name resolution -------------------------------------------------------------------------
class _Lookup(threading.Thread):
    def __init__(self, registry: _Lookups, host: str, port: int) -> None:
        super().__init__(name="apitally-otel-resolve", daemon=True)
        self.registry = registry
        self.key = (host, port)
        self.finished = threading.Event()
        self.addresses: list[str] = []
        self.error: OSError | None = None

    def run(self) -> None:
        try:
            infos = socket.getaddrinfo(self.key[0], self.key[1], type=socket.SOCK_STREAM)
            self.addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        except OSError as exc:
            self.error = exc
        finally:
            self.finished.set()
            with self.registry.lock:
                if self.registry.running.get(self.key) is self:
                    del self.registry.running[self.key]


class _Lookups:
    def __init__(self) -> None:
        self.pid = os.getpid()
        self.lock = threading.Lock()
        self.running: dict[tuple[str, int], _Lookup] = {}


_registry: _Lookups | None = None


def _lookups() -> _Lookups:
    # Per process: a forked child has none of its parent's lookup threads (nor a usable lock).
    global _registry
    registry = _registry
    if registry is None or registry.pid != os.getpid():
        registry = _registry = _Lookups()
    return registry


def resolve(host: str, port: int, timeout: float) -> list[str]:
    """The addresses of ``host``, waiting at most ``timeout`` s; httpcore's connect errors otherwise."""
    with contextlib.suppress(ValueError):
        return [str(ipaddress.ip_address(host))]  # an address already: nothing to look up
    registry = _lookups()
    with registry.lock:
        lookup = registry.running.get((host, port))
        if lookup is None:
            if len(registry.running) >= MAX_LOOKUPS:
                raise httpcore.ConnectError(
                    f"cannot resolve {host!r}: {MAX_LOOKUPS} name lookups still pending"
                )
            lookup = registry.running[(host, port)] = _Lookup(registry, host, port)
            lookup.start()
    if not lookup.finished.wait(timeout):
        raise httpcore.ConnectTimeout(f"resolving {host!r} took longer than the deadline")
    if lookup.error is not None:
        raise httpcore.ConnectError(f"cannot resolve {host!r}: {lookup.error}")
    if not lookup.addresses:
        raise httpcore.ConnectError(f"cannot resolve {host!r}: no address")
    return lookup.addresses
