"""The read side shared by the SQL backends.

A window arrives as :class:`~apitally_hub.storage.records.Segment` pieces (chosen by the query
layer); each piece becomes one index range scan, and the pieces are combined with ``UNION ALL``
before grouping. Histograms are summed in SQL from their JSON bins (``json_each`` /
``jsonb_each_text``), so no row's JSON is parsed in Python.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from typing import Any

from apitally_hub.storage.records import (
    LOG_BODY_SCAN,
    NO_CONSUMER,
    AppInfo,
    AppKey,
    Bins,
    ConsumerChange,
    ConsumerInfo,
    EventQuery,
    InstanceInfo,
    LogQuery,
    LogSummary,
    RejectionRow,
    Segment,
    ServerErrorRow,
    TrafficFilter,
    TrafficQuery,
    TrafficRow,
    ValidationErrorRow,
)
from apitally_hub.storage.sql import consumer_overrides, group_traffic
from apitally_hub.storage.sql.dialect import Dialect
from apitally_hub.storage.sql.tx import Tx


def _filters(flt: TrafficFilter, app: AppKey, *, consumers: bool) -> tuple[str, list[Any]]:
    sql, params = "", list[Any]()
    if flt.method:
        sql += " AND method = ?"
        params.append(flt.method.upper())
    if flt.path:
        sql += " AND path = ?"
        params.append(flt.path)
    if flt.status_code is not None:
        sql += " AND status_code = ?"
        params.append(flt.status_code)
    if flt.status_class is not None:
        sql += " AND status_code >= ? AND status_code < ?"
        params += [flt.status_class * 100, flt.status_class * 100 + 100]
    if flt.excluded:
        sql += f" AND NOT ({' OR '.join(['(method = ? AND path = ?)'] * len(flt.excluded))})"
        params += [part for endpoint in flt.excluded for part in endpoint]
    if consumers and flt.consumer is not None:
        sql += " AND consumer = ?"
        params.append(flt.consumer)
    if consumers and flt.consumers is not None:
        sql += f" AND consumer IN ({', '.join('?' * len(flt.consumers))})" if flt.consumers else " AND 1 = 0"
        params += list(flt.consumers)
    if consumers and flt.identified_only:
        sql += " AND consumer != ?"
        params.append(NO_CONSUMER)
    if consumers and flt.consumer_group is not None:
        sql += (
            " AND consumer IN (SELECT identifier FROM consumers"
            f" WHERE client_id = ? AND env = ? AND {consumer_overrides.GROUP} = ?)"
        )
        params += [app.client_id, app.env, flt.consumer_group]
    return sql, params


def _union(
    table: str,
    columns: str,
    app: AppKey,
    segments: Sequence[Segment],
    where: str,
    params: Sequence[Any],
    *,
    hint: str = "",
) -> tuple[str, list[Any]]:
    """``hint``: the backend's way to name the index to read (see :attr:`Dialect.consumer_index`)."""
    parts, values = [], []
    for segment in segments:
        parts.append(
            f"SELECT {columns} FROM {table}{hint} WHERE client_id = ? AND env = ? AND resolution = ?"
            f" AND bucket >= ? AND bucket <= ?{where}"
        )
        values += [app.client_id, app.env, segment.resolution, segment.start, segment.end, *params]
    if not parts:  # an empty window: a query that returns nothing, with the same columns
        parts.append(f"SELECT {columns} FROM {table} WHERE 1 = 0")
    return " UNION ALL ".join(parts), values


def _dims(query: TrafficQuery) -> tuple[list[str], list[str], list[Any]]:
    """(select expressions, their aliases, params of the expressions)."""
    exprs, aliases, params = [], [], []
    for index, dim in enumerate(query.group_by):
        alias = f"d{index}"
        if dim == "bucket" and query.bucket_seconds:
            exprs.append(f"(s.bucket / ?) * ? AS {alias}")
            params += [query.bucket_seconds, query.bucket_seconds]
        else:
            exprs.append(f"s.{dim} AS {alias}")  # qualified: json_each has a path column
        aliases.append(alias)
    return exprs, aliases, params


def _traffic_table(query: TrafficQuery) -> str:
    """The smallest table that answers ``query``: per app and status (charts and totals of the
    whole app read ~50x fewer rows than per endpoint), per endpoint, or per consumer."""
    flt = query.filter
    if "consumer" in query.group_by or flt.needs_consumers:
        return "consumer_traffic"
    if set(query.group_by) <= {"bucket", "status_code"} and not (flt.method or flt.path or flt.excluded):
        return "app_traffic"
    return "endpoint_traffic"


def _traffic_source(
    query: TrafficQuery, bins_column: str | None, dialect: Dialect | None = None
) -> tuple[str, str, list[Any]]:
    table = _traffic_table(query)
    columns = ["bucket", "status_code", "request_count", "request_size_sum", "response_size_sum"]
    if table != "app_traffic":
        columns += ["method", "path"]
    if table == "consumer_traffic":
        columns.append("consumer")
    if bins_column:
        columns.append(bins_column)
    where, params = _filters(query.filter, query.app, consumers=table == "consumer_traffic")
    # the rows of given consumers: read through the index that starts with the consumer, not every
    # consumer's rows of the window
    flt = query.filter
    by_consumer = table == "consumer_traffic" and (flt.consumer is not None or flt.consumers is not None)
    hint = dialect.consumer_index if by_consumer and dialect is not None else ""
    sql, values = _union(table, ", ".join(columns), query.app, query.segments, where, params, hint=hint)
    return table, sql, values


def _group_traffic(tx: Tx, dialect: Dialect, query: TrafficQuery) -> list[TrafficRow]:
    """Traffic per consumer group: from the groups' own rows when the filter allows; else summed
    per consumer first, then the (fewer) consumer rows are joined with the registry (the groups
    of now) — one lookup per consumer, not per aggregate row."""
    if query.group_by != ("consumer_group",) or query.response_times or query.sizes:
        raise ValueError("consumer_group is grouped alone and without histograms")
    if group_traffic.usable(query.filter):
        return _group_rows(tx, dialect, query)
    per_consumer = TrafficQuery(query.app, query.segments, ("consumer",), query.filter)
    _, source, values = _traffic_source(per_consumer, None, dialect)
    s = dialect.sum
    inner = (
        f"SELECT s.consumer AS consumer, {s}(request_count) AS n,"
        f" {s}(CASE WHEN status_code >= 400 AND status_code < 500 THEN request_count ELSE 0 END) AS c4,"
        f" {s}(CASE WHEN status_code >= 500 THEN request_count ELSE 0 END) AS c5,"
        f" {s}(request_size_sum) AS rq, {s}(response_size_sum) AS rs FROM ({source}) AS s GROUP BY s.consumer"
    )
    group = "COALESCE(g.override_group, g.group_name)"  # the group it has (consumer_overrides.GROUP)
    sql = (
        f"SELECT {group}, {s}(t.n), {s}(t.c4), {s}(t.c5), {s}(t.rq), {s}(t.rs) FROM ({inner}) AS t"
        " JOIN consumers AS g ON g.client_id = ? AND g.env = ? AND g.identifier = t.consumer"
        f" WHERE {group} IS NOT NULL GROUP BY {group} ORDER BY {group}"
    )
    rows = tx.execute(sql, [*values, query.app.client_id, query.app.env]).fetchall()
    return [
        TrafficRow((group,), int(n or 0), int(c4 or 0), int(c5 or 0), int(rq or 0), int(rs or 0), {}, {}, {})
        for group, n, c4, c5, rq, rs in rows
    ]


def _group_rows(tx: Tx, dialect: Dialect, query: TrafficQuery) -> list[TrafficRow]:
    """Per group, from the groups' own rows (``group_traffic``): requests, 4xx, 5xx and bytes."""
    flt = query.filter
    where, params = _filters(
        TrafficFilter(status_class=flt.status_class, status_code=flt.status_code), query.app, consumers=False
    )
    if flt.consumer_group is not None:
        where += " AND group_name = ?"
        params.append(flt.consumer_group)
    columns = "group_name, status_code, request_count, request_size_sum, response_size_sum"
    source, values = _union("group_traffic", columns, query.app, query.segments, where, params)
    s = dialect.sum
    sql = (
        f"SELECT s.group_name, {s}(request_count),"
        f" {s}(CASE WHEN status_code >= 400 AND status_code < 500 THEN request_count ELSE 0 END),"
        f" {s}(CASE WHEN status_code >= 500 THEN request_count ELSE 0 END),"
        f" {s}(request_size_sum), {s}(response_size_sum)"
        f" FROM ({source}) AS s GROUP BY s.group_name ORDER BY s.group_name"
    )
    return [
        TrafficRow(
            (str(group),), int(n or 0), int(c4 or 0), int(c5 or 0), int(rq or 0), int(rs or 0), {}, {}, {}
        )
        for group, n, c4, c5, rq, rs in tx.execute(sql, values).fetchall()
    ]


def traffic(tx: Tx, dialect: Dialect, query: TrafficQuery) -> list[TrafficRow]:
    if "consumer_group" in query.group_by:
        return _group_traffic(tx, dialect, query)
    _, source, values = _traffic_source(query, None, dialect)
    dims, aliases, dim_params = _dims(query)
    s = dialect.sum
    select = [
        *dims,
        f"{s}(request_count) AS n",
        f"{s}(CASE WHEN status_code >= 400 AND status_code < 500 THEN request_count ELSE 0 END)",
        f"{s}(CASE WHEN status_code >= 500 THEN request_count ELSE 0 END)",
        f"{s}(request_size_sum)",
        f"{s}(response_size_sum)",
    ]
    group = f" GROUP BY {', '.join(aliases)}" if aliases else ""
    order_by = (["n DESC"] if query.order == "requests" else []) + aliases
    order = f" ORDER BY {', '.join(order_by)}" if order_by else ""
    limit, limit_params = "", []
    if query.limit is not None:
        limit, limit_params = " LIMIT ? OFFSET ?", [query.limit, query.offset]
    sql = f"SELECT {', '.join(select)} FROM ({source}) AS s{group}{order}{limit}"
    rows = tx.execute(sql, [*dim_params, *values, *limit_params]).fetchall()
    n = len(aliases)
    keyed = [(tuple(row[:n]), row[n:]) for row in rows]
    if not aliases and keyed and keyed[0][1][0] is None:  # no rows at all: zeros, not NULLs
        keyed = [((), (0, 0, 0, 0, 0))]
    bins: dict[str, dict[tuple[Any, ...], Bins]] = {}
    wanted = ["response_times"] * query.response_times + ["request_sizes", "response_sizes"] * query.sizes
    keys = {key for key, _ in keyed}
    for column in wanted:
        bins[column] = {k: v for k, v in _bins(tx, dialect, query, column).items() if k in keys}
    return [
        TrafficRow(
            key,
            int(counts[0] or 0),
            int(counts[1] or 0),
            int(counts[2] or 0),
            int(counts[3] or 0),
            int(counts[4] or 0),
            bins.get("response_times", {}).get(key, {}),
            bins.get("request_sizes", {}).get(key, {}),
            bins.get("response_sizes", {}).get(key, {}),
        )
        for key, counts in keyed
    ]


def _bins(tx: Tx, dialect: Dialect, query: TrafficQuery, column: str) -> dict[tuple[Any, ...], Bins]:
    _, source, values = _traffic_source(query, column, dialect)
    dims, aliases, dim_params = _dims(query)
    if dialect.bins_aggregate:
        return _summed_bins(tx, dialect, source, [*dim_params, *values], dims, aliases, column)
    join = dialect.bins_join.format(col=f"s.{column}")
    sql = (
        f"SELECT {', '.join([*dims, 'j.key AS bin', f'{dialect.sum}({dialect.bins_value})'])}"
        f" FROM ({source}) AS s{join} GROUP BY {', '.join([*aliases, 'bin'])}"
    )
    result: dict[tuple[Any, ...], Bins] = {}
    n = len(aliases)
    for row in tx.execute(sql, [*dim_params, *values]).fetchall():
        count = int(row[n + 1] or 0)
        if count:
            result.setdefault(tuple(row[:n]), {})[int(row[n])] = count
    return result


def _summed_bins(
    tx: Tx,
    dialect: Dialect,
    source: str,
    params: list[Any],
    dims: list[str],
    aliases: list[str],
    column: str,
) -> dict[tuple[Any, ...], Bins]:
    group = f" GROUP BY {', '.join(aliases)}" if aliases else ""
    sql = f"SELECT {', '.join([*dims, f'{dialect.bins_aggregate}(s.{column})'])} FROM ({source}) AS s{group}"
    result: dict[tuple[Any, ...], Bins] = {}
    n = len(aliases)
    for row in tx.execute(sql, params).fetchall():
        bins = {int(key): int(count) for key, count in json.loads(row[n] or "{}").items() if count}
        if bins:
            result[tuple(row[:n])] = bins
    return result


def count_traffic_groups(tx: Tx, dialect: Dialect, query: TrafficQuery) -> int:
    _, source, values = _traffic_source(query, None, dialect)
    dims, aliases, dim_params = _dims(query)
    if not dims:
        return 1
    # the sum keeps the plan on the window's key range: without it SQLite may count groups by
    # scanning the whole of an index that covers the grouped columns (every bucket ever stored)
    sql = (
        f"SELECT COUNT(*) FROM (SELECT {', '.join(dims)}, {dialect.sum}(request_count) AS n"
        f" FROM ({source}) AS s GROUP BY {', '.join(aliases)}) AS g"
    )
    return int(tx.execute(sql, [*dim_params, *values]).fetchone()[0])


def _event_filters(query: EventQuery) -> tuple[str, list[Any]]:
    flt = TrafficFilter(
        method=query.filter.method,
        path=query.filter.path,
        consumer=query.filter.consumer,
        consumer_group=query.filter.consumer_group,
        excluded=query.filter.excluded,
    )
    return _filters(flt, query.app, consumers=True)


def validation_errors(tx: Tx, dialect: Dialect, query: EventQuery) -> tuple[list[ValidationErrorRow], int]:
    where, params = _event_filters(query)
    source, values = _union(
        "validation_errors",
        "bucket, consumer, method, path, loc, msg, type, error_count",
        query.app,
        query.segments,
        where,
        params,
    )
    grouped = (
        f"SELECT method, path, loc, msg, type, {dialect.sum}(error_count) AS n,"
        " COUNT(DISTINCT nullif(consumer, ?)) AS consumers, MIN(bucket) AS first_bucket,"
        f" MAX(bucket) AS last_bucket FROM ({source}) AS s GROUP BY method, path, loc, msg, type"
    )
    rows = tx.execute(
        f"SELECT * FROM ({grouped}) AS g ORDER BY n DESC, path, method, loc, msg, type LIMIT ? OFFSET ?",
        [NO_CONSUMER, *values, query.limit, query.offset],
    ).fetchall()
    total = tx.execute(f"SELECT COUNT(*) FROM ({grouped}) AS g", [NO_CONSUMER, *values]).fetchone()[0]
    return [
        ValidationErrorRow(m, p, loc, msg, t, int(n), int(c), int(first), int(last))
        for m, p, loc, msg, t, n, c, first, last in rows
    ], int(total)


def server_errors(tx: Tx, dialect: Dialect, query: EventQuery) -> tuple[list[ServerErrorRow], int]:
    flt = query.filter
    group_where, group_params = "", []
    if flt.method:
        group_where += " AND g.method = ?"
        group_params.append(flt.method.upper())
    if flt.path:
        group_where += " AND g.path = ?"
        group_params.append(flt.path)
    if flt.excluded:
        group_where += f" AND NOT ({' OR '.join(['(g.method = ? AND g.path = ?)'] * len(flt.excluded))})"
        group_params += [part for endpoint in flt.excluded for part in endpoint]
    where, params = _filters(
        TrafficFilter(consumer=flt.consumer, consumer_group=flt.consumer_group), query.app, consumers=True
    )
    source, values = _union(
        "server_errors", "bucket, error_hash, consumer, error_count", query.app, query.segments, where, params
    )
    counted = (
        f"SELECT error_hash, {dialect.sum}(error_count) AS n,"
        " COUNT(DISTINCT nullif(consumer, ?)) AS consumers,"
        f" MIN(bucket) AS first_bucket, MAX(bucket) AS last_bucket FROM ({source}) AS s GROUP BY error_hash"
    )
    joined = (
        f"FROM ({counted}) AS e JOIN server_error_groups AS g ON g.client_id = ? AND g.env = ?"
        f" AND g.error_hash = e.error_hash{group_where}"
    )
    base = [NO_CONSUMER, *values, query.app.client_id, query.app.env, *group_params]
    rows = tx.execute(
        "SELECT e.error_hash, g.method, g.path, g.type, g.msg, g.traceback, g.sentry_event_id, e.n,"
        f" e.consumers, e.first_bucket, e.last_bucket {joined}"
        " ORDER BY e.n DESC, g.path, g.method, g.type, e.error_hash LIMIT ? OFFSET ?",
        [*base, query.limit, query.offset],
    ).fetchall()
    total = tx.execute(f"SELECT COUNT(*) {joined}", base).fetchone()[0]
    return [
        ServerErrorRow(h, m, p, t, msg, tb, sentry, int(n), int(c), int(first), int(last))
        for h, m, p, t, msg, tb, sentry, n, c, first, last in rows
    ], int(total)


def heartbeats(tx: Tx, app: AppKey, since: int, until: int) -> list[tuple[int, int]]:
    rows = tx.execute(
        "SELECT minute, syncs FROM heartbeats WHERE client_id = ? AND env = ? AND minute >= ? AND minute <= ?"
        " ORDER BY minute",
        (app.client_id, app.env, since, until),
    ).fetchall()
    return [(int(minute), int(syncs)) for minute, syncs in rows]


def list_apps(tx: Tx) -> list[AppInfo]:
    rows = tx.execute(
        "SELECT client_id, env, COUNT(*), MIN(first_seen), MAX(last_seen), MAX(last_sync_at) FROM instances"
        " GROUP BY client_id, env ORDER BY client_id, env"
    ).fetchall()
    return [AppInfo(AppKey(c, e), int(n), first, last, sync) for c, e, n, first, last, sync in rows]


def instances(tx: Tx, app: AppKey) -> list[InstanceInfo]:
    rows = tx.execute(
        "SELECT instance_uuid, first_seen, last_seen, startup_at, last_sync_at, last_sync_ts, sync_interval,"
        " syncs, client, versions, paths, openapi, cpu_percent, memory_rss FROM instances"
        " WHERE client_id = ? AND env = ? ORDER BY last_seen DESC, instance_uuid",
        (app.client_id, app.env),
    ).fetchall()
    return [
        InstanceInfo(
            instance_uuid=uuid,
            first_seen=first,
            last_seen=last,
            startup_at=startup,
            last_sync_at=sync_at,
            last_sync_ts=sync_ts,
            sync_interval=interval,
            syncs=int(syncs),
            client=client,
            versions=json.loads(versions) if versions else {},
            paths=json.loads(paths) if paths else [],
            openapi=openapi,
            cpu_percent=cpu,
            memory_rss=memory,
        )
        for (
            uuid,
            first,
            last,
            startup,
            sync_at,
            sync_ts,
            interval,
            syncs,
            client,
            versions,
            paths,
            openapi,
            cpu,
            memory,
        ) in rows
    ]


def consumers_info(tx: Tx, app: AppKey, identifiers: Sequence[str]) -> dict[str, ConsumerInfo]:
    result: dict[str, ConsumerInfo] = {}
    for start in range(0, len(identifiers), 500):
        chunk = list(identifiers[start : start + 500])
        marks = ", ".join("?" * len(chunk))
        for row in tx.execute(
            f"SELECT {consumer_overrides.INFO_COLUMNS} FROM consumers"
            f" WHERE client_id = ? AND env = ? AND identifier IN ({marks})",
            (app.client_id, app.env, *chunk),
        ).fetchall():
            info = consumer_overrides.info(tuple(row))
            result[info.identifier] = info
    return result


def recent_consumers(
    tx: Tx, app: AppKey, seen_since: float, group: str | None, limit: int, offset: int
) -> tuple[list[ConsumerInfo], int]:
    where = "client_id = ? AND env = ? AND last_seen >= ?"
    params: list[Any] = [app.client_id, app.env, seen_since]
    if group is not None:
        where += f" AND {consumer_overrides.GROUP} = ?"
        params.append(group)
    rows = tx.execute(
        f"SELECT {consumer_overrides.INFO_COLUMNS} FROM consumers WHERE {where}"
        " ORDER BY last_seen DESC, identifier LIMIT ? OFFSET ?",
        [*params, limit, offset],
    ).fetchall()
    total = tx.execute(f"SELECT COUNT(*) FROM consumers WHERE {where}", params).fetchone()[0]
    return [consumer_overrides.info(tuple(row)) for row in rows], int(total)


def consumer_groups(tx: Tx, app: AppKey) -> list[tuple[str, int]]:
    rows = tx.execute(
        f"SELECT {consumer_overrides.GROUP} AS g, COUNT(*) FROM consumers"
        f" WHERE client_id = ? AND env = ? AND {consumer_overrides.GROUP} IS NOT NULL"
        f" GROUP BY {consumer_overrides.GROUP} ORDER BY g",
        (app.client_id, app.env),
    ).fetchall()
    return [(group, int(n)) for group, n in rows]


def consumer_history(tx: Tx, app: AppKey, identifiers: Sequence[str]) -> list[ConsumerChange]:
    result: list[ConsumerChange] = []
    for start in range(0, len(identifiers), 500):
        chunk = list(identifiers[start : start + 500])
        marks = ", ".join("?" * len(chunk))
        rows = tx.execute(
            "SELECT identifier, name, group_name, changed_at FROM consumer_history"
            f" WHERE client_id = ? AND env = ? AND identifier IN ({marks}) ORDER BY changed_at, id",
            (app.client_id, app.env, *chunk),
        ).fetchall()
        result += [ConsumerChange(i, n, g, at) for i, n, g, at in rows]
    return result


_LOG_COLUMNS = (
    "id, request_uuid, timestamp, method, path, url, status_code, response_time, consumer, request_size,"
    " response_size, trace_id, exception_type"
)


def _log_summary(row: Sequence[Any]) -> LogSummary:
    return LogSummary(int(row[0]), *row[1:])


def request_log(tx: Tx, dialect: Dialect, query: LogQuery) -> tuple[list[LogSummary], int]:
    where = ["client_id = ?", "env = ?", "timestamp >= ?", "timestamp <= ?"]
    params: list[Any] = [query.app.client_id, query.app.env, query.since, query.until]
    for column, value in (
        ("method", query.method and query.method.upper()),
        ("path", query.path),
        ("status_code", query.status_code),
        ("consumer", query.consumer),
        ("client_ip", query.client_ip),
    ):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    if query.status_class is not None:
        where.append("status_code >= ? AND status_code < ?")
        params += [query.status_class * 100, query.status_class * 100 + 100]
    if query.search:
        where.append("lower(url) LIKE ? ESCAPE '\\'")
        escaped = query.search.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        params.append(f"%{escaped}%")
    if query.min_response_time is not None:
        where.append("response_time >= ?")
        params.append(query.min_response_time)
    if query.max_response_time is not None:
        where.append("response_time <= ?")
        params.append(query.max_response_time)
    for column, op, bound in (
        ("request_size", ">=", query.min_request_size),
        ("request_size", "<=", query.max_request_size),
        ("response_size", ">=", query.min_response_size),
        ("response_size", "<=", query.max_response_size),
    ):
        if bound is not None:
            where.append(f"{column} {op} ?")
            params.append(bound)
    condition = " AND ".join(where)
    if query.request_body or query.response_body:
        return _request_log_by_body(tx, query, condition, params)
    if query.attribute is not None:
        return _request_log_by_attribute(tx, dialect, query, condition, params)
    total = -1
    if query.count:
        total = int(tx.execute(f"SELECT COUNT(*) FROM request_log WHERE {condition}", params).fetchone()[0])
    page_where, page_params = condition, list(params)
    if query.before is not None:
        page_where += " AND (timestamp < ? OR (timestamp = ? AND id < ?))"
        page_params += [query.before[0], query.before[0], query.before[1]]
    rows = tx.execute(
        f"SELECT {_LOG_COLUMNS} FROM request_log WHERE {page_where} ORDER BY timestamp DESC, id DESC LIMIT ?",
        [*page_params, query.limit],
    ).fetchall()
    return [_log_summary(row) for row in rows], total


_ATTRIBUTE_VALUE = {
    "sqlite": "json_extract(item, ?)",
    "postgresql": "(item::jsonb -> 'request' -> 'attributes' ->> CAST(? AS text))",
}
"""A custom attribute's value in the stored line's JSON (``request.attributes``), given its key
(:func:`_attribute_arg`)."""


def _attribute_arg(dialect: Dialect, key: str) -> str:
    """The parameter of :data:`_ATTRIBUTE_VALUE` for ``key`` (validated: ``[A-Za-z0-9_.-]``, so a
    quoted SQLite JSON path label holds it as it is)."""
    return f'$.request.attributes."{key}"' if dialect.name == "sqlite" else key


def _request_log_by_attribute(
    tx: Tx, dialect: Dialect, query: LogQuery, condition: str, params: list[Any]
) -> tuple[list[LogSummary], int]:
    """The request log filtered by a custom attribute (exact value): among the newest
    :data:`LOG_BODY_SCAN` items matching the other filters, like a body search (the attributes
    are read from each item's JSON, where no index reaches them); ``total`` counts the matches
    among them."""
    assert query.attribute is not None
    key, value = query.attribute
    newest = f"FROM request_log WHERE {condition} ORDER BY timestamp DESC, id DESC LIMIT ?"
    match = f"{_ATTRIBUTE_VALUE[dialect.name]} = ?"
    args = [*params, LOG_BODY_SCAN, _attribute_arg(dialect, key), value]
    total = -1
    if query.count:
        total = int(
            tx.execute(
                f"SELECT COUNT(*) FROM (SELECT item {newest}) AS scanned WHERE {match}", args
            ).fetchone()[0]
        )
    page_where, page_args = match, list(args)
    if query.before is not None:
        page_where += " AND (timestamp < ? OR (timestamp = ? AND id < ?))"
        page_args += [query.before[0], query.before[0], query.before[1]]
    rows = tx.execute(
        f"SELECT {_LOG_COLUMNS} FROM (SELECT {_LOG_COLUMNS}, item {newest}) AS scanned"
        f" WHERE {page_where} ORDER BY timestamp DESC, id DESC LIMIT ?",
        [*page_args, query.limit],
    ).fetchall()
    return [_log_summary(row) for row in rows], total


_BODY_BATCH = 250
"""Items read at once by a body search (their bodies may be large: memory stays bounded)."""


def _request_log_by_body(
    tx: Tx, query: LogQuery, condition: str, params: list[Any]
) -> tuple[list[LogSummary], int]:
    """The request log filtered by body text: the newest :data:`LOG_BODY_SCAN` items matching
    the other filters, read in batches, each item's bodies decoded and searched (and its custom
    attribute compared, when the query has one); ``total`` counts the matches among them."""
    matches: list[tuple[float, int]] = []
    last: tuple[float, int] | None = None
    scanned = 0
    while scanned < LOG_BODY_SCAN:
        extra, extra_params = "", []
        if last is not None:
            extra = " AND (timestamp < ? OR (timestamp = ? AND id < ?))"
            extra_params = [last[0], last[0], last[1]]
        batch = tx.execute(
            f"SELECT id, timestamp, item FROM request_log WHERE {condition}{extra}"
            " ORDER BY timestamp DESC, id DESC LIMIT ?",
            [*params, *extra_params, min(_BODY_BATCH, LOG_BODY_SCAN - scanned)],
        ).fetchall()
        for row_id, timestamp, item in batch:
            if _item_matches(item, query):
                matches.append((float(timestamp), int(row_id)))
        scanned += len(batch)
        if len(batch) < _BODY_BATCH:
            break
        last = (float(batch[-1][1]), int(batch[-1][0]))
    total = len(matches) if query.count else -1
    if query.before is not None:
        matches = [m for m in matches if m < query.before]
    ids = [row_id for _, row_id in matches[: query.limit]]
    if not ids:
        return [], total
    marks = ", ".join("?" for _ in ids)
    rows = tx.execute(
        f"SELECT {_LOG_COLUMNS} FROM request_log WHERE id IN ({marks}) ORDER BY timestamp DESC, id DESC", ids
    ).fetchall()
    return [_log_summary(row) for row in rows], total


def _item_matches(item: str, query: LogQuery) -> bool:
    """Whether a stored line has the query's body texts and its custom attribute (when given)."""
    try:
        line = json.loads(item)
    except ValueError:  # stored items were validated at ingest; a damaged one matches nothing
        return False
    for part, text in (("request", query.request_body), ("response", query.response_body)):
        if text and text.lower() not in _body_text(line.get(part)):
            return False
    if query.attribute is not None:
        key, value = query.attribute
        request = line.get("request")
        attributes = request.get("attributes") if isinstance(request, dict) else None
        if not isinstance(attributes, dict) or attributes.get(key) != value:
            return False
    return True


def _body_text(part: object) -> str:
    """A request's or response's body as lower-case text ('' without one)."""
    if not isinstance(part, dict) or not isinstance(part.get("body"), str):
        return ""
    try:
        body = base64.b64decode(part["body"], validate=False)
    except ValueError:
        return ""
    return body.decode("utf-8", errors="replace").lower()


def request_log_item(tx: Tx, app: AppKey, request_uuid: str) -> tuple[LogSummary, str, str] | None:
    row = tx.execute(
        f"SELECT {_LOG_COLUMNS}, file_uuid, item FROM request_log"
        " WHERE client_id = ? AND env = ? AND request_uuid = ?",
        (app.client_id, app.env, request_uuid),
    ).fetchone()
    if row is None:
        return None
    return _log_summary(row[:-2]), row[-2], row[-1]


def rejections(
    tx: Tx, app: AppKey, since: float, until: float, limit: int, before: tuple[float, int] | None
) -> list[RejectionRow]:
    extra, params = "", []
    if before is not None:
        extra, params = (
            " AND (received_at < ? OR (received_at = ? AND id < ?))",
            [before[0], before[0], before[1]],
        )
    rows = tx.execute(
        "SELECT id, received_at, endpoint, status_code, detail FROM rejections"
        f" WHERE client_id = ? AND env = ? AND received_at >= ? AND received_at <= ?{extra}"
        " ORDER BY received_at DESC, id DESC LIMIT ?",
        (app.client_id, app.env, since, until, *params, limit),
    ).fetchall()
    return [
        RejectionRow(int(i), at, endpoint, int(status), detail) for i, at, endpoint, status, detail in rows
    ]
