"""A server on loopback that drips a fixed answer, one byte per interval, to every connection,
without reading anything first (an SMTP greeting, say); it records how long each client stayed."""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time


class DripServer:
    """``with DripServer(b"220-...", 0.3) as server:`` serves ``server.port`` until the block ends."""

    def __init__(self, answer: bytes, interval: float) -> None:
        self.answer, self.interval = answer, interval
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port: int = self.sock.getsockname()[1]
        self.stays: list[float] = []
        """Seconds each client stayed (until it hung up, or the answer was all sent)."""
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.threads: list[threading.Thread] = []

    def __enter__(self) -> DripServer:
        thread = threading.Thread(target=self._accept, daemon=True)
        thread.start()
        self.threads.append(thread)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        for thread in list(self.threads):
            thread.join(5)

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            thread = threading.Thread(target=self._drip, args=(conn,), daemon=True)
            self.threads.append(thread)
            thread.start()

    def _drip(self, conn: socket.socket) -> None:
        started = time.monotonic()
        with conn, contextlib.suppress(OSError):
            for byte in self.answer:
                conn.sendall(bytes([byte]))
                if self._client_left(conn):
                    break
        with self.lock:
            self.stays.append(time.monotonic() - started)

    def _client_left(self, conn: socket.socket) -> bool:
        """Wait one interval; True as soon as the client has hung up."""
        deadline = time.monotonic() + self.interval
        while not self.stopping.is_set():
            left = min(0.02, deadline - time.monotonic())
            if left <= 0:
                return False
            readable, _, _ = select.select([conn], [], [], left)
            if readable and not conn.recv(65536):
                return True
        return True
