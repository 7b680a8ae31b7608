"""A real slowloris against a real hub process at a 1 024 fd limit (issue 11): ~1 000 half-open
connections used to stop /health and write 486 MB of "Too many open files" log in 60 s."""

from __future__ import annotations

import contextlib
import os
import resource
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import apitally_otel

SRC = Path(apitally_otel.__file__).resolve().parents[1]
FD_LIMIT = 1024
HALF_OPEN = 1100
HEADER_TIMEOUT = 3.0


def _limit_fds() -> None:  # runs in the hub's process, before exec
    resource.setrlimit(resource.RLIMIT_NOFILE, (FD_LIMIT, FD_LIMIT))


@pytest.fixture
def hub_process(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    log = tmp_path / "hub.log"
    argv = ["hub", "--port", "0", "--db", str(tmp_path / "hub.sqlite"), "--log-level", "info"]
    argv += ["--header-timeout", str(HEADER_TIMEOUT)]
    with log.open("wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "apitally_hub.cli", *argv],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            env={**os.environ, "PYTHONPATH": str(SRC)},
            preexec_fn=_limit_fds,
        )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().split("listening on ", 1)[1].split()[0]
        with httpx.Client(base_url=url, timeout=2) as http:
            deadline = time.monotonic() + 10
            while True:
                with contextlib.suppress(httpx.TransportError):
                    if http.get("/health").status_code == 200:
                        break
                assert time.monotonic() < deadline, "the hub did not start"
                time.sleep(0.05)
        yield url, log
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()


@pytest.fixture
def many_fds() -> Iterator[None]:
    """This test process holds ~1 000 sockets itself: raise its own soft limit if it must."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = HALF_OPEN + 512
    if soft >= wanted:
        yield
        return
    if hard != resource.RLIM_INFINITY and hard < wanted:
        pytest.skip(f"needs {wanted} file descriptors; the hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def _open_half(host: str, port: int, count: int) -> list[socket.socket]:
    sockets = []
    for _ in range(count):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            sock.connect((host, port))
        sockets.append(sock)
    time.sleep(0.5)
    for sock in sockets:  # a request line and one header: never complete
        with contextlib.suppress(OSError):
            sock.send(f"GET /health HTTP/1.1\r\nHost: {host}\r\n".encode())
    return sockets


def _closed_by_peer(sock: socket.socket) -> bool:
    try:
        return sock.recv(1024) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def test_health_answers_under_1100_half_open_connections(
    hub_process: tuple[str, Path], many_fds: None
) -> None:
    url, log = hub_process
    host, port = url.removeprefix("http://").rsplit(":", 1)
    sockets = _open_half(host, int(port), HALF_OPEN)
    try:
        latencies = []
        started = time.monotonic()
        while time.monotonic() - started < HEADER_TIMEOUT + 2:
            for sock in sockets:  # trickle: a byte each round, as a slowloris does
                with contextlib.suppress(OSError):
                    sock.send(b"X")
            begin = time.monotonic()
            response = httpx.get(f"{url}/health", timeout=5)  # a new connection each time
            latencies.append(time.monotonic() - begin)
            assert response.status_code == 200
            time.sleep(0.5)
        assert max(latencies) < 3.0, latencies
        # the half-open connections were closed by the hub: at the limit, or after the header timeout
        deadline = time.monotonic() + 5
        while sum(_closed_by_peer(s) for s in sockets) < HALF_OPEN and time.monotonic() < deadline:
            time.sleep(0.2)
        assert sum(_closed_by_peer(s) for s in sockets) == HALF_OPEN
    finally:
        for sock in sockets:
            sock.close()
    assert httpx.get(f"{url}/health", timeout=5).status_code == 200
    text = log.read_text(errors="replace")
    assert len(text) < 20_000, text[-2000:]
    assert "Too many open files" not in text
