"""What one OTLP export request says about each instance, gathered in the classic protocol's
terms, and turned into the classic messages (hub-protocol.md §3-§5) that ingest queues.

Requests are kept per minute of their data time, so a batch sent late (apitally 1.x retries for
an hour) lands in the minutes it describes: each minute of an instance becomes one sync message.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field
from typing import Any

from apitally_hub.ingest.otlp import rebinning, values

MESSAGE_NAMESPACE = uuid.UUID("0b5c3f0e-7a43-4b8e-8f0c-3c1d2a9e6b74")

MAX_IDENTIFIER = 128
MAX_NAME = 64
MAX_PATH = 2000
MAX_EXCEPTION_MSG = 2048
MAX_TRACEBACK = 65536
TRUNCATED_SUFFIX = "... (truncated)"
TRACEBACK_PREFIX = "... (truncated) ...\n"

RequestKey = tuple[str | None, str, str, int]
"""``(consumer, method, path, status_code)``."""


@dataclass
class RequestCounts:
    count: int = 0
    request_size_sum: int = 0
    response_size_sum: int = 0
    response_times: dict[int, int] = field(default_factory=dict)
    """Bin (ms, a multiple of 10) -> count."""
    request_sizes: dict[int, int] = field(default_factory=dict)
    response_sizes: dict[int, int] = field(default_factory=dict)
    """Bin (kB) -> count."""


def _merge(target: dict[int, int], source: dict[int, int]) -> None:
    for key, count in source.items():
        target[key] = target.get(key, 0) + count


@dataclass
class Minute:
    timestamp: float
    """The newest data time seen in this minute (the sync's ``timestamp``)."""
    requests: dict[RequestKey, RequestCounts] = field(default_factory=dict)
    validation_errors: dict[tuple[str | None, str, str, tuple[str, ...], str, str], int] = field(
        default_factory=dict
    )
    server_errors: dict[tuple[str | None, str, str, str, str, str], list[Any]] = field(default_factory=dict)
    """key -> ``[count, sentry_event_id]``."""


@dataclass
class InstanceBatch:
    instance_uuid: str
    env: str | None
    """The resource's env, when it names one."""
    minutes: dict[int, Minute] = field(default_factory=dict)
    consumers: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)
    resources: dict[str, float | int] = field(default_factory=dict)
    resources_time: float = 0.0
    startup: dict[str, Any] | None = None
    log_lines: list[dict[str, Any]] = field(default_factory=list)
    log_attachments: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    """Request uuid -> log records of that request (hub-protocol.md §5 ``logs`` entries)."""
    heartbeat_time: float = 0.0
    """Data time of the newest thing this instance sent: its heartbeat (0: none)."""
    apitally: bool = False
    """Sent by apitally 1.x (see :func:`.values.is_apitally`)."""
    resource_startup: dict[str, Any] | None = None
    """For other senders: a startup message made of the resource (client, versions), so the
    instances page says what the instance runs; its ``message_uuid`` is set by the caller."""

    @classmethod
    def of(cls, instance: str, resource: dict[str, Any]) -> InstanceBatch:
        apitally = values.is_apitally(resource)
        return cls(
            instance,
            values.resource_env(resource),
            apitally=apitally,
            resource_startup=None if apitally else values.resource_startup(instance, resource),
        )

    def minute(self, timestamp: float) -> Minute:
        key = int(timestamp // 60)
        minute = self.minutes.get(key)
        if minute is None:
            minute = self.minutes[key] = Minute(timestamp)
        elif timestamp > minute.timestamp:
            minute.timestamp = timestamp
        self.heartbeat_time = max(self.heartbeat_time, timestamp)
        return minute

    def add_request(
        self,
        timestamp: float,
        key: RequestKey,
        count: int,
        response_times: dict[int, int] | None = None,
        request_size: tuple[int, dict[int, int]] | None = None,
        response_size: tuple[int, dict[int, int]] | None = None,
    ) -> None:
        minute = self.minute(timestamp)
        counts = minute.requests.get(key)
        if counts is None:
            counts = minute.requests[key] = RequestCounts()
        counts.count += count
        if response_times:
            _merge(counts.response_times, response_times)
        if request_size is not None:
            counts.request_size_sum += request_size[0]
            _merge(counts.request_sizes, request_size[1])
        if response_size is not None:
            counts.response_size_sum += response_size[0]
            _merge(counts.response_sizes, response_size[1])

    def add_validation_error(
        self,
        timestamp: float,
        consumer: str | None,
        method: str,
        path: str,
        loc: tuple[str, ...],
        msg: str,
        error_type: str,
        count: int,
    ) -> None:
        minute = self.minute(timestamp)
        key = (consumer, method, path, loc, msg[:MAX_EXCEPTION_MSG], error_type[:128])
        minute.validation_errors[key] = minute.validation_errors.get(key, 0) + count

    def add_server_error(
        self,
        timestamp: float,
        consumer: str | None,
        method: str,
        path: str,
        error_type: str,
        msg: str,
        traceback: str,
        count: int,
        sentry_event_id: str | None = None,
    ) -> None:
        minute = self.minute(timestamp)
        key = (consumer, method, path, error_type[:256], cut_message(msg), cut_traceback(traceback))
        entry = minute.server_errors.get(key)
        if entry is None:
            minute.server_errors[key] = [count, sentry_event_id]
        else:
            entry[0] += count
            entry[1] = sentry_event_id or entry[1]

    def add_consumer(self, identifier: str, name: str | None, group: str | None) -> None:
        previous = self.consumers.get(identifier, (None, None))
        self.consumers[identifier] = (name or previous[0], group or previous[1])


def consumer_id(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()[:MAX_IDENTIFIER]
    return value or None


def short_name(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()[:MAX_NAME]
    return value or None


def cut_message(message: str) -> str:
    message = message.strip()
    if len(message) <= MAX_EXCEPTION_MSG:
        return message
    return message[: MAX_EXCEPTION_MSG - len(TRUNCATED_SUFFIX)] + TRUNCATED_SUFFIX


def cut_traceback(traceback: str) -> str:
    traceback = traceback.strip()
    if len(traceback) <= MAX_TRACEBACK:
        return traceback
    return TRACEBACK_PREFIX + traceback[-(MAX_TRACEBACK - len(TRACEBACK_PREFIX)) :]


def message_uuid(*parts: str) -> str:
    """A message's uuid made from what identifies it (the body's digest among it), so a body sent
    twice makes the same messages, which the queue stores once."""
    return str(uuid.uuid5(MESSAGE_NAMESPACE, "\x1f".join(parts)))


def body_digest(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def _bins(bins: dict[int, int]) -> dict[str, int]:
    return {str(key): count for key, count in sorted(bins.items()) if count}


def sync_messages(batch: InstanceBatch, digest: str, signal: str) -> list[dict[str, Any]]:
    """One sync per minute of data (the newest also carries the consumers and resources); an
    instance that sent only a heartbeat gets an empty sync at that time."""
    minutes = dict(batch.minutes)
    if not minutes and (batch.heartbeat_time or batch.consumers or batch.resources):
        timestamp = batch.heartbeat_time or batch.resources_time
        if not timestamp:
            return []
        minutes[int(timestamp // 60)] = Minute(timestamp)
    messages: list[dict[str, Any]] = []
    newest = max(minutes, default=None)
    for key in sorted(minutes):
        minute = minutes[key]
        requests = [request_item(key, counts) for key, counts in minute.requests.items() if counts.count > 0]
        validation_errors = [
            {
                "consumer": consumer,
                "method": method,
                "path": path,
                "loc": list(loc),
                "msg": msg,
                "type": error_type,
                "error_count": count,
            }
            for (consumer, method, path, loc, msg, error_type), count in minute.validation_errors.items()
        ]
        server_errors = [
            {
                "consumer": consumer,
                "method": method,
                "path": path,
                "type": error_type,
                "msg": msg,
                "traceback": traceback,
                "sentry_event_id": entry[1],
                "error_count": entry[0],
            }
            for (consumer, method, path, error_type, msg, traceback), entry in minute.server_errors.items()
        ]
        last = key == newest
        consumers = (
            [
                {"identifier": identifier, "name": name, "group": group}
                for identifier, (name, group) in batch.consumers.items()
                if name or group
            ]
            if last
            else []
        )
        resources = (
            {
                "cpu_percent": batch.resources.get("cpu_percent"),
                "memory_rss": batch.resources.get("memory_rss"),
            }
            if last and batch.resources
            else None
        )
        messages.append(
            {
                "instance_uuid": batch.instance_uuid,
                "message_uuid": message_uuid(signal, digest, batch.instance_uuid, "sync", str(key)),
                "timestamp": minute.timestamp,
                "requests": requests,
                "validation_errors": validation_errors,
                "server_errors": server_errors,
                "consumers": consumers,
                "resources": resources,
            }
        )
    return messages


def request_item(key: RequestKey, counts: RequestCounts) -> dict[str, Any]:
    consumer, method, path, status = key
    item: dict[str, Any] = {
        "consumer": consumer,
        "method": method,
        "path": path,
        "status_code": status,
        "request_count": counts.count,
        "response_times": _bins(counts.response_times),
    }
    for name, total, bins in (
        ("request", counts.request_size_sum, counts.request_sizes),
        ("response", counts.response_size_sum, counts.response_sizes),
    ):
        if sum(bins.values()) > counts.count:  # series out of step (a stale point): sizes unknown
            total, bins = 0, {}
        # Re-binned sizes are spread over their source buckets, so the exact sum may fall a little
        # outside what the bins allow (bin k: k * 1000 .. k * 1000 + 999 bytes); the protocol's
        # rule holds the sum within them.
        low = sum(count * kb * 1000 for kb, count in bins.items())
        high = sum(count * (kb * 1000 + 999) for kb, count in bins.items())
        item[f"{name}_size_sum"] = min(max(total, low), high)
        item[f"{name}_sizes"] = _bins(bins)
    binned = sum(counts.response_times.values())
    if binned != counts.count:  # a malformed point (its buckets do not add up to its count)
        if binned:
            item["request_count"] = binned
        else:
            item["response_times"] = {"0": counts.count}
    return item


def response_time_bins(intervals: list[rebinning.Interval]) -> dict[int, int]:
    return {key * 10: count for key, count in rebinning.to_bins(intervals, 10.0).items()}


def size_bins(intervals: list[rebinning.Interval]) -> dict[int, int]:
    return rebinning.to_bins(intervals, 1000.0)
