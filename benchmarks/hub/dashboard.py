"""Server time of every dashboard page: on the demo's data and on a 30-day dataset.

Targets (issue 14): each page ≤ 200 ms on the demo's data, ≤ 1 s on the 30-day dataset.

**Demo data**: the demo app (``apitally-otel demo``'s, under uvicorn, request logging on) with
its simulated traffic for 20 s into a fresh hub, then every page at its default range.

**30-day dataset** (the storage issue's): one busy app with 1 000 active series per minute
(consumer x endpoint x status) for 30 days — 900 from 300 steady consumers, 100 from a long tail
that cycles through 150 000 consumers (each seen about once a day) — plus 13 months of hourly
and daily rollups (the steady series and 100 tail series an hour), validation and server errors,
heartbeats of 3 instances, and 200 000 request-log items over 15 days. It is generated straight
into the store through :meth:`Storage.apply` (what folding writes), once, and cached in
``benchmarks/.cache/`` (the hub then runs on the generation's clock, so nothing ages out).
Every page is timed at the ranges 1 h, 24 h and 30 d (and 13 months where it reads rollups).

The time is the page's ``Server-Timing`` (its data from the query layer and the template
rendered, in the hub); pages are requested round-robin, a warm-up round first, and the median
over the rounds is reported with the slowest round::

    python -m benchmarks.hub.dashboard [--quick] [--rounds 5] [--regenerate]
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
import uuid
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from apitally_hub import HubServer
from apitally_hub.storage.records import (
    DAY,
    HOUR,
    MINUTE,
    AppDelta,
    AppKey,
    ConsumerNamed,
    ConsumerSeen,
    Counts,
    Heartbeat,
    LogRow,
    ServerErrorGroup,
    Startup,
    error_group_hash,
)
from apitally_hub.storage.sql.writes import bins_json
from apitally_hub.storage.sqlite.schema import SCHEMA_VERSION
from apitally_hub.storage.sqlite.store import SQLiteStorage
from benchmarks import common

CACHE_DIR = common.BENCH_DIR / ".cache"
TARGET_DEMO_MS = 200.0
TARGET_DATASET_MS = 1000.0
RANGES = ("1h", "24h", "30d")
ROLLUP_PAGES = ("traffic", "endpoints", "errors", "consumers", "groups")
"""Pages also timed at 13 months (they read the hourly and daily rollups)."""


@dataclass(frozen=True)
class Spec:
    days: int = 30
    series_per_minute: int = 1000
    steady_consumers: int = 300
    steady_series_per_consumer: int = 3
    consumers: int = 150_000
    endpoints: int = 50
    rollup_days: int = 395
    log_items: int = 200_000
    log_days: int = 15

    @property
    def tail_per_minute(self) -> int:
        return self.series_per_minute - self.steady_consumers * self.steady_series_per_consumer

    def key(self) -> str:
        return "-".join(f"{v}" for v in asdict(self).values())


QUICK = Spec(
    days=1,
    series_per_minute=60,
    steady_consumers=15,
    steady_series_per_consumer=3,
    consumers=2_000,
    endpoints=10,
    rollup_days=3,
    log_items=2_000,
    log_days=1,
)

APP = AppKey("0b7f1c3e-5a2d-4c6e-9f10-2a3b4c5d6e7f", "prod")
GROUPS = [f"Plan {name}" for name in ("Free", "Starter", "Team", "Business", "Enterprise")] + [
    f"Partner {i}" for i in range(15)
]
STATUSES = ((200, 0.86), (201, 0.04), (404, 0.04), (422, 0.04), (500, 0.02))


def endpoint_list(count: int) -> list[tuple[str, str]]:
    methods = ("GET", "GET", "POST", "PUT", "DELETE")
    return [
        (methods[i % 5], f"/api/v1/resource{i // 5}/{{id}}" if i % 5 else f"/api/v1/resource{i // 5}")
        for i in range(count)
    ]


def _status(rng: random.Random) -> int:
    pick = rng.random()
    for code, share in STATUSES:
        pick -= share
        if pick <= 0:
            return code
    return 200


def _counts(rng: random.Random, requests: int, slow: bool) -> Counts:
    fast = rng.randint(0, requests)
    times = {10 * rng.randint(0, 5): fast} if fast else {}
    if requests > fast:
        edge = 10 * rng.randint(8, 60 if slow else 20)
        times[edge] = times.get(edge, 0) + requests - fast
    size = rng.randint(0, 3)
    return Counts(
        request_count=requests,
        request_size_sum=0,
        response_size_sum=requests * (size * 1000 + 300),
        response_times=times,
        request_sizes={},
        response_sizes={size: requests},
    )


def _total(parts: list[Counts], times: int = 1) -> Counts:
    total = Counts()
    for part in parts:
        for _ in range(times):
            total.add(part)
    return total


def _scaled(counts: Counts, factor: int) -> Counts:
    return Counts(
        counts.request_count * factor,
        counts.request_size_sum * factor,
        counts.response_size_sum * factor,
        {k: v * factor for k, v in counts.response_times.items()},
        {k: v * factor for k, v in counts.request_sizes.items()},
        {k: v * factor for k, v in counts.response_sizes.items()},
    )


PHASES = 60
"""Steady series repeat their per-minute counts every 60 minutes, so every hour of a series sums
to the same row: the tiers are exact sums without adding millions of rows up in Python."""

CONSUMER_INSERT = (
    "INSERT INTO consumer_traffic (client_id, env, resolution, bucket, consumer, method, path,"
    " status_code, request_count, request_size_sum, response_size_sum, response_times)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
ENDPOINT_INSERT = (
    "INSERT INTO endpoint_traffic (client_id, env, resolution, bucket, method, path, status_code,"
    " request_count, request_size_sum, response_size_sum, response_times, request_sizes, response_sizes)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


APP_INSERT = (
    "INSERT INTO app_traffic (client_id, env, resolution, bucket, status_code, request_count,"
    " request_size_sum, response_size_sum, response_times, request_sizes, response_sizes)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


GROUP_INSERT = (
    "INSERT INTO group_traffic (client_id, env, resolution, bucket, group_name, status_code,"
    " request_count, request_size_sum, response_size_sum) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def group_of(identifier: str) -> str:
    return GROUPS[zlib.crc32(identifier.encode()) % len(GROUPS)]


def _group_rows(consumer_rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """The per-group rows (``group_traffic``, what folding writes): the consumer rows summed per
    bucket, the consumer's group and status."""
    sums: dict[tuple[Any, ...], list[int]] = {}
    for cid, env, resolution, bucket, consumer, _, _, status, n, rq, rs, _ in consumer_rows:
        if not consumer:
            continue
        row = sums.setdefault((cid, env, resolution, bucket, group_of(consumer), status), [0, 0, 0])
        row[0] += n
        row[1] += rq
        row[2] += rs
    return [(*key, *values) for key, values in sums.items()]


def _app_rows(endpoint_rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """The per-app rows (``app_traffic``): the endpoint rows summed per bucket and status."""
    sums: dict[tuple[Any, ...], Counts] = {}
    for cid, env, resolution, bucket, _, _, status, n, rq, rs, times, rq_sizes, rs_sizes in endpoint_rows:
        bins = [{int(k): v for k, v in json.loads(text).items()} for text in (times, rq_sizes, rs_sizes)]
        counts = Counts(n, rq, rs, *bins)
        sums.setdefault((cid, env, resolution, bucket, status), Counts()).add(counts)
    return [(*key, *_endpoint_values(counts)) for key, counts in sums.items()]


def _consumer_values(counts: Counts) -> tuple[Any, ...]:
    return (
        counts.request_count,
        counts.request_size_sum,
        counts.response_size_sum,
        bins_json(counts.response_times),
    )


def _endpoint_values(counts: Counts) -> tuple[Any, ...]:
    return (
        *_consumer_values(counts),
        bins_json(counts.request_sizes),
        bins_json(counts.response_sizes),
    )


class Generator:
    """Fills a store with the dataset. The traffic aggregates (tens of millions of rows) are
    inserted with the backends' shared SQL (``SQLStorage.write``) in big transactions; the rest
    (registry, instances, errors, heartbeats, the request log) goes through ``Storage.apply``,
    as folding writes it."""

    def __init__(self, store: SQLiteStorage, spec: Spec, now: float) -> None:
        self.store, self.spec, self.now = store, spec, now
        self.rng = random.Random(2026)
        self.endpoints = endpoint_list(spec.endpoints)
        steady: dict[tuple[str, tuple[str, str], int], None] = {}
        for c in range(spec.steady_consumers):
            while len(steady) < (c + 1) * spec.steady_series_per_consumer:  # distinct series
                steady[(f"customer-{c:05d}", self.rng.choice(self.endpoints), _status(self.rng))] = None
        self.steady = list(steady)
        self.pool = [_counts(self.rng, self.rng.randint(1, 12), False) for _ in range(PHASES)]
        self.slow_pool = [_counts(self.rng, self.rng.randint(1, 12), True) for _ in range(PHASES)]
        self.one = _counts(self.rng, 1, False)
        self.tail_names = [f"user-{n:06d}" for n in range(spec.consumers - spec.steady_consumers)]
        self.tail_position = 0
        self.applied = 0
        self._prepare()

    def _steady_counts(self, index: int, phase: int) -> Counts:
        pool = self.slow_pool if self.steady[index][2] >= 500 else self.pool
        return pool[(index + phase) % PHASES]

    def _prepare(self) -> None:
        a = (APP.client_id, APP.env)
        self.steady_minute = [
            [(*_consumer_values(self._steady_counts(i, phase)),) for i in range(len(self.steady))]
            for phase in range(PHASES)
        ]
        self.steady_hour = [
            _consumer_values(_total([self._steady_counts(i, p) for p in range(PHASES)]))
            for i in range(len(self.steady))
        ]
        self.steady_hour_counts = [
            _total([self._steady_counts(i, p) for p in range(PHASES)]) for i in range(len(self.steady))
        ]
        groups: dict[tuple[str, str, int], list[int]] = {}
        for i, (_, (method, path), status) in enumerate(self.steady):
            groups.setdefault((method, path, status), []).append(i)
        for j in range(self.spec.endpoints):
            method, path = self.endpoints[j]
            groups.setdefault((method, path, 200), [])
        self.groups = groups
        self.tail_share = {
            key: sum(
                1
                for j in range(self.spec.tail_per_minute)
                if self.endpoints[j % len(self.endpoints)] == key[:2]
            )
            if key[2] == 200
            else 0
            for key in groups
        }
        self.endpoint_minute = {
            key: [
                _endpoint_values(
                    _total(
                        [*(self._steady_counts(i, p) for i in members), *[self.one] * self.tail_share[key]]
                    )
                )
                for p in range(PHASES)
            ]
            for key, members in groups.items()
        }
        self.endpoint_hour = {
            key: _total(
                [
                    *(self.steady_hour_counts[i] for i in members),
                    _scaled(self.one, PHASES * self.tail_share[key]),
                ]
            )
            for key, members in groups.items()
        }
        self._a = a

    def _insert(self, consumer_rows: list[tuple[Any, ...]], endpoint_rows: list[tuple[Any, ...]]) -> None:
        app_rows, group_rows = _app_rows(endpoint_rows), _group_rows(consumer_rows)

        def work(tx: Any) -> None:
            tx.executemany(CONSUMER_INSERT, consumer_rows)
            tx.executemany(ENDPOINT_INSERT, endpoint_rows)
            tx.executemany(APP_INSERT, app_rows)
            tx.executemany(GROUP_INSERT, group_rows)

        self.store.write(work)
        self.applied += len(consumer_rows) + len(endpoint_rows) + len(app_rows) + len(group_rows)

    def _apply(self, delta: AppDelta) -> None:
        self.store.apply("bench-generator", {APP: delta}, [])

    def _tail(self, count: int) -> list[tuple[str, tuple[str, str]]]:
        names = self.tail_names
        picked = []
        for j in range(count):
            picked.append((names[self.tail_position % len(names)], self.endpoints[j % len(self.endpoints)]))
            self.tail_position += 1
        return picked

    def _minute_rows(self, minute: int) -> tuple[list[tuple[Any, ...]], list[tuple[str, tuple[str, str]]]]:
        a, phase = self._a, (minute // MINUTE) % PHASES
        rows = [
            (*a, MINUTE, minute, consumer, method, path, status, *self.steady_minute[phase][i])
            for i, (consumer, (method, path), status) in enumerate(self.steady)
        ]
        tail = self._tail(self.spec.tail_per_minute)
        one = _consumer_values(self.one)
        rows += [(*a, MINUTE, minute, consumer, method, path, 200, *one) for consumer, (method, path) in tail]
        return rows, tail

    def _hour_rows(
        self, resolution: int, bucket: int, hours: int, tail: list[tuple[str, tuple[str, str]]]
    ) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
        """Rows of one hour (``hours`` = 1) or day bucket: the steady series' sums, one row per
        tail appearance (each tail consumer appears once in it), and the endpoint sums."""
        a = self._a
        consumer_rows = [
            (
                *a,
                resolution,
                bucket,
                consumer,
                method,
                path,
                status,
                *(
                    _consumer_values(_scaled(self.steady_hour_counts[i], hours))
                    if hours > 1
                    else self.steady_hour[i]
                ),
            )
            for i, (consumer, (method, path), status) in enumerate(self.steady)
        ]
        appearances: dict[tuple[str, tuple[str, str]], int] = {}
        for entry in tail:  # a tail consumer may come back within a day (a small dataset)
            appearances[entry] = appearances.get(entry, 0) + 1
        consumer_rows += [
            (*a, resolution, bucket, consumer, method, path, 200, *_consumer_values(_scaled(self.one, n)))
            for (consumer, (method, path)), n in appearances.items()
        ]
        tail_hits: dict[tuple[str, str], int] = {}
        for _, endpoint in tail:
            tail_hits[endpoint] = tail_hits.get(endpoint, 0) + 1
        endpoint_rows = []
        for key, members in self.groups.items():
            steady = (
                _total([_scaled(self.steady_hour_counts[i], hours) for i in members]) if members else Counts()
            )
            if key[2] == 200 and tail_hits.get(key[:2]):
                steady.add(_scaled(self.one, tail_hits[key[:2]]))
            if steady.request_count:
                endpoint_rows.append((*a, resolution, bucket, *key, *_endpoint_values(steady)))
        return consumer_rows, endpoint_rows

    def run(self) -> None:
        spec, now = self.spec, self.now
        minute_start = int((now - spec.days * DAY) // DAY) * DAY
        rollup_start = int((now - spec.rollup_days * DAY) // DAY) * DAY
        self._registry()
        for day in range(rollup_start, minute_start, DAY):  # older: hourly and daily rows only
            consumer_rows: list[tuple[Any, ...]] = []
            endpoint_rows: list[tuple[Any, ...]] = []
            day_tail: list[tuple[str, tuple[str, str]]] = []
            for hour in range(day, day + DAY, HOUR):
                tail = self._tail(100)
                day_tail += tail
                rows = self._hour_rows(HOUR, hour, 1, tail)
                consumer_rows += rows[0]
                endpoint_rows += rows[1]
            rows = self._hour_rows(DAY, day, 24, day_tail)
            self._insert(consumer_rows + rows[0], endpoint_rows + rows[1])
            if day // DAY % 30 == 0:
                common.log(f"  rollups: {time.strftime('%Y-%m-%d', time.gmtime(day))}, {self.applied:,} rows")
        last_minute = int(now // MINUTE) * MINUTE
        for day in range(minute_start, last_minute + 1, DAY):  # the minutes' window: every tier
            day_tail = []
            hours = 0
            for hour in range(day, min(day + DAY, last_minute + 1), HOUR):
                consumer_rows, endpoint_rows, hour_tail = [], [], []
                delta = AppDelta()
                for minute in range(hour, min(hour + HOUR, last_minute + 1), MINUTE):
                    rows, tail = self._minute_rows(minute)
                    consumer_rows += rows
                    hour_tail += tail
                    phase = (minute // MINUTE) % PHASES
                    a = self._a
                    endpoint_rows += [
                        (*a, MINUTE, minute, *key, *values[phase])
                        for key, values in self.endpoint_minute.items()
                        if values[phase][0]
                    ]
                    self._errors(delta, minute, (MINUTE, HOUR, DAY))
                    delta.heartbeats[minute] = 3
                full = hour + HOUR <= last_minute + 1
                if full:  # a whole hour: its rows are the phases' sums (a partial one is left out)
                    rows = self._hour_rows(HOUR, hour, 1, hour_tail)
                    consumer_rows += rows[0]
                    endpoint_rows += rows[1]
                    hours += 1
                    day_tail += hour_tail
                self._insert(consumer_rows, endpoint_rows)
                self._apply(delta)
            rows = self._hour_rows(DAY, day, hours, day_tail) if hours else ([], [])
            self._insert(*rows)
            common.log(f"  minutes: {time.strftime('%Y-%m-%d', time.gmtime(day))}, {self.applied:,} rows")
        self._instances()
        self._request_log()

    def _errors(self, delta: AppDelta, minute: int, resolutions: tuple[int, ...]) -> None:
        method, path = self.endpoints[minute // MINUTE % len(self.endpoints)]
        for resolution in resolutions:
            bucket = minute // resolution * resolution
            for field in ("name", "email", "limit"):
                key = (
                    resolution,
                    bucket,
                    "customer-00001",
                    method,
                    path,
                    json.dumps(["body", field]),
                    "Field required",
                    "missing",
                )
                delta.validation_errors[key] = delta.validation_errors.get(key, 0) + 1
        if minute // MINUTE % 10 == 0:
            group = ServerErrorGroup(
                error_group_hash(method, path, "builtins.RuntimeError", "boom", "Traceback ..."),
                method,
                path,
                "builtins.RuntimeError",
                "boom",
                'Traceback (most recent call last):\n  File "app.py", line 1, in handler\nRuntimeError: boom',
                None,
                float(minute),
            )
            delta.server_error_groups[group.error_hash] = group
            for resolution in resolutions:
                key = (resolution, minute // resolution * resolution, group.error_hash, "customer-00002")
                delta.server_errors[key] = delta.server_errors.get(key, 0) + 1

    def _registry(self) -> None:
        first = self.now - self.spec.rollup_days * DAY
        names = [f"customer-{c:05d}" for c in range(self.spec.steady_consumers)] + self.tail_names
        for start in range(0, len(names), 20_000):
            delta = AppDelta()
            for identifier in names[start : start + 20_000]:
                delta.consumers_seen[identifier] = ConsumerSeen(identifier, first, self.now)
                delta.consumers_named.append(
                    ConsumerNamed(identifier, identifier.title(), group_of(identifier), first)
                )
            self._apply(delta)

    def _instances(self) -> None:
        delta = AppDelta()
        for i in range(3):
            instance = str(uuid.UUID(int=i + 1))
            paths = [(m.lower(), p) for m, p in self.endpoints]
            delta.startups.append(
                Startup(instance, self.now - 7 * DAY, "python:fastapi", {"app": "2.4.1"}, paths, None)
            )
            for beat in (self.now - 120, self.now - 60, self.now - 1):
                delta.instance_syncs.append(Heartbeat(instance, beat, beat, 3.0, 90_000_000))
        self._apply(delta)

    def _request_log(self) -> None:
        spec = self.spec
        start = self.now - spec.log_days * DAY
        step = (self.now - start) / spec.log_items
        body = '{"id": 1, "name": "thing", "tags": ["a", "b"]}'
        for chunk in range(0, spec.log_items, 10_000):
            delta = AppDelta()
            for i in range(chunk, min(chunk + 10_000, spec.log_items)):
                ts = start + i * step
                method, path = self.endpoints[i % len(self.endpoints)]
                status = _status(self.rng)
                consumer = f"customer-{i % spec.steady_consumers:05d}"
                url = f"https://api.example.com{path.replace('{id}', str(i))}?page={i % 7}"
                item = {
                    "uuid": str(uuid.UUID(int=10**12 + i)),
                    "request": {
                        "timestamp": ts,
                        "method": method,
                        "path": path,
                        "url": url,
                        "consumer": consumer,
                        "headers": [["accept", "application/json"], ["authorization", "******"]],
                    },
                    "response": {
                        "status_code": status,
                        "response_time": 0.02,
                        "size": len(body),
                        "headers": [["content-type", "application/json"]],
                        "body": "eyJpZCI6IDF9",
                    },
                }
                row = LogRow(
                    item["uuid"],
                    ts,
                    method,
                    path,
                    url,
                    status,
                    0.02 + (i % 50) / 1000,
                    consumer,
                    None,
                    len(body),
                    None,
                    None,
                    json.dumps(item),
                )
                delta.log_rows.append((str(uuid.UUID(int=chunk + 1)), row))
            self._apply(delta)


def dataset(spec: Spec, *, regenerate: bool) -> tuple[Path, float]:
    """(SQLite file, the generation's clock) for ``spec``, generated once and cached."""
    CACHE_DIR.mkdir(exist_ok=True)
    db = CACHE_DIR / f"dashboard-{spec.key()}-schema{SCHEMA_VERSION}.sqlite"  # a new schema: anew
    meta = db.with_suffix(".json")
    if not regenerate and db.exists() and meta.exists():
        return db, float(json.loads(meta.read_text())["now"])
    for path in (db, meta, Path(f"{db}-wal"), Path(f"{db}-shm")):
        path.unlink(missing_ok=True)
    now = time.time()
    started = time.monotonic()
    common.log(f"generating the dataset {spec} into {db}")
    store = SQLiteStorage(db)
    store.open()
    try:
        generator = Generator(store, spec, now)
        generator.run()
    finally:
        store.close()
    seconds = time.monotonic() - started
    meta.write_text(
        json.dumps({"now": now, "spec": asdict(spec), "rows": generator.applied, "seconds": seconds})
    )
    common.log(
        f"generated {generator.applied:,} aggregate rows in {seconds:.0f} s"
        f" ({db.stat().st_size / 1e9:.1f} GB)"
    )
    return db, now


def page_paths(app: AppKey, request_uuid: str | None, endpoint: str, consumer: str) -> dict[str, str]:
    base = f"/apps/{app.client_id}/{app.env}"
    paths = {
        "apps": "/",
        "traffic": base,
        "endpoints": f"{base}/endpoints",
        "endpoint": f"{base}/endpoint?endpoint={quote(endpoint)}",
        "errors": f"{base}/errors",
        "consumers": f"{base}/consumers",
        "groups": f"{base}/groups",
        "consumer": f"{base}/consumer?consumer={quote(consumer)}",
        "requests": f"{base}/requests",
        # the request log's filters at their worst: a body text no item has (the whole bounded
        # scan is read and decoded) and a size no item has (every item of the window is looked at)
        "requests body": f"{base}/requests?response_body={quote('no such text')}",
        "requests size": f"{base}/requests?min_response_size=1000000",
        "instances": f"{base}/instances",
    }
    if request_uuid:
        paths["request"] = f"{base}/requests/{request_uuid}"
    return paths


def with_range(path: str, key: str) -> str:
    return f"{path}{'&' if '?' in path else '?'}range={key}"


def server_ms(response: httpx.Response) -> float:
    timing = response.headers["server-timing"]
    return float(timing.split("dur=", 1)[1])


def time_pages(url: str, targets: dict[str, str], rounds: int) -> dict[str, dict[str, float]]:
    """Median and slowest server ms per target (round-robin, one warm-up round)."""
    samples: dict[str, list[float]] = {name: [] for name in targets}
    with httpx.Client(base_url=url, timeout=120) as http:
        for round_ in range(rounds + 1):
            for name, path in targets.items():
                response = http.get(path)
                if response.status_code != 200:
                    raise RuntimeError(f"{path}: {response.status_code} {response.text[:300]}")
                if round_:
                    samples[name].append(server_ms(response))
    return {
        name: {"median_ms": round(common.median(values), 1), "max_ms": round(max(values), 1)}
        for name, values in samples.items()
    }


def time_csv(url: str, app: AppKey) -> dict[str, float]:
    """The whole request log (30 days) downloaded as CSV: wall time, size, rows, and the RSS of
    this process (the hub runs in it) before and at its highest while the download streams."""
    before = peak = common.rss_mb()
    rows = size = 0
    started = time.perf_counter()
    with (
        httpx.Client(base_url=url, timeout=600) as http,
        http.stream(
            "GET", f"/api/{app.client_id}/{app.env}/requests", params={"since": "30d", "format": "csv"}
        ) as response,
    ):
        response.raise_for_status()
        for chunk in response.iter_bytes():
            rows += chunk.count(b"\n")
            size += len(chunk)
            peak = max(peak, common.rss_mb())
    return {
        "rows": rows - 1,
        "seconds": round(time.perf_counter() - started, 2),
        "mb": round(size / 2**20, 1),
        "rss_before_mb": round(before, 1),
        "rss_peak_mb": round(peak, 1),
    }


@contextmanager
def demo_hub(seconds: float) -> Iterator[tuple[HubServer, str, str | None]]:
    """A hub filled by the demo app's traffic for ``seconds``."""
    from apitally_hub.demo.run import DemoApp
    from apitally_hub.demo.traffic import generate_traffic

    with (
        tempfile.TemporaryDirectory(prefix="bench-dashboard-") as folder,
        HubServer(Path(folder) / "hub.sqlite") as hub,
    ):
        client_id = str(uuid.uuid4())
        app = DemoApp(hub.url, client_id, Path(folder))
        try:
            app.wait_ready()
            with ThreadPoolExecutor(1) as pool:
                pool.submit(generate_traffic, app.url, seconds).result()
        finally:
            app.stop()
        hub.settle()
        items = httpx.get(f"{hub.url}/api/{client_id}/demo/requests", params={"limit": 1}).json()["items"]
        yield hub, client_id, items[0]["uuid"] if items else None


def run(*, quick: bool, rounds: int | None = None, regenerate: bool = False) -> dict[str, Any]:
    rounds = rounds or (1 if quick else 5)
    result: dict[str, Any] = {
        "rounds": rounds,
        "targets_ms": {"demo": TARGET_DEMO_MS, "dataset": TARGET_DATASET_MS},
    }
    demo_seconds = 2.0 if quick else 20.0
    common.log(f"demo data: the demo app's traffic for {demo_seconds:g} s")
    with demo_hub(demo_seconds) as (hub, client_id, request_uuid):
        paths = page_paths(
            AppKey(client_id, "demo"), request_uuid, "GET /api/items/{item_id}", "ak_live_acme_7f3a"
        )
        result["demo"] = time_pages(hub.url, paths, rounds)
    spec = QUICK if quick else Spec()
    db, now = dataset(spec, regenerate=regenerate)
    meta = json.loads(db.with_suffix(".json").read_text())
    result["dataset"] = {
        "spec": asdict(spec),
        "aggregate_rows": meta["rows"],
        "generation_s": round(meta["seconds"]),
        "size_gb": round(db.stat().st_size / 1e9, 2),
    }
    offset = now - time.time()
    # the first start on a fresh dataset prunes the minutes past their 30 days: give it time
    with HubServer(db, clock=lambda: time.time() + offset, startup_timeout=900) as hub:
        log = httpx.get(
            f"{hub.url}/api/{APP.client_id}/{APP.env}/requests", params={"limit": 1, "since": "1d"}
        ).json()
        request_uuid = log["items"][0]["uuid"] if log["items"] else None
        method, path = endpoint_list(spec.endpoints)[1]
        paths = page_paths(APP, request_uuid, f"{method} {path}", "customer-00003")
        targets: dict[str, str] = {}
        for name, page in paths.items():
            if name in ("apps", "request"):
                targets[name] = page
                continue
            for key in (*RANGES, *(("13mo",) if name in ROLLUP_PAGES else ())):
                targets[f"{name} {key}"] = with_range(page, key)
        result["dataset"]["pages"] = time_pages(hub.url, targets, rounds)
        result["dataset"]["hub_rss_mb"] = round(common.rss_mb(), 1)
        result["dataset"]["csv_request_log"] = time_csv(hub.url, APP)
    return result


def verdict(value: float, target: float) -> str:
    return "met" if value <= target else "MISSED"


def report(result: dict[str, Any]) -> str:
    demo, dataset_pages = result["demo"], result["dataset"]["pages"]
    names = list(demo)
    headers = ["page", "demo data", *(f"30-day dataset, {key}" for key in (*RANGES, "13mo"))]
    rows = []
    for name in names:
        cells = [name, f"{demo[name]['median_ms']:.0f} ms"]
        for key in (*RANGES, "13mo"):
            entry = dataset_pages.get(
                name if name in ("apps", "request") and key == "1h" else f"{name} {key}"
            )
            if name in ("apps", "request") and key != "1h":
                entry = None
            cells.append(f"{entry['median_ms']:.0f} ms (max {entry['max_ms']:.0f})" if entry else "")
        rows.append(cells)
    worst_demo = max(v["median_ms"] for v in demo.values())
    worst_dataset = max(v["median_ms"] for v in dataset_pages.values())
    spec = result["dataset"]["spec"]
    lines = [
        common.table(headers, rows),
        "",
        f"Server time (median of {result['rounds']} rounds; `apps` and `request` have no range: their"
        " column is 1 h). Slowest page: demo data"
        f" {worst_demo:.0f} ms (target ≤ {TARGET_DEMO_MS:.0f} ms) — {verdict(worst_demo, TARGET_DEMO_MS)};"
        f" 30-day dataset {worst_dataset:.0f} ms (target ≤ {TARGET_DATASET_MS:.0f} ms) —"
        f" {verdict(worst_dataset, TARGET_DATASET_MS)}.",
        f"Dataset: {spec['series_per_minute']:,} series per minute for {spec['days']} days,"
        f" {spec['consumers']:,} consumers, {spec['rollup_days']} days of rollups,"
        f" {spec['log_items']:,} request-log items;"
        f" {result['dataset']['aggregate_rows']:,} aggregate rows, {result['dataset']['size_gb']} GB"
        f" (generated in {result['dataset']['generation_s']} s).",
    ]
    csv_log = result["dataset"].get("csv_request_log")
    if csv_log:
        lines.append(
            f"The whole request log as CSV (30 d): {csv_log['rows']:,} rows, {csv_log['mb']} MB in"
            f" {csv_log['seconds']} s; RSS {csv_log['rss_before_mb']:.0f} MB before,"
            f" {csv_log['rss_peak_mb']:.0f} MB at most while it streamed."
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tiny dataset and one round: seconds")
    parser.add_argument("--rounds", type=int, help="timed rounds (default 5, quick 1)")
    parser.add_argument("--regenerate", action="store_true", help="generate the dataset anew")
    args = parser.parse_args()
    result = {
        "machine": common.machine(),
        **run(quick=args.quick, rounds=args.rounds, regenerate=args.regenerate),
    }
    common.save_json(
        common.RESULTS_DIR / ("dashboard_quick.json" if args.quick else "dashboard.json"), result
    )
    print(report(result))


if __name__ == "__main__":
    main()
