"""Hostile hubs on loopback: a hub, proxy or middlebox that answers in the worst ways it can.

Used by the tests (``test_hostile_hub``) and by ``benchmarks/client/hostile_hub.py``. Each connection is
served on its own thread with plain sockets, and recorded: when it was accepted, when the client
went away, whether the whole answer was sent, and what was posted (a sync a hub answered 200 to
counts as delivered).
"""

from __future__ import annotations

import contextlib
import gzip
import json
import select
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from tests.support.servers import read_http_request

BIG = 50 * 1024 * 1024
_CHUNK = b'{"filler": "' + b"x" * 65_000 + b'"}\n'
GARBAGE = (
    b"\x00\xff\xfe<html>\x1b[31;1mRED ALERT\x1b[0m\r\nERROR apitally_otel forged log line\n"
    b"\x07\x08\x7f\xc3\x28\xe2\x80\xae{not json: [}" + "\u2028\u0085".encode() + bytes(range(32)) * 4
)
MODES: dict[str, str] = {
    "endless-200": "answers 200 and streams an endless body",
    "big-200": "answers 200 with a 50 MB body",
    "big-503": "answers 503 with a 50 MB body",
    "trickle": "trickles its answer, 1 byte/s",
    "silent": "accepts and reads the request, never answers",
    "garbage": "answers 503 with 1 MB of garbage (control characters, escape sequences, forged log lines)",
}
_STATUS = {"endless-200": 200, "big-200": 200, "big-503": 503, "trickle": 200, "garbage": 503}


@dataclass
class Connection:
    accepted: float  # time.monotonic()
    ended: float | None = None  # the client went away, or the hub was done with it
    path: str = ""
    body: bytes = b""
    answered: bool = False  # the whole answer went out
    client_left: bool = False  # the client closed before the hub was done

    @property
    def kind(self) -> str:
        return self.path.split("?", 1)[0].rsplit("/", 1)[-1]


@dataclass
class HostileHub:
    """``with HostileHub("trickle") as hub:`` serves ``hub.url`` until the block ends (or :meth:`stop`)."""

    mode: str
    byte_interval: float = 1.0  # trickle
    connections: list[Connection] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"unknown mode {self.mode!r}")
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port: int = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.threads: list[threading.Thread] = []
        self.open: list[socket.socket] = []
        self.acceptor = threading.Thread(target=self._accept, name=f"hostile-{self.mode}", daemon=True)

    def __enter__(self) -> HostileHub:
        self.acceptor.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop listening and drop every connection; the port can be bound again at once."""
        if self.stopping.is_set():
            return
        self.stopping.set()
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        if self.acceptor.is_alive():
            self.acceptor.join(5)
        with self.lock:
            sockets, threads = list(self.open), list(self.threads)
        for conn in sockets:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        for thread in threads:
            thread.join(10)

    # -- what happened ---------------------------------------------------------------------------
    def snapshot(self) -> list[Connection]:
        with self.lock:
            return list(self.connections)

    def attempts(self) -> int:
        """Requests received (a request the hub could read in full)."""
        return sum(1 for c in self.snapshot() if c.path)

    def abandoned(self) -> int:
        """Connections the client gave up on before the hub was done answering."""
        return sum(1 for c in self.snapshot() if c.client_left)

    def accepted_syncs(self) -> list[dict[str, Any]]:
        """The sync messages this hub answered 200 to: delivered, as far as the client knows."""
        if _STATUS.get(self.mode) != 200 or self.mode == "trickle":
            return []
        return [json.loads(c.body) for c in self.snapshot() if c.kind == "sync" and c.body]

    def accepted_log_lines(self) -> int:
        if _STATUS.get(self.mode) != 200 or self.mode == "trickle":
            return 0
        return sum(len(gzip.decompress(c.body).splitlines()) for c in self.snapshot() if c.kind == "log")

    def longest_request(self) -> float:
        """The longest time a client kept one connection (accepted until it left)."""
        spans = [c.ended - c.accepted for c in self.snapshot() if c.ended is not None and c.client_left]
        return max(spans, default=0.0)

    # -- serving ---------------------------------------------------------------------------------
    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            record = Connection(time.monotonic())
            thread = threading.Thread(target=self._serve, args=(conn, record), daemon=True)
            with self.lock:
                self.connections.append(record)
                self.open.append(conn)
                self.threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket, record: Connection) -> None:
        try:
            with conn:
                conn.settimeout(30)
                request = read_http_request(conn)
                if request is None:
                    record.client_left = True
                    return
                lines, record.body = request
                record.path = lines[0].split(b" ")[1].decode("latin-1")
                self._answer(conn, record)
        except OSError:  # reset or broken pipe: the client went away mid-answer
            record.client_left = not self.stopping.is_set()
        finally:
            record.ended = time.monotonic()
            with self.lock:
                if conn in self.open:
                    self.open.remove(conn)

    def _answer(self, conn: socket.socket, record: Connection) -> None:
        mode = self.mode
        if mode == "silent":
            record.client_left = self._wait_for_eof(conn, None)
        elif mode == "trickle":
            answer = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
            for byte in answer:
                conn.sendall(bytes([byte]))
                if self._wait_for_eof(conn, self.byte_interval):
                    record.client_left = True
                    return
            record.answered = True
        elif mode == "endless-200":
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n")
            while not self.stopping.is_set():
                conn.sendall(_CHUNK)
        else:
            status = b"200 OK" if mode == "big-200" else b"503 Service Unavailable"
            body_size = BIG if mode.startswith("big") else 1024 * 1024
            head = b"HTTP/1.1 %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
            conn.sendall(head % (status, body_size))
            chunk = _CHUNK if mode.startswith("big") else GARBAGE * (65_536 // len(GARBAGE))
            sent = 0
            while sent < body_size and not self.stopping.is_set():
                piece = chunk[: body_size - sent]
                conn.sendall(piece)
                sent += len(piece)
            record.answered = sent >= body_size

    def _wait_for_eof(self, conn: socket.socket, seconds: float | None) -> bool:
        """Wait ``seconds`` (None: until the hub stops); True as soon as the client has gone."""
        deadline = None if seconds is None else time.monotonic() + seconds
        while not self.stopping.is_set():
            left = 0.05 if deadline is None else min(0.05, deadline - time.monotonic())
            if left <= 0:
                return False
            readable, _, _ = select.select([conn], [], [], left)
            if readable and not conn.recv(65536):
                return not self.stopping.is_set()  # else: our own shutdown
        return False


class StalledDns:
    """Stands in for ``socket.getaddrinfo`` for names under ``.test``, as if their DNS servers did
    not answer until :attr:`answering` is set (then the name is 127.0.0.1). A resolver that hangs,
    then answers, cannot be arranged on this machine; every other name goes to the real one."""

    def __init__(self, suffix: str = ".test") -> None:
        self.real = socket.getaddrinfo
        self.suffix = suffix
        self.answering = threading.Event()
        self.lookups = 0

    def __call__(self, host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if not (isinstance(host, str) and host.endswith(self.suffix)):
            return self.real(host, port, *args, **kwargs)
        self.lookups += 1
        if not self.answering.wait(60):
            raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
        return self.real("127.0.0.1", port, *args, **kwargs)
