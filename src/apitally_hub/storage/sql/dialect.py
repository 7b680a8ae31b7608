"""The few places where SQLite and PostgreSQL SQL differ, as one value per backend.

Statements in :mod:`..sql` are written with ``?`` placeholders; :meth:`Dialect.sql` turns them
into the driver's style. Everything else (``ON CONFLICT ... DO UPDATE``, ``RETURNING``,
``UNION ALL``, window-free aggregates) is the same in both.

Portable DDL (tables that shared SQL owns, created by each backend's migrations) names its column
types through :meth:`Dialect.ddl`: ``{id}`` (an auto-increment primary key), ``{int}`` (64-bit),
``{float}`` (double precision), ``{blob}`` and ``{json}``; everything else is written as is.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field


@functools.lru_cache(maxsize=1024)
def _pyformat(text: str) -> str:
    # a literal % must be doubled once the driver expands %s placeholders
    return text.replace("%", "%%").replace("?", "%s")


@dataclass(frozen=True)
class Dialect:
    name: str
    placeholder: str
    greatest: str
    least: str
    sum: str
    """An aggregate that never overflows: SQLite's ``TOTAL`` (a float), PostgreSQL's ``SUM``
    (``numeric`` for ``bigint`` input)."""
    bins_join: str
    """Joins the key/value pairs of a JSON histogram column ``{col}`` as ``j(key, value)``."""
    bins_value: str
    lock_rows: str
    """Appended to a claim's ``SELECT`` so concurrent workers skip each other's rows."""
    insert_ignore: str
    """``INSERT`` that skips rows conflicting with a unique key (with ``ON CONFLICT DO NOTHING``)."""
    for_update: str
    """Appended to a ``SELECT`` whose rows the transaction goes on to update (a SQLite write
    transaction has the whole database already)."""
    types: dict[str, str] = field(default_factory=dict)
    """Column types for :meth:`ddl`."""
    bins_aggregate: str = ""
    """An aggregate function that sums JSON histograms row by row into one (``{"<edge>": n}``
    text), used instead of ``bins_join`` when set: SQLite sorts every (group, bin) pair of the
    join to group them — 1.1 M pairs took 1.7 s — where summing each row's bins takes 0.4 s."""
    consumer_index: str = ""
    """Put after ``FROM consumer_traffic`` when the rows of given consumers are read: SQLite's
    planner, without statistics, would rather scan every consumer's rows of the window."""

    def sql(self, text: str) -> str:
        """``text`` with the driver's placeholders (the ``?`` of the shared SQL)."""
        return text if self.placeholder == "?" else _pyformat(text)

    def ddl(self, template: str) -> str:
        """Portable DDL for this backend: ``{id}``, ``{int}``, ``{float}``, ``{blob}``, ``{json}``,
        and ``{keyed}`` after a table stored in its primary key's order (SQLite's ``WITHOUT ROWID``)."""
        return template.format(**self.types)


SQLITE = Dialect(
    name="sqlite",
    placeholder="?",
    greatest="max",
    least="min",
    sum="TOTAL",
    bins_join=", json_each({col}) AS j",
    bins_value="j.value",
    lock_rows="",
    insert_ignore="INSERT",
    bins_aggregate="sum_bins",
    consumer_index=" INDEXED BY consumer_traffic_consumer",
    for_update="",
    types={
        "id": "INTEGER PRIMARY KEY",
        "int": "INTEGER",
        "float": "REAL",
        "blob": "BLOB",
        "json": "TEXT",
        "keyed": " WITHOUT ROWID",
    },
)

POSTGRES = Dialect(
    name="postgresql",
    placeholder="%s",
    greatest="GREATEST",
    least="LEAST",
    sum="SUM",
    bins_join=" CROSS JOIN LATERAL jsonb_each_text({col}) AS j",
    bins_value="j.value::bigint",
    lock_rows=" FOR UPDATE SKIP LOCKED",
    insert_ignore="INSERT",
    for_update=" FOR UPDATE",
    types={
        "id": "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
        "int": "BIGINT",
        "float": "DOUBLE PRECISION",
        "blob": "BYTEA",
        "json": "JSONB",
        "keyed": "",
    },
)
