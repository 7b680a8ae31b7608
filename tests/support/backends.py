"""The storage backends every hub test runs on, and fresh databases of each: a SQLite file in the
test's temporary directory, or a new database on the session's throwaway PostgreSQL cluster
(a copy of a migrated template, so it is ready at once)."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from tests.support.pg_cluster import PostgresCluster

BACKENDS = ["sqlite", "postgres"]
"""Every storage backend the conformance suite (and every hub test) runs against."""

TEMPLATE = "apitally_template"
_names = itertools.count(1)


def template(cluster: PostgresCluster) -> str:
    """The migrated database that new ones copy (made once per cluster)."""
    if not getattr(cluster, "template_ready", False):
        from apitally_hub.storage.postgres.store import PostgresStorage

        store = PostgresStorage(cluster.create_database(TEMPLATE))
        store.open()
        store.close()
        cluster.template_ready = True  # type: ignore[attr-defined]
    return TEMPLATE


def new_postgres_database(cluster: PostgresCluster, *, migrated: bool = True) -> tuple[str, str]:
    """(name, URL) of a new database: migrated (a copy of the template) or empty."""
    name = f"test_{next(_names)}"
    return name, cluster.create_database(name, template=template(cluster) if migrated else None)


def fresh_db(request: pytest.FixtureRequest, backend: str, tmp_path: Path) -> str | Path:
    """A new store location of ``backend``; a PostgreSQL database is dropped after the test."""
    if backend == "sqlite":
        return tmp_path / "hub.sqlite"
    cluster: PostgresCluster = request.getfixturevalue("pg_cluster")
    name, url = new_postgres_database(cluster)
    request.addfinalizer(lambda: cluster.drop_database(name))
    return url
