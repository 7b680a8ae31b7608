"""OTLP ingest on a hub that needs tokens: the write token is the credential of ``/v1/`` (the
hub's read and admin tokens are not, nor is a write token anywhere else), and the client-id
allow-list holds for OTLP as for ``/v2``."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from apitally_hub import HubServer

ADMIN = "admin-token-0123456789abcdef"
PROTOBUF = {"Content-Type": "application/x-protobuf"}


def _one_span() -> bytes:
    request = ExportTraceServiceRequest()
    scope = request.resource_spans.add().scope_spans.add()
    now = time.time_ns()
    span = scope.spans.add(
        trace_id=uuid.uuid4().bytes,
        span_id=uuid.uuid4().bytes[:8],
        name="GET /items",
        kind=Span.SPAN_KIND_SERVER,
        start_time_unix_nano=now - 5_000_000,
        end_time_unix_nano=now,
    )
    for key, value in (("http.request.method", "GET"), ("http.route", "/items")):
        span.attributes.add(key=key).value.string_value = value
    span.attributes.add(key="http.response.status_code").value.int_value = 200
    return request.SerializeToString()


@pytest.fixture(scope="module")
def guarded() -> Iterator[HubServer]:
    with HubServer(tokens=[ADMIN]) as hub:
        yield hub


def _app(http: httpx.Client) -> tuple[str, str]:
    response = http.post(
        "/api/apps",
        json={"name": "Guarded", "framework": "fastapi", "envs": ["prod"]},
        headers={"Authorization": f"Bearer {ADMIN}"},
    )
    assert response.status_code == 201, response.text
    return response.json()["client_id"], response.json()["write_token"]


def test_the_write_token_is_the_credential_of_otlp(guarded: HubServer) -> None:
    with httpx.Client(base_url=guarded.url) as http:
        client_id, write_token = _app(http)
        accepted = http.post(
            "/v1/traces", content=_one_span(), headers={**PROTOBUF, "Authorization": f"Bearer {write_token}"}
        )
        assert accepted.status_code == 200, accepted.text
        assert ExportTraceServiceResponse.FromString(accepted.content) == ExportTraceServiceResponse()
        assert accepted.headers["apitally-export-interval"] == "15"
        # the hub's admin token names no app: not an OTLP credential
        refused = http.post(
            "/v1/traces", content=_one_span(), headers={**PROTOBUF, "Authorization": f"Bearer {ADMIN}"}
        )
        assert refused.status_code == 401
        assert http.post("/v1/traces", content=_one_span(), headers=PROTOBUF).status_code == 401
        # nor is a write token a credential of the query API
        read = http.get(f"/api/{client_id}/prod/requests", headers={"Authorization": f"Bearer {write_token}"})
        assert read.status_code == 401
        guarded.settle()
        items = http.get(f"/api/{client_id}/prod/requests", headers={"Authorization": f"Bearer {ADMIN}"})
        assert items.status_code == 200 and items.json()["total"] == 1


def test_the_client_id_allow_list_holds_for_otlp(tmp_path: Path) -> None:
    db = tmp_path / "hub.sqlite"
    with HubServer(db, tokens=[ADMIN]) as hub, httpx.Client(base_url=hub.url) as http:
        _, write_token = _app(http)  # made before the hub was limited to other client ids
    with HubServer(db, client_ids=[str(uuid.uuid4())]) as hub, httpx.Client(base_url=hub.url) as http:
        refused = http.post(
            "/v1/traces", content=_one_span(), headers={**PROTOBUF, "Authorization": f"Bearer {write_token}"}
        )
        assert refused.status_code == 401
