"""Request counts from SERVER spans, held back until the instance has shown whether it sends HTTP
server metrics.

An OpenTelemetry SDK exports spans every few seconds but metrics only every minute by default, so
a hub that counted the spans of an instance's first minute and then its first (cumulative)
metrics would count those requests twice. So span-derived counts are not queued at once: they are
stored as held rows of the instance's series (``held:<minute>:<digest>``; a 2xx still means
stored), and

- when the instance's first HTTP server metrics arrive, its held counts are dropped and the
  metrics count everything (their first point covers the process's life);
- when none arrive within ``hold`` seconds (a Collector forwarding traces only),
  :func:`release_due` queues the held counts as sync messages and the instance is counted from
  its spans from then on (metrics that arrive later still are taken as a baseline first).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

from apitally_hub.ingest import folding
from apitally_hub.ingest.otlp import batch as batches
from apitally_hub.ingest.otlp.batch import InstanceBatch
from apitally_hub.storage.base import Storage
from apitally_hub.storage.records import AppKey, RawMessage, SeriesPoint, SeriesRef

_logger = logging.getLogger(__name__)

PREFIX = "held:"
MODE_KEY = "mode"
"""The series row that says how an instance is counted; a stored point is kept over one with an
earlier time, so the mode only moves forward: held (1) -> spans (2) -> metrics (3)."""
HELD_MODE = SeriesPoint(MODE_KEY, 0, 1, "held")
SPANS_MODE = SeriesPoint(MODE_KEY, 0, 2, "spans")
METRICS_MODE = SeriesPoint(MODE_KEY, 0, 3, "metrics")

DEFAULT_HOLD_SECONDS = 150.0
"""Longer than an SDK's default metric export interval (60 s) plus its export's own delays."""
RELEASE_BATCH = 500


def held_points(batch: InstanceBatch, digest: str, now: float) -> list[SeriesPoint]:
    """The instance's span-derived requests as held rows (one per minute of data)."""
    points = []
    for minute_key, minute in sorted(batch.minutes.items()):
        if not minute.requests:
            continue
        items = [batches.request_item(key, counts) for key, counts in minute.requests.items() if counts.count]
        value = json.dumps({"t": minute.timestamp, "requests": items}, separators=(",", ":"))
        points.append(SeriesPoint(f"{PREFIX}{minute_key}:{digest[:32]}", 0, int(now * 1e9), value))
        minute.requests.clear()
    return points


def _merge(target: dict[str, int], source: dict[str, int]) -> None:
    for key, count in source.items():
        target[key] = target.get(key, 0) + count


def release_due(storage: Storage, now: float, hold: float) -> int:
    """Queue the held counts older than ``hold`` seconds of instances that sent no HTTP server
    metrics meanwhile (drop those of instances that did); returns the messages queued."""
    due = storage.series_with_prefix(PREFIX, updated_before=now - hold, limit=RELEASE_BATCH)
    by_instance: dict[tuple[AppKey, str], list[tuple[SeriesRef, SeriesPoint]]] = {}
    for ref, point in due:
        by_instance.setdefault((ref.app, ref.instance_id), []).append((ref, point))
    queued = 0
    for (app, instance), rows in sorted(by_instance.items()):
        mode = storage.swap_series(app, instance, [SPANS_MODE], now).get(MODE_KEY)
        refs = [ref for ref, _ in rows]
        if mode is not None and mode.value == "metrics":
            storage.enqueue_many([], forget_series=refs)
            continue
        messages = release_messages(app, instance, [point for _, point in rows], now)
        stored = storage.enqueue_many(messages, forget_series=refs)
        queued += sum(stored)
    return queued


def release_messages(
    app: AppKey, instance: str, points: Sequence[SeriesPoint], now: float
) -> list[RawMessage]:
    """The sync messages of held rows: one per minute, their items added up."""
    minutes: dict[int, tuple[float, dict[tuple[Any, ...], dict[str, Any]]]] = {}
    for point in points:
        try:
            data = json.loads(point.value)
            timestamp = float(data["t"])
            items = data["requests"]
        except (ValueError, KeyError, TypeError):  # a row the hub did not write: dropped
            _logger.warning("Dropping an unreadable held row %s of instance %s", point.key, instance)
            continue
        minute_key = int(timestamp // 60)
        newest, merged = minutes.get(minute_key, (timestamp, {}))
        for item in items:
            key = (item["consumer"], item["method"], item["path"], item["status_code"])
            existing = merged.get(key)
            if existing is None:
                merged[key] = item
                continue
            for name in ("request_count", "request_size_sum", "response_size_sum"):
                existing[name] += item[name]
            for name in ("response_times", "request_sizes", "response_sizes"):
                _merge(existing[name], item[name])
        minutes[minute_key] = (max(newest, timestamp), merged)
    messages = []
    keys = ",".join(sorted(point.key for point in points))
    for minute_key, (timestamp, merged) in sorted(minutes.items()):
        body: dict[str, Any] = {
            "instance_uuid": instance,
            "message_uuid": batches.message_uuid("held", instance, str(minute_key), keys),
            "timestamp": timestamp,
            "requests": list(merged.values()),
            "validation_errors": [],
            "server_errors": [],
            "consumers": [],
            "resources": None,
        }
        data = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
        messages.append(
            RawMessage(
                app,
                "sync",
                body["message_uuid"],
                instance,
                now,
                folding.encode_json_body(data),
                "zlib",
                len(body["requests"]),
            )
        )
    return messages
