"""Running the hub with uvicorn: :func:`serve` (foreground, the CLI) and :class:`HubServer`
(a background thread on an ephemeral loopback port, for tests and examples)::

    with HubServer(tmp_path / "hub.sqlite") as hub:
        os.environ["APITALLY_HUB_BASE_URL"] = hub.url
        ...
        hub.faults.add("sync", 503, times=2)   # make the next two /sync calls fail
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from types import TracebackType
from typing import Any, TextIO

import uvicorn
from starlette.applications import Starlette

from apitally_hub.config import HubConfig, Transport
from apitally_hub.ingest.faults import FaultPlan
from apitally_hub.limits.connections import (
    BACKLOG,
    ConnectionGuard,
    default_max_connections,
    protocol_class,
    quiet_exception_handler,
)
from apitally_hub.log_throttle import LogThrottle
from apitally_hub.report.client import HubQueryClient
from apitally_hub.security.hosts import require_token_off_loopback
from apitally_hub.storage.urls import is_postgres_url, redact_url
from apitally_hub.web.app import create_app
from apitally_hub.web.context import HubContext

_logger = logging.getLogger(__name__)


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP matters: asyncio enables TCP_NODELAY only on sockets whose proto says TCP;
    # without it Nagle's algorithm and delayed ACKs add ~40 ms to every response.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(BACKLOG)
        sock.set_inheritable(True)
    except OSError:
        sock.close()
        raise
    return sock


def _url(sock: socket.socket, scheme: str = "http") -> str:
    host, port = sock.getsockname()[:2]
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"


def uvicorn_config(transport: Transport, app: Any, **options: Any) -> uvicorn.Config:
    """uvicorn's configuration for ``app``: TLS and proxies as ``transport`` says, our connection
    guard (:mod:`apitally_hub.limits.connections`), no access log, the lifespan on."""
    guard = ConnectionGuard(transport.max_connections or default_max_connections(), transport.header_timeout)
    return uvicorn.Config(
        app,
        http=protocol_class(guard),
        ws="none",
        access_log=False,
        lifespan="on",
        ssl_certfile=transport.ssl_certfile,
        ssl_keyfile=transport.ssl_keyfile,
        proxy_headers=True,
        forwarded_allow_ips=transport.forwarded_allow_ips,
        timeout_keep_alive=transport.keep_alive_timeout,
        backlog=BACKLOG,
        **options,
    )


class HubUvicornServer(uvicorn.Server):
    """uvicorn's server whose event loop reports accept() failures quietly (once a minute)."""

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        asyncio.get_running_loop().set_exception_handler(quiet_exception_handler(LogThrottle(_logger)))
        await super().startup(sockets)


def serve(config: HubConfig, *, out: TextIO | None = None) -> int:
    """Run the hub in the foreground until SIGINT (Ctrl+C: graceful stop, exit code 0) or SIGTERM
    (graceful stop, then uvicorn re-raises the signal); returns the exit code.

    Raises :class:`~apitally_hub.security.hosts.InsecureBindError` for a non-loopback host
    without tokens, before binding anything.
    """
    out = out or sys.stdout
    require_token_off_loopback(config.host, config.tokens)
    postgres = is_postgres_url(config.db)
    location = config.db if postgres else Path(config.db).resolve()
    config = replace(config, db=location, allowed_hosts=(*config.allowed_hosts, config.host))
    app = create_app(config)
    sock = _bind(config.host, config.port)
    try:
        url = _url(sock, config.transport.scheme)
        print(f"apitally-otel hub listening on {url}  (set APITALLY_HUB_BASE_URL={url})", file=out)
        where = f"{redact_url(str(location))}  (PostgreSQL)" if postgres else f"{location}  (SQLite, WAL)"
        print(f"data: {where}", file=out)
        tokens, viewers = config.tokens, config.viewer_tokens
        configured = f"{len(tokens)} admin" + (f", {len(viewers)} viewer" if viewers else "")
        reads = f"need a bearer token ({configured})" if tokens else "are open (loopback only)"
        print(f"reads {reads}", file=out, flush=True)
        server = HubUvicornServer(uvicorn_config(config.transport, app, log_level=config.log_level))
        # uvicorn re-raises the Ctrl+C it handled after its graceful stop: that is a normal exit here
        with contextlib.suppress(KeyboardInterrupt):
            server.run(sockets=[sock])
        print("hub stopped", file=out, flush=True)
        return 0 if server.started else 1
    finally:
        sock.close()


class HubServer:
    """The hub on ``host:port`` (default 127.0.0.1 and an ephemeral port) in a background thread.

    ``db_path`` None uses a fresh temporary SQLite database per run, removed on :meth:`stop`; a
    ``postgresql://`` URL uses that database. The other keyword arguments are fields of
    :class:`~apitally_hub.config.HubConfig` (``client_ids``, ``max_body_bytes``, ``retention``,
    ``alerting``, ``tokens`` — needed for a non-loopback ``host``; :meth:`query` sends the first —
    ``transport`` for TLS and proxies, ...), besides ``faults`` (a
    :class:`~apitally_hub.ingest.faults.FaultPlan`) and ``clock`` (epoch seconds), which go to
    :func:`~apitally_hub.web.app.create_app`. ``url`` is the base URL to give the client
    (``APITALLY_HUB_BASE_URL``); ``hub_url(client_id, env)`` the per-app ingest URL;
    ``query(...)`` reads the query API.
    """

    def __init__(
        self,
        db_path: str | Path | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        startup_timeout: float = 10.0,
        faults: FaultPlan | None = None,
        clock: Callable[[], float] | None = None,
        **config: Any,
    ) -> None:
        self._db_url = db_path if isinstance(db_path, str) and is_postgres_url(db_path) else None
        self._db_path = None if db_path is None or self._db_url else Path(db_path)
        self._tempdir: tempfile.TemporaryDirectory[str] | None = None
        # Validated now: a bad option fails here, not in the server thread. The database is set on
        # each start (a temporary one is made per run).
        self.config = HubConfig(host=host, port=port, **config)
        self.host, self.port = host, port
        self.tokens = self.config.tokens
        self.transport = self.config.transport
        self.startup_timeout = startup_timeout
        self.faults = faults or FaultPlan()
        self.clock = clock
        self._server: HubUvicornServer | None = None
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None
        self._failure: BaseException | None = None
        self.url = ""
        self.app: Starlette | None = None
        """The running hub's Starlette app (``app.state.hub`` is its :class:`~.web.context.HubContext`)."""

    @property
    def db_path(self) -> Path:
        """The SQLite file (for a temporary database: the one of the current run)."""
        if self._db_path is not None:
            return self._db_path
        if self._tempdir is None:
            raise RuntimeError("a temporary database exists only while the HubServer runs")
        return Path(self._tempdir.name) / "hub.sqlite"

    @property
    def context(self) -> HubContext:
        if self.app is None:
            raise RuntimeError("the HubServer is not running")
        context: HubContext = self.app.state.hub
        return context

    def settle(self, timeout: float = 10.0) -> None:
        """Wait until every accepted message is folded into the aggregates (tests query after this)."""
        deadline = time.monotonic() + timeout
        while self.context.store.queue_stats().pending:
            if time.monotonic() > deadline:
                raise TimeoutError(f"messages still pending after {timeout} s")
            time.sleep(0.005)

    def hub_url(self, client_id: str, env: str) -> str:
        return f"{self.url}/v2/{client_id}/{env}"

    def query(self, client_id: str, env: str, resource: str, **params: str | int | None) -> dict[str, Any]:
        """GET ``/api/{client_id}/{env}/{resource}`` (e.g. ``"endpoints"``, ``since="1h"``) as JSON,
        once what was accepted so far is folded."""
        self.settle()
        token = self.tokens[0] if self.tokens else None
        with HubQueryClient(self.url, token=token, verify=self.transport.ssl_certfile or True) as client:
            return client.app(client_id, env, resource, **params)

    def start(self) -> HubServer:
        if self._thread is not None:
            raise RuntimeError("HubServer is already running")
        if self._db_path is None:
            self._tempdir = tempfile.TemporaryDirectory(prefix="apitally-hub-")
        try:
            require_token_off_loopback(self.host, self.tokens)
            config = replace(
                self.config,
                db=self._db_url or self.db_path,
                allowed_hosts=(*self.config.allowed_hosts, self.host),
            )
            app = create_app(config, faults=self.faults, clock=self.clock)
            self._sock = _bind(self.host, self.port)
        except BaseException:
            self.stop()
            raise
        self.url = _url(self._sock, self.transport.scheme)
        self.app = app
        self._server = HubUvicornServer(
            uvicorn_config(self.transport, app, log_config=None, log_level="warning")
        )
        self._failure = None
        self._thread = threading.Thread(target=self._run, name=f"hub-server {self.url}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + self.startup_timeout
        while not self._server.started and self._thread.is_alive() and time.monotonic() < deadline:
            self._thread.join(0.005)
        if not self._server.started:
            failure = self._failure
            self.stop()
            raise RuntimeError(f"the hub did not start within {self.startup_timeout} s: {failure!r}")
        return self

    def _run(self) -> None:
        assert self._server is not None and self._sock is not None
        try:
            self._server.run(sockets=[self._sock])
        except BaseException as exc:  # reported by start(): uvicorn exits with SystemExit on failure
            self._failure = exc

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving and wait for the thread; idempotent."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                _logger.warning("Hub server thread did not stop within %.1f s", timeout)
        if self._sock is not None:
            self._sock.close()
        self._server = self._thread = self._sock = None
        if self._tempdir is not None:
            self._tempdir.cleanup()
            self._tempdir = None

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
