"""``/v1/logs``: apitally 1.x's event records -> the startup data, consumer names and groups,
validation errors and server errors.

- ``apitally.app.startup``: a JSON body with the framework, versions, paths and OpenAPI document;
- ``apitally.consumer.update``: ``{identifier, name, group}`` of a consumer (spans carry only the
  identifier);
- ``apitally.request.validation_error`` / ``apitally.request.server_error``: errors aggregated
  over one export cycle, with ``counts`` per consumer (the hub adds them up across batches).

Other records — the app's own log lines — that carry a trace context join the request-log item
of their request: the SERVER span that ``apitally.request.server_span_id`` names (apitally 1.x),
else the record's own span (an SDK's handler logs inside the SERVER span).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord

from apitally_hub.ingest.otlp import values
from apitally_hub.ingest.otlp.batch import InstanceBatch, consumer_id, cut_message, short_name
from apitally_hub.ingest.otlp.decoding import hex_id
from apitally_hub.ingest.otlp.traces import request_uuid

STARTUP = "apitally.app.startup"
CONSUMER_UPDATE = "apitally.consumer.update"
VALIDATION_ERROR = "apitally.request.validation_error"
SERVER_ERROR = "apitally.request.server_error"
EVENTS = frozenset({STARTUP, CONSUMER_UPDATE, VALIDATION_ERROR, SERVER_ERROR})

MAX_PATHS = 5000
MAX_VERSIONS = 100
MAX_OPENAPI = 4_000_000
MAX_COUNTS = 1000


@dataclass
class LogsBatch:
    batches: dict[str, InstanceBatch] = field(default_factory=dict)
    rejected: int = 0
    notes: list[str] = field(default_factory=list)


def event_name(record: LogRecord, attrs: Mapping[str, Any]) -> str:
    return record.event_name or values.text(attrs.get("event.name")) or ""


def _body(record: LogRecord) -> Any:
    body = values.any_value(record.body)
    if isinstance(body, (str, bytes)) and len(body) <= MAX_OPENAPI + 1_000_000:
        try:
            return json.loads(body)
        except ValueError:
            return None
    return body


def extract(request: ExportLogsServiceRequest, window_start: float, now: float | None = None) -> LogsBatch:
    now = time.time() if now is None else now
    result = LogsBatch()
    for resource_logs in request.resource_logs:
        resource = values.attributes(resource_logs.resource.attributes)
        instance = values.instance_uuid(resource)
        batch = result.batches.get(instance)
        if batch is None:
            batch = result.batches[instance] = InstanceBatch.of(instance, resource)
        for scope_logs in resource_logs.scope_logs:
            for record in scope_logs.log_records:
                attrs = values.attributes(record.attributes) if not record.event_name else {}
                name = event_name(record, attrs)
                if name not in EVENTS:
                    if not name and _attach(batch, record, attrs, scope_logs.scope.name, now):
                        continue
                    if not name and record.trace_id:
                        result.rejected += 1
                    continue
                timestamp = (record.time_unix_nano or record.observed_time_unix_nano) / 1e9 or now
                if not window_start <= timestamp <= now + 300:
                    result.rejected += 1
                    continue
                timestamp = min(timestamp, now)
                body = _body(record)
                if not isinstance(body, dict) or not _event(batch, name, body, timestamp, resource):
                    result.rejected += 1
    return result


SEVERITY_NAMES = ((21, "CRITICAL"), (17, "ERROR"), (13, "WARNING"), (9, "INFO"), (5, "DEBUG"), (1, "TRACE"))
MAX_RECORDS_PER_REQUEST = 1000


def _attach(
    batch: InstanceBatch, record: LogRecord, attrs: Mapping[str, Any], scope: str, now: float
) -> bool:
    """Keep an app log record for its request's item (§5 ``logs``); False when it has no trace
    context or its request already holds the most records kept."""
    trace_id = hex_id(record.trace_id)
    span_id = values.text(attrs.get("apitally.request.server_span_id")) or hex_id(record.span_id)
    if trace_id is None or not span_id:
        return False
    records = batch.log_attachments.setdefault(request_uuid(trace_id, span_id.lower()), [])
    if len(records) >= MAX_RECORDS_PER_REQUEST:
        return False
    level = record.severity_text or next(
        (name for number, name in SEVERITY_NAMES if record.severity_number >= number), "INFO"
    )
    body = values.any_value(record.body)
    message = body if isinstance(body, str) else json.dumps(body, default=str) if body is not None else ""
    entry: dict[str, Any] = {
        "timestamp": min((record.time_unix_nano or record.observed_time_unix_nano) / 1e9 or now, now),
        "logger": (values.text(values.first(attrs, "logger.name", "code.namespace")) or scope or "")[:256],
        "level": level[:32],
        "message": cut_message(message),
    }
    path = values.text(values.first(attrs, "code.file.path", "code.filepath"))
    line = values.integer(values.first(attrs, "code.line.number", "code.lineno"))
    if path:
        entry["file"] = path[:1024]
    if line is not None and line >= 0:
        entry["line"] = line
    records.append(entry)
    return True


def _event(
    batch: InstanceBatch, name: str, body: dict[str, Any], timestamp: float, resource: dict[str, Any]
) -> bool:
    if name == STARTUP:
        batch.startup = startup_message(batch.instance_uuid, body, resource)
        batch.heartbeat_time = max(batch.heartbeat_time, timestamp)
        return True
    if name == CONSUMER_UPDATE:
        identifier = consumer_id(values.text(body.get("identifier")))
        if identifier is None:
            return False
        batch.add_consumer(
            identifier, short_name(values.text(body.get("name"))), short_name(values.text(body.get("group")))
        )
        return True
    method = (values.text(body.get("method")) or "").upper()
    path = values.text(body.get("path"))
    counts = body.get("counts")
    if not method or not path or not isinstance(counts, list):
        return False
    for entry in counts[:MAX_COUNTS]:
        count = values.integer(entry.get("count")) if isinstance(entry, dict) else None
        if count is None or count <= 0:
            continue
        consumer = consumer_id(values.text(entry.get("consumer")))
        if name == VALIDATION_ERROR:
            source = values.text(body.get("source")) or ""
            field_path = values.text(body.get("field")) or ""
            loc = tuple(part for part in [source, *field_path.split(".")] if part)
            batch.add_validation_error(
                timestamp,
                consumer,
                method,
                path[:2000],
                loc,
                values.text(body.get("message")) or "",
                values.text(body.get("type")) or "",
                count,
            )
        else:
            batch.add_server_error(
                timestamp,
                consumer,
                method,
                path[:2000],
                values.text(body.get("type")) or "Exception",
                values.text(body.get("message")) or "",
                values.text(body.get("stacktrace")) or "",
                count,
                (values.text(body.get("sentry_event_id")) or "")[:64] or None,
            )
    return True


def startup_message(instance: str, body: dict[str, Any], resource: Mapping[str, Any]) -> dict[str, Any]:
    """The classic startup message (hub-protocol.md §3) of an apitally 1.x startup record; its
    ``message_uuid`` is set by the caller."""
    paths = []
    raw_paths = body.get("paths")
    for entry in raw_paths[:MAX_PATHS] if isinstance(raw_paths, list) else ():
        if isinstance(entry, dict):
            method, path = values.text(entry.get("method")), values.text(entry.get("path"))
            if method and path and method.upper() not in ("HEAD", "OPTIONS"):
                paths.append({"method": method.upper(), "path": path[:2000]})
    versions: dict[str, str] = {}
    raw_versions = body.get("versions")
    for key, value in list(raw_versions.items())[:MAX_VERSIONS] if isinstance(raw_versions, dict) else ():
        text = values.text(value)
        if isinstance(key, str) and key and text:
            versions[key[:64]] = text[:64]
    distro = values.text(resource.get("telemetry.distro.name"))
    distro_version = values.text(resource.get("telemetry.distro.version"))
    if distro and distro_version:
        versions.setdefault(distro[:64], distro_version[:64])
    framework = values.text(body.get("framework")) or "unknown"
    message: dict[str, Any] = {
        "instance_uuid": instance,
        "message_uuid": "",
        "paths": paths,
        "versions": versions,
        "client": f"python:{framework}"[:64],
    }
    openapi = body.get("openapi")
    if isinstance(openapi, str) and len(openapi) <= MAX_OPENAPI:
        message["openapi"] = openapi
    return message
