"""Folding: raw queued messages -> additive aggregate deltas. Pure functions, no I/O.

A sync's items (``requests``, then ``validation_errors``, then ``server_errors``) are numbered
in that order; a chunk folds items ``[offset, offset + n)``. The parts of a sync that are not
items (heartbeat, consumers) are folded with the first chunk. Every item is added at each
resolution (minute, hour, day) of the sync's client ``timestamp``; rows of one fold are
pre-aggregated by key, so a batch of many instances' syncs for the same minute becomes few rows.
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Iterator, Sequence
from typing import Any

from apitally_hub.storage.records import (
    NO_CONSUMER,
    RESOLUTIONS,
    AppDelta,
    ConsumerNamed,
    ConsumerSeen,
    Counts,
    Heartbeat,
    LogRow,
    RawMessage,
    ServerErrorGroup,
    Startup,
    error_group_hash,
)


def decode_body(message: RawMessage) -> bytes:
    if message.encoding == "zlib":
        return zlib.decompress(message.body)
    return gzip.decompress(message.body)


def encode_json_body(body: bytes) -> bytes:
    """What ingest stores for a JSON message: fast compression (JSON shrinks 5-10x)."""
    return zlib.compress(body, 1)


def _bins(raw: dict[str, int]) -> dict[int, int]:
    return {int(key): count for key, count in raw.items() if count}


def _buckets(timestamp: float) -> list[tuple[int, int]]:
    return [(resolution, int(timestamp // resolution) * resolution) for resolution in RESOLUTIONS]


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def server_error_hash(item: dict[str, Any]) -> str:
    return error_group_hash(item["method"], item["path"], item["type"], item["msg"], item["traceback"])


def item_count(body: dict[str, Any]) -> int:
    return len(body["requests"]) + len(body["validation_errors"]) + len(body["server_errors"])


def _add(target: dict[Any, Counts], key: Any, counts: Counts) -> None:
    existing = target.get(key)
    if existing is None:
        target[key] = Counts(  # the histograms are shared: Counts.add never changes them in place
            counts.request_count,
            counts.request_size_sum,
            counts.response_size_sum,
            counts.response_times,
            counts.request_sizes,
            counts.response_sizes,
        )
    else:
        existing.add(counts)


def _sync_items(body: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for kind in ("requests", "validation_errors", "server_errors"):
        for item in body[kind]:
            yield kind, item


def fold_sync(delta: AppDelta, message: RawMessage, body: dict[str, Any], start: int, stop: int) -> None:
    """Add items ``[start, stop)`` of a sync (and, when ``start == 0``, its heartbeat and consumers)."""
    timestamp = float(body["timestamp"])
    buckets = _buckets(timestamp)
    if start == 0:
        _fold_sync_header(delta, message, body, timestamp)
    for index, (kind, item) in enumerate(_sync_items(body)):
        if index < start:
            continue
        if index >= stop:
            break
        consumer = item["consumer"] or NO_CONSUMER
        method, path = item["method"], item["path"]
        if kind == "requests":
            counts = Counts(
                item["request_count"],
                item["request_size_sum"],
                item["response_size_sum"],
                _bins(item["response_times"]),
                _bins(item["request_sizes"]),
                _bins(item["response_sizes"]),
            )
            status = item["status_code"]
            for resolution, bucket in buckets:
                _add(delta.endpoints, (resolution, bucket, method, path, status), counts)
                _add(delta.consumer_traffic, (resolution, bucket, consumer, method, path, status), counts)
        elif kind == "validation_errors":
            loc = _dumps([str(part) for part in item["loc"]])
            for resolution, bucket in buckets:
                vkey = (resolution, bucket, consumer, method, path, loc, item["msg"], item["type"])
                delta.validation_errors[vkey] = delta.validation_errors.get(vkey, 0) + item["error_count"]
        else:
            error_hash = server_error_hash(item)
            previous = delta.server_error_groups.get(error_hash)
            delta.server_error_groups[error_hash] = ServerErrorGroup(
                error_hash,
                method,
                path,
                item["type"],
                item["msg"],
                item["traceback"],
                item.get("sentry_event_id") or (previous.sentry_event_id if previous else None),
                max(timestamp, previous.seen_at) if previous else timestamp,
            )
            for resolution, bucket in buckets:
                key = (resolution, bucket, error_hash, consumer)
                delta.server_errors[key] = delta.server_errors.get(key, 0) + item["error_count"]


def _fold_sync_header(delta: AppDelta, message: RawMessage, body: dict[str, Any], timestamp: float) -> None:
    minute = int(timestamp // 60) * 60
    delta.heartbeats[minute] = delta.heartbeats.get(minute, 0) + 1
    resources = body.get("resources") or {}
    delta.instance_syncs.append(
        Heartbeat(
            body["instance_uuid"],
            timestamp,
            message.received_at,
            resources.get("cpu_percent"),
            resources.get("memory_rss"),
        )
    )
    seen = {item["consumer"] for _, item in _sync_items(body) if item["consumer"]}
    seen.update(item["identifier"] for item in body["consumers"])
    for identifier in seen:
        previous = delta.consumers_seen.get(identifier)
        delta.consumers_seen[identifier] = ConsumerSeen(
            identifier,
            min(timestamp, previous.first_seen) if previous else timestamp,
            max(timestamp, previous.last_seen) if previous else timestamp,
        )
    for item in body["consumers"]:
        delta.consumers_named.append(
            ConsumerNamed(item["identifier"], item["name"], item["group"], timestamp)
        )


def fold_startup(delta: AppDelta, message: RawMessage, body: dict[str, Any]) -> None:
    delta.startups.append(
        Startup(
            body["instance_uuid"],
            message.received_at,
            body["client"],
            dict(body["versions"]),
            [(entry["method"].upper(), entry["path"]) for entry in body["paths"]],
            body.get("openapi"),
        )
    )


def log_lines(data: bytes) -> list[str]:
    """The non-blank lines of a decompressed request-log file."""
    return [line for line in (raw.strip() for raw in data.decode("utf-8").split("\n")) if line]


def log_row(text: str) -> LogRow:
    line = json.loads(text)
    request, response = line["request"], line["response"]
    exception = line.get("exception") or {}
    return LogRow(
        line["uuid"],
        request["timestamp"],
        request["method"],
        request.get("path"),
        request["url"],
        response["status_code"],
        response["response_time"],
        request.get("consumer"),
        request.get("size"),
        response.get("size"),
        line.get("trace_id"),
        exception.get("type"),
        text,
        request.get("client_ip"),
    )


ATTACH_PREFIX = '{"attach":'
"""A line of the hub's own making (never a client's: those are validated at ingest) that adds
log records to a stored request-log item: ``{"attach": <request uuid>, "logs": [...]}``."""


def fold_log(delta: AppDelta, file_uuid: str, lines: Sequence[str], start: int, stop: int) -> None:
    for text in lines[start:stop]:
        if text.startswith(ATTACH_PREFIX):
            line = json.loads(text)
            delta.log_attachments.append((line["attach"], line["logs"]))
        else:
            delta.log_rows.append((file_uuid, log_row(text)))
