"""Fixtures for the local hub tests: one real hub per session on 127.0.0.1:0, a fresh app each test."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from hub_samples import settling_client

from apitally_hub import HubServer
from apitally_hub.storage.base import Storage
from apitally_hub.storage.sqlite.store import SQLiteStorage


@pytest.fixture(scope="session")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubServer]:
    with HubServer(tmp_path_factory.mktemp("hub") / "hub.sqlite") as server:
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


BACKENDS = ["sqlite"]
"""Every storage backend the conformance suite runs against."""


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Storage]:
    """A fresh, open store of each backend."""
    storage = SQLiteStorage(tmp_path / "hub.sqlite")
    storage.open()
    try:
        yield storage
    finally:
        storage.close()
