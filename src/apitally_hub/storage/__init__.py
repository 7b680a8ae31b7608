"""Where the hub keeps its data: :class:`~.base.Storage` is the one interface, and
:func:`open_storage` picks the backend from ``--db`` — a ``postgresql://`` (or ``postgres://``)
URL, else a SQLite file path. Backends are imported only when chosen, so SQLite users need no
PostgreSQL driver."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from apitally_hub.storage.base import Storage

POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def is_postgres_url(db: str | Path) -> bool:
    return isinstance(db, str) and db.startswith(POSTGRES_SCHEMES)


def redact_url(url: str) -> str:
    """``url`` without its password (for messages and logs)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


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
