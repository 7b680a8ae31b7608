"""Real servers on loopback for the tests: a uvicorn server in a thread, an app in a subprocess."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def bound_socket() -> socket.socket:
    # IPPROTO_TCP (not 0): asyncio then sets TCP_NODELAY, avoiding ~40 ms Nagle/delayed-ACK stalls.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.set_inheritable(True)
    return sock


def read_http_request(conn: socket.socket) -> tuple[list[bytes], bytes] | None:
    """One HTTP/1.1 request from ``conn``: its head lines and its body (by Content-Length), or
    None when the peer closes first."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    length = next(
        (
            int(v)
            for k, _, v in (h.partition(b":") for h in lines[1:])
            if k.strip().lower() == b"content-length"
        ),
        0,
    )
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        body += chunk
    return lines, body


class ServerThread:
    """``with ServerThread(app) as url:`` serves an ASGI app with uvicorn on 127.0.0.1:<free port>."""

    def __init__(self, app: Any, **config: Any) -> None:
        self.sock = bound_socket()
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="auto", **config))
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.run(self.server.serve(sockets=[self.sock]))

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("server did not start")
            time.sleep(0.01)
        return self.url

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()


@dataclass
class RecordingHub:
    """A minimal hub that records what clients send (until the local hub serves every test)."""

    messages: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    status_code: int = 202
    lock: threading.Lock = field(default_factory=threading.Lock)

    def app(self) -> Starlette:
        async def receive(request: Request) -> Response:
            body = await request.body()
            kind = request.path_params["kind"]
            data = json.loads(gzip.decompress(body) if kind == "log" else body) if kind != "log" else {}
            with self.lock:
                self.messages.append((kind, data))
            return Response(status_code=self.status_code)

        return Starlette(routes=[Route("/v2/{client_id}/{env}/{kind}", receive, methods=["POST"])])

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        with self.lock:
            return [data for k, data in self.messages if k == kind]

    def wait_for(self, kind: str, count: int = 1, timeout: float = 10.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while len(self.of_kind(kind)) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"expected {count} {kind} message(s), got {len(self.of_kind(kind))}")
            time.sleep(0.02)
        return self.of_kind(kind)


class AppProcess:
    """An app served by ``python -m uvicorn`` in a subprocess on a socket bound here."""

    def __init__(self, target: str, env: dict[str, str], *args: str, prefix: tuple[str, ...] = ()) -> None:
        self.sock = bound_socket()
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        full_env = {
            "PATH": os.environ.get("PATH", ""),
            "PYTHONPATH": ROOT,
            "TMPDIR": os.environ.get("TMPDIR", "/tmp"),
            **env,
        }
        self.proc = subprocess.Popen(
            [
                *prefix,
                sys.executable,
                "-m",
                "uvicorn",
                target,
                "--fd",
                str(self.sock.fileno()),
                "--log-level",
                "warning",
                *args,
            ],
            env=full_env,
            pass_fds=[self.sock.fileno()],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.output = ""

    def wait_ready(self, path: str = "/", timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError("app exited:\n" + (self.proc.stdout.read() if self.proc.stdout else ""))
            with contextlib.suppress(httpx.TransportError):
                httpx.get(self.url + path, timeout=1)
                return
            if time.monotonic() > deadline:
                raise RuntimeError("app did not start")
            time.sleep(0.05)

    def stop(self, timeout: float = 20.0) -> str:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.output = self.proc.stdout.read()
            self.proc.stdout.close()
        self.sock.close()
        return self.output


@contextlib.contextmanager
def app_process(
    target: str, env: dict[str, str], *args: str, prefix: tuple[str, ...] = ()
) -> Iterator[AppProcess]:
    """``prefix`` goes before the python command, e.g. ``("opentelemetry-instrument",)``."""
    process = AppProcess(target, env, *args, prefix=prefix)
    try:
        yield process
    finally:
        process.stop()


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    status_code: int
    at: float

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class WebhookReceiver:
    """A real webhook endpoint: records every POST; answers ``fail_first`` of them with
    ``fail_status`` (per path), then 200."""

    fail_first: int = 0
    fail_status: int = 503
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def app(self) -> Starlette:
        async def receive(request: Request) -> Response:
            body = await request.body()
            path = request.url.path
            with self.lock:
                earlier = sum(1 for r in self.received if r.path == path)
                status = self.fail_status if earlier < self.fail_first else 200
                self.received.append(Received(path, dict(request.headers), body, status, time.time()))
            return Response("ok" if status == 200 else "unavailable", status_code=status)

        return Starlette(routes=[Route("/{path:path}", receive, methods=["POST"])])

    def delivered(self, path: str | None = None) -> list[Received]:
        """The requests answered 200 (on ``path``), in order."""
        with self.lock:
            return [r for r in self.received if r.status_code == 200 and (path is None or r.path == path)]

    def wait_for(self, predicate: Any, timeout: float = 30.0, path: str | None = None) -> list[Received]:
        """Wait until ``predicate(delivered)`` is true; returns the delivered requests."""
        deadline = time.monotonic() + timeout
        while True:
            delivered = self.delivered(path)
            if predicate(delivered):
                return delivered
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"webhook condition not met in {timeout} s; got {[r.json() for r in delivered]}"
                )
            time.sleep(0.02)


def free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class SMTPServer:
    """A real SMTP server (aiosmtpd) on loopback that keeps the messages it accepts; with
    ``login`` it requires AUTH (over plain text, acceptable on loopback)."""

    def __init__(self, login: tuple[str, str] | None = None) -> None:
        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import AuthResult, LoginPassword

        self.messages: list[Any] = []
        self.logins: list[str] = []
        server = self

        class Handler:
            async def handle_DATA(self, smtp: Any, session: Any, envelope: Any) -> str:
                import email
                import email.policy

                message = email.message_from_bytes(envelope.content, policy=email.policy.default)
                server.messages.append(message)
                return "250 OK"

        def authenticate(smtp: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> Any:
            ok = (
                isinstance(data, LoginPassword)
                and login is not None
                and (data.login.decode(), data.password.decode()) == login
            )
            if ok:
                server.logins.append(data.login.decode())
            return AuthResult(success=ok)

        options: dict[str, Any] = {}
        if login is not None:
            options = {"authenticator": authenticate, "auth_require_tls": False, "auth_required": True}
        self.port = free_port()
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port, **options)

    def __enter__(self) -> SMTPServer:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()

    def wait_for(self, count: int = 1, timeout: float = 30.0) -> list[Any]:
        deadline = time.monotonic() + timeout
        while len(self.messages) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"expected {count} email(s), got {len(self.messages)}")
            time.sleep(0.02)
        return self.messages
