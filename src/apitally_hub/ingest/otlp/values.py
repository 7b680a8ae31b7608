"""OTLP ``AnyValue`` / ``KeyValue`` lists as plain Python values, and the resource facts the hub
reads (instance, env, sender)."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

MAX_DEPTH = 8
"""Nesting kept of array and kvlist values (deeper ones become None): a hostile sender's deep
nesting must not recurse without bound."""

INSTANCE_NAMESPACE = uuid.UUID("6f1b8a52-4d0e-4c5e-9a57-0e7c2d9b1a11")
"""Namespace of the instance uuids made from OTLP resources (uuid5)."""


def any_value(value: AnyValue, depth: int = 0) -> Any:
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "int_value":
        return value.int_value
    if kind == "double_value":
        return value.double_value
    if kind == "bytes_value":
        return value.bytes_value
    if depth >= MAX_DEPTH:
        return None
    if kind == "array_value":
        return [any_value(item, depth + 1) for item in value.array_value.values]
    return {item.key: any_value(item.value, depth + 1) for item in value.kvlist_value.values}


def attributes(key_values: Iterable[KeyValue]) -> dict[str, Any]:
    return {item.key: any_value(item.value) for item in key_values}


def text(value: Any) -> str | None:
    """A scalar attribute as text (a one-element array as its element), else None."""
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return None


def integer(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) < 19:
        return int(value)
    return None


def first(attrs: Mapping[str, Any], *keys: str) -> Any:
    for key in keys:
        value = attrs.get(key)
        if value is not None and value != "":
            return value
    return None


def instance_uuid(resource: Mapping[str, Any]) -> str:
    """The hub's instance uuid for a resource: from ``service.instance.id`` when the sender sets it
    (apitally 1.x does: a uuid4 per process), else from the resource's attributes as a whole (a
    plain SDK's resource: service name, SDK, host, process where its detectors add them)."""
    instance = text(resource.get("service.instance.id"))
    if instance:
        try:  # a UUID (apitally 1.x's, the SDKs' when they make one) is the instance's own
            return str(uuid.UUID(instance))
        except ValueError:
            return str(uuid.uuid5(INSTANCE_NAMESPACE, "id:" + instance))
    items = sorted((key, repr(value)) for key, value in resource.items())
    digest = hashlib.sha256(repr(items).encode()).hexdigest()
    return str(uuid.uuid5(INSTANCE_NAMESPACE, "resource:" + digest))


def resource_env(resource: Mapping[str, Any]) -> str | None:
    return text(first(resource, "deployment.environment.name", "deployment.environment"))


def is_apitally(resource: Mapping[str, Any]) -> bool:
    """apitally 1.x (``telemetry.distro.name`` ``apitally-py``, or another language's apitally
    distro): its spans are a sample (request logging) and its errors come as aggregated log
    records, so neither is counted from its spans."""
    distro = text(resource.get("telemetry.distro.name")) or ""
    return distro.startswith("apitally")


def resource_startup(instance: str, resource: Mapping[str, Any]) -> dict[str, Any]:
    """A startup message (hub-protocol.md §3) of what a resource says of its process: the SDK's
    language as ``client`` (``otlp:python``), and the service, SDK and runtime versions."""
    language = text(resource.get("telemetry.sdk.language")) or "unknown"
    versions: dict[str, str] = {}
    for name, key in (
        ("app", "service.version"),
        (text(resource.get("telemetry.sdk.name")) or "opentelemetry", "telemetry.sdk.version"),
        (text(resource.get("process.runtime.name")) or "runtime", "process.runtime.version"),
    ):
        value = text(resource.get(key))
        if value:
            versions[name[:64]] = value[:64]
    return {
        "instance_uuid": instance,
        "message_uuid": "",
        "paths": [],
        "versions": versions,
        "client": f"otlp:{language}"[:64],
    }
