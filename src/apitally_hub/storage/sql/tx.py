"""What the shared SQL code needs of a backend: a transaction (:class:`Tx`) with ``execute``
and ``executemany`` taking ``?`` placeholders (the backend converts them), and a cursor with
``fetchone``, ``fetchall`` and ``rowcount``; and a way to run a function in a write or a
read-only transaction (:class:`Transactions`)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol, TypeVar

from apitally_hub.storage.sql.dialect import Dialect

T = TypeVar("T")


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class Tx(Protocol):
    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor: ...

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> Cursor:
        """``rowcount`` of the cursor returned: the rows all the statements changed."""


class Transactions(Protocol):
    """A SQL backend as the shared code runs statements on it (:class:`~.store.SQLStorage`)."""

    @property
    def dialect(self) -> Dialect: ...

    def write(self, work: Callable[[Tx], T]) -> T:
        """Run ``work`` in one write transaction: committed on return, rolled back on error."""

    def read(self, work: Callable[[Tx], T]) -> T:
        """Run ``work`` in one read-only transaction (a consistent snapshot)."""
