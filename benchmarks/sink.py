"""A loopback sink for hub and OTLP traffic: accepts every POST and counts it (stdlib only).

Run as a subprocess (``python -m benchmarks.sink``, started by ``common.sink()``): it prints
``{"port": N}`` on its first line and serves until its standard input closes. ``GET /stats``
answers the counts so far. Every variant's telemetry goes here, so no benchmark ever reaches for
the internet.
"""

from __future__ import annotations

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Stats:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: dict[str, int] = {}
        self.bytes = 0


STATS = _Stats()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        elif self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            self._drain_chunked()
        kind = self.path.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
        with STATS.lock:
            STATS.requests[kind] = STATS.requests.get(kind, 0) + 1
            STATS.bytes += length
        is_otlp = self.path.startswith("/v1/")
        self._reply(200 if is_otlp else 202, b"" if is_otlp else b"{}")

    def do_GET(self) -> None:
        with STATS.lock:
            body = json.dumps({"requests": STATS.requests, "bytes": STATS.bytes}).encode()
        self._reply(200, body)

    def _drain_chunked(self) -> None:
        while True:
            size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
            self.rfile.read(size + 2)
            if size == 0:
                return

    def _reply(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def main() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(json.dumps({"port": server.server_address[1]}), flush=True)
    sys.stdin.read()  # until the parent closes our stdin (or exits)
    server.shutdown()


if __name__ == "__main__":
    main()
