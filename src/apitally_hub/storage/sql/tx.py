"""What the shared SQL code needs of a backend's transaction: ``execute`` and ``executemany``
with ``?`` placeholders (the backend converts them), and a cursor with ``fetchone``,
``fetchall`` and ``rowcount``."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Protocol


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class Tx(Protocol):
    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor: ...

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> Cursor:
        """``rowcount`` of the cursor returned: the rows all the statements changed."""
