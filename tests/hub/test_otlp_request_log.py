"""Request-log items from OTLP: a SERVER span's URL, headers, bodies, custom attributes, exception
and the spans under it, and the request's log records sent later on ``/v1/logs``; OTLP/JSON
answered in JSON."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from apitally_hub import HubServer


def _attrs(target: Any, values: dict[str, Any]) -> None:
    for key, value in values.items():
        item: KeyValue = target.add(key=key)
        if isinstance(value, list):
            for text in value:
                item.value.array_value.values.add().string_value = text
        elif isinstance(value, int):
            item.value.int_value = value
        else:
            item.value.string_value = value


@pytest.fixture(scope="module")
def hub() -> Iterator[HubServer]:
    with HubServer(otlp_span_hold=0.5) as server:  # span counts released soon (no metrics come)
        yield server


def _app(http: httpx.Client) -> tuple[str, dict[str, str]]:
    created = http.post("/api/apps", json={"name": "Logs", "framework": "fastapi", "envs": ["prod"]}).json()
    return created["client_id"], {"Authorization": f"Bearer {created['write_token']}"}


def test_an_item_with_everything_and_its_log_records(hub: HubServer) -> None:
    trace_id, server_id, child_id = uuid.uuid4().bytes, uuid.uuid4().bytes[:8], uuid.uuid4().bytes[:8]
    now = time.time_ns()
    traces = ExportTraceServiceRequest()
    resource_spans = traces.resource_spans.add()
    _attrs(
        resource_spans.resource.attributes, {"service.instance.id": "i-1", "telemetry.sdk.language": "python"}
    )
    scope = resource_spans.scope_spans.add()
    server = scope.spans.add(
        trace_id=trace_id,
        span_id=server_id,
        name="POST /orders/{id}",
        kind=Span.SPAN_KIND_SERVER,
        start_time_unix_nano=now - 50_000_000,
        end_time_unix_nano=now,
    )
    _attrs(
        server.attributes,
        {
            "http.request.method": "POST",
            "http.route": "/orders/{id}",
            "http.response.status_code": 500,
            "url.scheme": "https",
            "server.address": "api.example.com",
            "url.path": "/orders/7",
            "url.query": "token=[REDACTED]",
            "client.address": "203.0.113.7",
            "http.request.header.x-api-key": ["[REDACTED]"],
            "http.response.header.content-type": ["application/json"],
            "apitally.request.body": '{"card_number":"[REDACTED]"}',
            "apitally.consumer.identifier": "acme",
            "apitally.consumer.name": "Acme Corp",
            "apitally.request.attribute.tenant": "t-42",
        },
    )
    event = server.events.add(name="exception", time_unix_nano=now - 1_000_000)
    _attrs(
        event.attributes,
        {
            "exception.type": "ValueError",
            "exception.message": "bad <order>",
            "exception.stacktrace": "Traceback…",
        },
    )
    child = scope.spans.add(
        trace_id=trace_id,
        span_id=child_id,
        parent_span_id=server_id,
        name="SELECT orders",
        kind=Span.SPAN_KIND_CLIENT,
        start_time_unix_nano=now - 40_000_000,
        end_time_unix_nano=now - 30_000_000,
    )
    _attrs(child.attributes, {"db.system": "postgresql"})
    logs = ExportLogsServiceRequest()
    resource_logs = logs.resource_logs.add()
    _attrs(resource_logs.resource.attributes, {"service.instance.id": "i-1"})
    record = resource_logs.scope_logs.add().log_records.add(
        time_unix_nano=now - 20_000_000, severity_number=13, trace_id=trace_id, span_id=server_id
    )
    record.body.string_value = "order 7 rejected"
    _attrs(record.attributes, {"code.file.path": "/app/orders.py", "code.line.number": 42})

    with httpx.Client(base_url=hub.url) as http:
        client_id, auth = _app(http)
        headers = {**auth, "Content-Type": "application/json"}
        answer = http.post("/v1/traces", content=json_format.MessageToJson(traces), headers=headers)
        # MessageToJson writes ids as base64 (protobuf's mapping); OTLP/JSON wants hex: refused
        assert answer.status_code == 400, answer.text
        body = json_format.MessageToDict(traces)
        for span in body["resourceSpans"][0]["scopeSpans"][0]["spans"]:
            for key in ("traceId", "spanId", "parentSpanId"):
                if key in span:
                    span[key] = base64.b64decode(span[key]).hex()
        answer = http.post("/v1/traces", content=json.dumps(body), headers=headers)
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"].startswith("application/json") and answer.json() == {}
        hub.settle()
        answer = http.post(
            "/v1/logs",
            content=logs.SerializeToString(),
            headers={**auth, "Content-Type": "application/x-protobuf"},
        )
        assert answer.status_code == 200, answer.text
        hub.settle()
        listed = hub.query(client_id, "prod", "requests")["items"]
        assert len(listed) == 1
        item = http.get(f"/api/{client_id}/prod/requests/{listed[0]['uuid']}").json()["item"]
    assert item["request"]["client_ip"] == "203.0.113.7"
    request, response = item["request"], item["response"]
    assert request["url"] == "https://api.example.com/orders/7?token=[REDACTED]"
    assert request["path"] == "/orders/{id}" and request["consumer"] == "acme"
    assert ["x-api-key", "[REDACTED]"] in request["headers"]
    assert base64.b64decode(request["body"]) == b'{"card_number":"[REDACTED]"}'
    assert request["attributes"] == {"tenant": "t-42"}
    assert response["status_code"] == 500 and abs(response["response_time"] - 0.05) < 1e-6
    assert item["exception"]["type"] == "ValueError" and item["exception"]["message"] == "bad <order>"
    assert [span["name"] for span in item["spans"]] == ["SELECT orders"]
    assert item["logs"] == [
        {
            "timestamp": pytest.approx((now - 20_000_000) / 1e9),
            "logger": "",
            "level": "WARNING",
            "message": "order 7 rejected",
            "file": "/app/orders.py",
            "line": 42,
        }
    ]
    errors = hub.query(client_id, "prod", "server-errors")["server_errors"]
    assert [(e["type"], e["msg"], e["path"]) for e in errors] == [
        ("ValueError", "bad <order>", "/orders/{id}")
    ]
    # counted from the span once the hold is over (no metrics came): the consumer with its traffic
    deadline = time.monotonic() + 20
    while not (consumers := hub.query(client_id, "prod", "consumers")["consumers"]):
        assert time.monotonic() < deadline, "the held span counts were never released"
        hub.settle()
    assert [(c["identifier"], c["name"], c["requests"]) for c in consumers] == [("acme", "Acme Corp", 1)]
    endpoints = hub.query(client_id, "prod", "endpoints")["endpoints"]
    assert [(e["method"], e["path"], e["status_codes"]) for e in endpoints] == [
        ("POST", "/orders/{id}", {"500": 1})
    ]
