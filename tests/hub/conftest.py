"""Fixtures for the local hub tests: one real hub per session on 127.0.0.1:0, a fresh app each test."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from apitally_hub import HubServer
from apitally_hub.storage import create_storage
from apitally_hub.storage.base import Storage
from tests.support.backends import BACKENDS, fresh_db, new_postgres_database
from tests.support.hub_samples import settling_client

__all__ = ["BACKENDS"]


@pytest.fixture(scope="session", params=BACKENDS)
def hub(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubServer]:
    """One hub per backend for the session (every test using it runs on each backend)."""
    db: str | Path = tmp_path_factory.mktemp("hub") / "hub.sqlite"
    if request.param == "postgres":
        db = new_postgres_database(request.getfixturevalue("pg_cluster"))[1]
    with HubServer(db) as server:
        yield server


@pytest.fixture(scope="session")
def http(hub: HubServer) -> Iterator[httpx.Client]:
    with settling_client(hub) as client:
        yield client


@pytest.fixture
def client_id() -> str:
    """A fresh client id, so each test sees only its own data in the shared hub."""
    return str(uuid.uuid4())


@pytest.fixture
def app_path(client_id: str) -> str:
    return f"/v2/{client_id}/dev"


@pytest.fixture
def db_file(tmp_path: Path) -> Path:
    return tmp_path / "hub.sqlite"


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Storage]:
    """A fresh, open store of each backend."""
    storage = create_storage(fresh_db(request, request.param, tmp_path))
    storage.open()
    try:
        yield storage
    finally:
        storage.close()
