"""Where the hub keeps its data: :class:`~.base.Storage` is the one interface (its records in
:mod:`.records`), and :func:`create_storage` picks the backend from ``--db`` — a
``postgresql://`` (or ``postgres://``) URL, else a SQLite file path (:mod:`.urls`). Backends are
imported only when chosen, so SQLite users need no PostgreSQL driver."""

from __future__ import annotations

from pathlib import Path

from apitally_hub.storage.base import Storage
from apitally_hub.storage.urls import is_postgres_url


def create_storage(db: str | Path) -> Storage:
    """The backend for ``db`` (not opened yet)."""
    if is_postgres_url(db):
        try:
            from apitally_hub.storage.postgres.store import PostgresStorage
        except ImportError as exc:
            raise RuntimeError(
                f"a PostgreSQL --db needs the postgres extra ({exc.name} is missing):"
                " pip install 'apitally-otel[hub,postgres]'"
            ) from exc
        storage: Storage = PostgresStorage(str(db))
        return storage
    from apitally_hub.storage.sqlite.store import SQLiteStorage

    return SQLiteStorage(Path(db))
