"""The few places where SQLite and PostgreSQL SQL differ, as one value per backend.

Statements in :mod:`..sql` are written with ``?`` placeholders; :meth:`Dialect.sql` turns them
into the driver's style. Everything else (``ON CONFLICT ... DO UPDATE``, ``RETURNING``,
``UNION ALL``, window-free aggregates) is the same in both.
"""

from __future__ import annotations

from dataclasses import dataclass


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
    consumer_index: str = ""
    """Put after ``FROM consumer_traffic`` when the rows of given consumers are read: SQLite's
    planner, without statistics, would rather scan every consumer's rows of the window."""

    def sql(self, text: str) -> str:
        return text if self.placeholder == "?" else text.replace("?", self.placeholder)


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
    consumer_index=" INDEXED BY consumer_traffic_consumer",
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
)
