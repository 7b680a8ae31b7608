"""Custom request attributes end to end: an app calling ``set_request_attribute`` under uvicorn
(instrument_app, and zero code), request logging on, the real local hub on each storage backend;
the items carry the attributes and the JSON API's ``attribute=key:value`` filter finds them."""

from __future__ import annotations

import csv
import io
import os
import sys
import uuid
from pathlib import Path

import httpx

from apitally_hub import HubServer
from tests.support.servers import app_process

INSTRUMENT = (os.path.join(os.path.dirname(sys.executable), "opentelemetry-instrument"),)
TARGET = "tests.support.apps.attributes_app:app"


def traffic(base_url: str) -> None:
    with httpx.Client(base_url=base_url, timeout=10) as client:
        for order_id in range(1, 10):
            tenant = "acme" if order_id % 2 else "globex"
            response = client.get(f"/orders/{order_id}", headers={"x-tenant": tenant})
            assert response.json() == {"id": order_id, "tenant": tenant}
        assert client.get("/orders/10").status_code == 200  # no tenant
        for _ in range(2):
            assert client.get("/untagged").json() == {"ok": "yes"}


def order_ids(hub: HubServer, client_id: str, **params: str) -> list[int]:
    items = hub.query(client_id, "dev", "requests", since="1h", limit=100, **params)["items"]
    return sorted(int(item["url"].rsplit("/", 1)[-1]) for item in items if "/orders/" in item["url"])


def check(hub: HubServer, client_id: str, output: str) -> None:
    answer = hub.query(client_id, "dev", "requests", since="1h", limit=100)
    assert answer["total"] == 12, output
    attributes = {}
    for row in answer["items"]:
        request = hub.query(client_id, "dev", f"requests/{row['uuid']}")["item"]["request"]
        attributes[request["url"].rsplit("/", 1)[-1]] = request.get("attributes")
    assert attributes["7"] == {"tenant": "acme", "order.priority": "1", "express": "True"}
    assert attributes["2"] == {"tenant": "globex", "order.priority": "2", "express": "False"}
    assert attributes["10"] == {"order.priority": "1", "express": "False"}
    assert attributes["untagged"] is None  # an item without attributes has no such key
    # The filter: exact value, the others left out.
    assert order_ids(hub, client_id, attribute="tenant:acme") == [1, 3, 5, 7, 9]
    assert order_ids(hub, client_id, attribute="tenant:globex") == [2, 4, 6, 8]
    assert order_ids(hub, client_id, attribute="order.priority:1") == [1, 4, 7, 10]
    assert order_ids(hub, client_id, attribute="express:True") == [7]
    assert order_ids(hub, client_id, attribute="tenant:acm") == []  # exact, not a substring
    assert order_ids(hub, client_id, attribute="tenant:ACME") == []
    assert order_ids(hub, client_id, attribute="plan:acme") == []
    assert order_ids(hub, client_id, attribute="tenant:acme", status="2xx", q="/orders/") == [1, 3, 5, 7, 9]
    filtered = hub.query(client_id, "dev", "requests", since="1h", attribute="tenant:globex")
    assert filtered["total"] == 4 and filtered["attribute_search_scanned_at_most"] == 5000
    # Paged with the cursor, one at a time.
    seen, cursor = [], None
    while True:
        extra = {"cursor": cursor} if cursor else {}
        page = hub.query(client_id, "dev", "requests", since="1h", attribute="tenant:acme", limit=2, **extra)
        seen += [int(item["url"].rsplit("/", 1)[-1]) for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [9, 7, 5, 3, 1]
    with httpx.Client(base_url=hub.url, timeout=10) as http:
        bad = http.get(f"/api/{client_id}/dev/requests", params={"attribute": "no colon"})
        assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["query", "attribute"]
        bad_key = http.get(f"/api/{client_id}/dev/requests", params={"attribute": "bad key:x"})
        assert bad_key.status_code == 422 and bad_key.json()["detail"][0]["loc"] == ["query", "attribute"]
        # The CSV download follows the filter.
        exported = http.get(
            f"/api/{client_id}/dev/requests",
            params={"since": "1h", "attribute": "tenant:globex", "format": "csv"},
        )
        assert exported.status_code == 200, exported.text
        rows = list(csv.DictReader(io.StringIO(exported.text)))
        assert sorted(row["url"].rsplit("/", 1)[-1] for row in rows) == ["2", "4", "6", "8"]
    assert hub.query(client_id, "dev", "rejections")["rejections"] == []


def test_instrument_app_through_the_local_hub(hub_db: str | Path) -> None:
    client_id = str(uuid.uuid4())
    with HubServer(hub_db) as hub:
        environment = {
            "APITALLY_CLIENT_ID": client_id,
            "APITALLY_HUB_BASE_URL": hub.url,
            "APITALLY_SYNC_INTERVAL": "1",
            "APITALLY_REQUEST_LOGGING_ENABLED": "true",
        }
        with app_process(TARGET, environment) as process:
            process.wait_ready("/__ready__")
            traffic(process.url)
        check(hub, client_id, process.output)


def test_zero_code_through_the_local_hub() -> None:
    client_id = str(uuid.uuid4())
    with HubServer() as hub:
        environment = {
            "ZERO_CODE": "1",
            "APITALLY_CLIENT_ID": client_id,
            "APITALLY_HUB_BASE_URL": hub.url,
            "APITALLY_REQUEST_LOGGING_ENABLED": "true",
            "OTEL_METRIC_EXPORT_INTERVAL": "1000",
            "OTEL_METRICS_EXPORTER": "none",
            "OTEL_TRACES_EXPORTER": "none",
            "OTEL_LOGS_EXPORTER": "none",
        }
        with app_process(TARGET, environment, prefix=INSTRUMENT) as process:
            process.wait_ready("/__ready__")
            traffic(process.url)
        check(hub, client_id, process.output)
