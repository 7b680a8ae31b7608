"""Fixtures every test may use: a private temp dir, a clean environment, a recording hub, a stalled
DNS, a throwaway PostgreSQL cluster and a fresh store of each backend."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import HealthCheck, settings

from tests.support.backends import BACKENDS, fresh_db
from tests.support.hostile_hubs import StalledDns
from tests.support.pg_cluster import PostgresCluster
from tests.support.servers import RecordingHub, ServerThread

settings.register_profile("default", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("default")


@pytest.fixture(autouse=True, scope="session")
def private_tempdir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Instance lock files and other temp files of this run (and its subprocesses) stay in it."""
    import tempfile

    path = str(tmp_path_factory.mktemp("tmp"))
    previous = tempfile.tempdir
    tempfile.tempdir = path
    os.environ["TMPDIR"] = path
    yield
    tempfile.tempdir = previous


@pytest.fixture(autouse=True)
def clean_env() -> Iterator[None]:
    """No APITALLY_* / OTEL_* settings leak in from the machine or between tests."""
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("APITALLY_", "OTEL_"))}
    with mock.patch.dict(os.environ, keep, clear=True):
        yield


@pytest.fixture
def recording_hub() -> Iterator[tuple[RecordingHub, str]]:
    hub = RecordingHub()
    with ServerThread(hub.app()) as url:
        yield hub, url


@pytest.fixture
def stalled_dns(monkeypatch: pytest.MonkeyPatch) -> Iterator[StalledDns]:
    """Name lookups under ``.test`` hang until ``stalled_dns.answering`` is set (see StalledDns)."""
    import threading
    import time

    dns = StalledDns()
    monkeypatch.setattr(socket, "getaddrinfo", dns)
    yield dns
    dns.answering.set()
    deadline = time.monotonic() + 10  # the lookup threads it held end with the test
    while (
        any(t.name == "apitally-otel-resolve" for t in threading.enumerate()) and time.monotonic() < deadline
    ):
        time.sleep(0.01)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PostgresCluster]:
    """A throwaway PostgreSQL server for the session (started on first use, removed at the end)."""
    with PostgresCluster() as cluster:
        yield cluster


@pytest.fixture(params=BACKENDS)
def hub_db(request: pytest.FixtureRequest, tmp_path: Path) -> str | Path:
    """A fresh, empty store location of each backend: a SQLite file or a PostgreSQL URL."""
    return fresh_db(request, request.param, tmp_path)
