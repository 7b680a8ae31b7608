"""CSV downloads of the query API's tables (``?format=csv`` on ``endpoints``, ``validation-errors``,
``server-errors``, ``consumers``, ``consumer-groups`` and ``requests``): the JSON answer's rows, read
page by page from the query layer on a worker thread and streamed, so memory stays bounded
however long the file (the request log: up to :data:`MAX_LOG_ROWS` rows).

Cells are machine-friendly: times as ISO 8601 (UTC), numbers unformatted, lists and objects as
JSON, booleans ``true``/``false``, nothing for null. Text the clients sent may start a formula in a
spreadsheet, so a text cell starting with ``=``, ``+``, ``-``, ``@``, tab or CR gets a ``'`` in front
(OWASP's CSV injection advice).
"""

from __future__ import annotations

import csv
import functools
import io
import json
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from starlette.responses import StreamingResponse

from apitally_hub.storage.records import AppKey
from apitally_hub.web.context import HubContext

CSV_PAGE_ROWS = 1000
"""Rows read from the store per page (the query API's largest ``limit``)."""
MAX_LOG_ROWS = 1_000_000
"""The most rows one request-log download carries (the newest, with the page's filters)."""
MAX_TABLE_ROWS = 100_000
"""The most rows of the other tables (aggregates: far fewer in practice)."""

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_TIME_COLUMNS = frozenset({"timestamp", "first_seen", "last_seen", "first_bucket", "last_bucket"})
_FILENAME_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


@dataclass(frozen=True)
class CsvTable:
    """One downloadable table: its name in the file name, the key of its rows in the JSON answer,
    its columns (keys of each row) and the most rows one download carries."""

    name: str
    rows_key: str
    columns: tuple[str, ...]
    max_rows: int = MAX_TABLE_ROWS


_TRAFFIC = ("requests", "client_errors", "server_errors", "error_rate")
_PERCENTILES = ("p50_ms", "p75_ms", "p95_ms", "p99_ms")

TABLES: dict[str, CsvTable] = {
    "endpoints": CsvTable(
        "endpoints",
        "endpoints",
        (
            "method",
            "path",
            *_TRAFFIC,
            *_PERCENTILES,
            "apdex",
            "apdex_ms",
            "request_bytes",
            "response_bytes",
            "excluded",
        ),
    ),
    "validation-errors": CsvTable(
        "validation-errors",
        "validation_errors",
        ("method", "path", "loc", "msg", "type", "count", "consumers", "first_bucket", "last_bucket"),
    ),
    "server-errors": CsvTable(
        "server-errors",
        "server_errors",
        (
            "id",
            "method",
            "path",
            "type",
            "msg",
            "count",
            "consumers",
            "first_bucket",
            "last_bucket",
            "sentry_event_id",
            "traceback",
        ),
    ),
    "consumers": CsvTable(
        "consumers",
        "consumers",
        (
            "identifier",
            "name",
            "group",
            *_TRAFFIC,
            "request_bytes",
            "response_bytes",
            "first_seen",
            "last_seen",
        ),
    ),
    "consumer-groups": CsvTable("groups", "groups", ("group", "consumers", *_TRAFFIC)),
    "requests": CsvTable(
        "requests",
        "items",
        (
            "timestamp",
            "method",
            "path",
            "url",
            "status_code",
            "response_time_ms",
            "consumer",
            "request_size",
            "response_size",
            "exception_type",
            "uuid",
            "trace_id",
        ),
        max_rows=MAX_LOG_ROWS,
    ),
}
"""The downloadable tables, by the query API route they come from."""


def cell(column: str, value: Any) -> str:
    """One CSV cell: see the module's docstring."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if column in _TIME_COLUMNS and isinstance(value, int | float):
        return datetime.fromtimestamp(value, timezone.utc).isoformat()
    if isinstance(value, int | float):
        return repr(value)
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return "'" + text if text.startswith(_FORMULA_START) else text


def filename(app: AppKey, table: CsvTable, now: float) -> str:
    """``<client id>-<env>-<table>-<date>.csv`` (the date in UTC)."""
    day = datetime.fromtimestamp(now, timezone.utc).strftime("%Y-%m-%d")
    return _FILENAME_UNSAFE.sub("_", f"{app.client_id}-{app.env}-{table.name}-{day}.csv")


PageReader = Callable[[str | None], dict[str, Any]]
"""Reads one page of a table's JSON answer from its cursor (None: the first page)."""


def csv_response(
    context: HubContext,
    table: CsvTable,
    first: dict[str, Any],
    read_page: PageReader,
    *,
    download_name: str,
) -> StreamingResponse:
    """Stream ``table`` as CSV: the header, the rows of ``first`` (the first page, read before so a
    bad parameter is still a 422), then each next page that ``read_page`` returns (each read on a
    worker thread), until a page has no ``next_cursor`` or :attr:`CsvTable.max_rows` are written."""
    return StreamingResponse(
        _rows(context, table, first, read_page),
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="{download_name}"',
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
        },
    )


async def _rows(
    context: HubContext, table: CsvTable, first: dict[str, Any], read_page: PageReader
) -> AsyncIterator[bytes]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(table.columns)
    body: dict[str, Any] | None = first
    cursor: str | None = None
    written = 0
    while written < table.max_rows:
        if body is None:
            body = await context.run(functools.partial(read_page, cursor))
        rows = body.get(table.rows_key) or []
        for row in rows[: table.max_rows - written]:
            writer.writerow([cell(column, row.get(column)) for column in table.columns])
        written += len(rows)
        yield _drain(buffer)
        cursor = body.get("next_cursor")
        if not cursor or not rows:
            break
        body = None


def _drain(buffer: io.StringIO) -> bytes:
    data = buffer.getvalue().encode("utf-8")
    buffer.seek(0)
    buffer.truncate()
    return data
