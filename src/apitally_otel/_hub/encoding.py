"""Pure conversion of metric data into hub messages (hub-protocol §3-§4). No I/O, no logging."""

from __future__ import annotations

from typing import Any

from opentelemetry.sdk.metrics.export import HistogramDataPoint, MetricsData, NumberDataPoint

from apitally_otel import _metrics as m
from apitally_otel._consumers import ATTR_GROUP, ATTR_IDENTIFIER, ATTR_NAME

RequestKey = tuple[Any, str, str, int]


def _consumer(attributes: Any) -> str | None:
    value = attributes.get(ATTR_IDENTIFIER)
    return value if isinstance(value, str) else None


def _request_key(point: HistogramDataPoint) -> RequestKey:
    a: Any = point.attributes or {}
    return (
        _consumer(a),
        str(a.get(m.ATTR_METHOD, "")).upper(),
        str(a.get(m.ATTR_ROUTE, "")),
        int(a.get(m.ATTR_STATUS, 0)),
    )


def encode_sync_items(metrics_data: MetricsData) -> dict[str, list[dict[str, Any]]]:
    """The four lists of a sync message from the metrics apitally-otel derived."""
    requests: dict[RequestKey, dict[str, Any]] = {}
    sizes: list[tuple[str, HistogramDataPoint]] = []
    validation_errors: list[dict[str, Any]] = []
    server_errors: list[dict[str, Any]] = []
    consumers: list[dict[str, Any]] = []
    for metric in m.iter_scope_metrics(metrics_data):
        points: Any = getattr(metric.data, "data_points", ())
        if metric.name == m.DURATION:
            for point in points:
                key = _request_key(point)
                item = requests.get(key)
                if item is None:
                    item = requests[key] = _request_item(key)
                item["request_count"] += point.count
                for bin_key, count in m.time_bins(point).items():
                    item["response_times"][bin_key] = item["response_times"].get(bin_key, 0) + count
        elif metric.name in (m.REQUEST_SIZE, m.RESPONSE_SIZE):
            sizes.extend((metric.name, point) for point in points)
        elif metric.name == m.VALIDATION_ERRORS:
            validation_errors.extend(_validation_item(point) for point in points)
        elif metric.name == m.SERVER_ERRORS:
            server_errors.extend(_server_error_item(point) for point in points)
        elif metric.name == m.CONSUMERS:
            consumers.extend(_consumer_item(point) for point in points)
    for name, point in sizes:
        item = requests.get(_request_key(point))
        if item is None:
            continue  # a size without a request count cannot be reported
        prefix = "request" if name == m.REQUEST_SIZE else "response"
        item[f"{prefix}_size_sum"] += int(point.sum)
        target = item[f"{prefix}_sizes"]
        for bin_key, count in m.size_bins(point).items():
            target[bin_key] = target.get(bin_key, 0) + count
    return {
        "requests": [item for item in requests.values() if item["request_count"] > 0],
        "validation_errors": validation_errors,
        "server_errors": server_errors,
        "consumers": consumers,
    }


def _request_item(key: RequestKey) -> dict[str, Any]:
    consumer, method, path, status = key
    return {
        "consumer": consumer,
        "method": method,
        "path": path,
        "status_code": status,
        "request_count": 0,
        "request_size_sum": 0,
        "response_size_sum": 0,
        "response_times": {},
        "request_sizes": {},
        "response_sizes": {},
    }


def _validation_item(point: NumberDataPoint) -> dict[str, Any]:
    a: Any = point.attributes or {}
    return {
        "consumer": _consumer(a),
        "method": str(a.get(m.ATTR_METHOD, "")).upper(),
        "path": str(a.get(m.ATTR_ROUTE, "")),
        "loc": [str(part) for part in a.get(m.ATTR_LOC, ())],
        "msg": str(a.get(m.ATTR_MSG, "")),
        "type": str(a.get(m.ATTR_TYPE, "")),
        "error_count": int(point.value),
    }


def _server_error_item(point: NumberDataPoint) -> dict[str, Any]:
    a = point.attributes or {}
    return {
        "consumer": _consumer(a),
        "method": str(a.get(m.ATTR_METHOD, "")).upper(),
        "path": str(a.get(m.ATTR_ROUTE, "")),
        "type": str(a.get(m.ATTR_EXC_TYPE, "")),
        "msg": str(a.get(m.ATTR_EXC_MESSAGE, "")),
        "traceback": str(a.get(m.ATTR_EXC_STACKTRACE, "")),
        "sentry_event_id": _string_or_none(a.get(m.ATTR_SENTRY_EVENT_ID)),
        "error_count": int(point.value),
    }


def _string_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _consumer_item(point: NumberDataPoint) -> dict[str, Any]:
    a = point.attributes or {}
    return {"identifier": str(a.get(ATTR_IDENTIFIER)), "name": a.get(ATTR_NAME), "group": a.get(ATTR_GROUP)}


def encode_sync(
    metrics_data: MetricsData,
    *,
    instance_uuid: str,
    message_uuid: str,
    timestamp: float,
    resources: dict[str, float] | None,
) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "instance_uuid": instance_uuid,
        "message_uuid": message_uuid,
        "timestamp": timestamp,
    }
    payload.update(encode_sync_items(metrics_data))
    payload["resources"] = resources
    return payload


def encode_startup(
    *,
    instance_uuid: str,
    message_uuid: str,
    paths: list[dict[str, str]],
    versions: dict[str, str],
    openapi: str | None,
) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "instance_uuid": instance_uuid,
        "message_uuid": message_uuid,
        "paths": paths,
        "versions": versions,
        "client": "python:starlette",
    }
    if openapi is not None:
        payload["openapi"] = openapi
    return payload
