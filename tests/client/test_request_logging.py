"""Request logging end to end: app under uvicorn -> gzip NDJSON files -> the local hub."""

from __future__ import annotations

import base64
import gzip
import io
import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from apitally_hub import HubServer
from apitally_hub.report.report import run_report
from apitally_otel._request_log.log_capture import RawLogItem
from apitally_otel._request_log.log_item import ItemBuilder
from apitally_otel.request_logging import RequestLoggingConfig
from tests.support.servers import app_process

ALL_ON = {
    "APITALLY_REQUEST_LOGGING_ENABLED": "true",
    "APITALLY_REQUEST_LOGGING_LOG_REQUEST_HEADERS": "true",
    "APITALLY_REQUEST_LOGGING_LOG_REQUEST_BODY": "true",
    "APITALLY_REQUEST_LOGGING_LOG_RESPONSE_BODY": "true",
    "APITALLY_REQUEST_LOGGING_CAPTURE_LOGS": "true",
    "APITALLY_REQUEST_LOGGING_CAPTURE_TRACES": "true",
}


@pytest.fixture
def hub() -> Iterator[HubServer]:
    with HubServer() as server:
        yield server


def run(hub: HubServer, traffic: Any, **env: str) -> tuple[str, list[dict[str, Any]], str]:
    client_id = str(uuid.uuid4())
    environment = {
        "APITALLY_CLIENT_ID": client_id,
        "APITALLY_HUB_BASE_URL": hub.url,
        "APITALLY_SYNC_INTERVAL": "1",
        **env,
    }
    with app_process("tests.support.apps.logging_app:app", environment) as process:
        process.wait_ready("/__ready__")
        with httpx.Client(base_url=process.url, timeout=10) as client:
            traffic(client)
    page = hub.query(client_id, "dev", "requests", limit=1000)
    items = [hub.query(client_id, "dev", f"requests/{row['uuid']}")["item"] for row in page["items"]]
    return client_id, items, process.output


def by_path(items: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for item in items:
        out.setdefault(item["request"]["path"], []).append(item)
    return out


def body(part: dict[str, Any]) -> bytes:
    return base64.b64decode(part["body"])


def test_everything_on(hub: HubServer) -> None:
    def traffic(client: httpx.Client) -> None:
        client.post(
            "/echo?x=1", json={"hello": "world"}, headers={"x-consumer": "acme", "x-forwarded-proto": "https"}
        )
        client.get("/work")
        client.get("/big")
        client.get("/binary")
        client.get("/stream")
        client.get("/fail")
        client.get("/healthz")
        client.get("/work", headers={"user-agent": "kube-probe/1.29"})
        client.post(
            "/echo",
            content=gzip.compress(b'{"a": 1}'),
            headers={"content-encoding": "gzip", "content-type": "application/json"},
        )

    client_id, items, output = run(hub, traffic, **ALL_ON)
    paths = by_path(items)
    assert sorted((p, len(v)) for p, v in paths.items()) == [
        ("/big", 1),
        ("/binary", 1),
        ("/echo", 2),
        ("/fail", 1),
        ("/stream", 1),
        ("/work", 1),
    ], output  # health checks and kube-probe are not logged
    echo = next(i for i in paths["/echo"] if i["request"].get("consumer") == "acme")
    assert echo["request"]["url"].startswith("https://") and echo["request"]["url"].endswith("/echo?x=1")
    assert json.loads(body(echo["request"])) == {"hello": "world"}
    assert json.loads(body(echo["response"])) == {"hello": "world"}
    assert ["x-consumer", "acme"] in echo["request"]["headers"]
    assert echo["response"]["status_code"] == 200 and echo["response"]["response_time"] > 0
    gz = next(i for i in paths["/echo"] if i is not echo)
    assert gzip.decompress(body(gz["request"])) == b'{"a": 1}'  # raw bytes, as received
    work = paths["/work"][0]
    assert [(r["level"], r["message"]) for r in work["logs"]] == [
        ("INFO", "working on order-42"),
        ("WARNING", "slow downstream"),
    ]
    span_names = {s["name"] for s in work["spans"]}
    assert "db.query" in span_names and any(s["kind"] == "SERVER" for s in work["spans"])
    assert len(work["trace_id"]) == 32 and int(work["trace_id"], 16) != 0
    assert body(paths["/big"][0]["response"]) == b"<body too large>"
    assert "body" not in paths["/binary"][0]["response"]
    assert body(paths["/stream"][0]["response"]) == b'{"chunk": 0}\n{"chunk": 1}\n{"chunk": 2}\n'
    failure = paths["/fail"][0]
    assert failure["exception"]["type"] == "builtins.KeyError" and failure["response"]["status_code"] == 500
    # ... and `apitally-otel report` shows the request log, with filters.
    out, err = io.StringIO(), io.StringIO()
    assert (
        run_report(
            hub.url, client_id, "dev", as_json=True, out=out, err=err, request_filters={"path": "/echo"}
        )
        == 0
    )
    report = json.loads(out.getvalue())
    assert report["requests_total"] == 2 and {r["path"] for r in report["requests"]} == {"/echo"}
    out = io.StringIO()
    assert run_report(hub.url, client_id, "dev", out=out, err=err, request_filters={"status": "5xx"}) == 0
    assert "Request log (latest 1 of 1)" in out.getvalue() and "/fail" in out.getvalue()


SECRETS = [
    "s3cr3t-bearer",
    "cookie-value-xyz",
    "key-abc-123",
    "qp-api-key-9",
    "qp-token-8",
    "pw-hunter2",
    "4111111111111111",
    "hunter2-response",
]


def test_no_secret_reaches_the_hub(hub: HubServer) -> None:
    def traffic(client: httpx.Client) -> None:
        headers = {
            "Authorization": "Bearer s3cr3t-bearer",
            "Cookie": "session=cookie-value-xyz",
            "X-API-Key": "key-abc-123",
        }
        body = {
            "user": "ann",
            "password": "pw-hunter2",
            "items": [{"card_number": "4111111111111111", "n": 1}],
        }
        client.post("/echo?api_key=qp-api-key-9&token=qp-token-8&page=2", json=body, headers=headers)
        client.get("/account", headers=headers)

    _, items, _ = run(hub, traffic, **ALL_ON)
    assert len(items) == 2
    everything = json.dumps(items)
    decoded = "".join(
        base64.b64decode(part["body"]).decode()
        for item in items
        for part in (item["request"], item["response"])
        if "body" in part
    )
    for secret in SECRETS:
        assert secret not in everything and secret not in decoded, secret
    echo = next(i for i in items if i["request"]["path"] == "/echo")
    assert "page=2" in echo["request"]["url"] and "api_key=******" in echo["request"]["url"]
    assert json.loads(body(echo["request"]))["items"][0] == {"card_number": "******", "n": 1}
    assert ["authorization", "******"] in echo["request"]["headers"]


def test_defaults_log_little(hub: HubServer) -> None:
    def traffic(client: httpx.Client) -> None:
        client.post("/echo", json={"a": 1}, headers={"x-secret-ish": "v"})

    _, items, _ = run(hub, traffic, APITALLY_REQUEST_LOGGING_ENABLED="true")
    (item,) = items
    assert (
        "body" not in item["request"] and "headers" not in item["request"] and "body" not in item["response"]
    )
    assert item["response"]["headers"]  # response headers are on by default
    assert "logs" not in item and "spans" not in item


def test_the_hub_finds_a_request_by_its_client_ip(hub: HubServer) -> None:
    client_id, items, _ = run(
        hub, lambda client: client.get("/work"), APITALLY_REQUEST_LOGGING_ENABLED="true"
    )
    (item,) = items
    assert item["request"]["client_ip"] == "127.0.0.1"  # uvicorn's scope["client"]
    found = hub.query(client_id, "dev", "requests", client_ip="127.0.0.1")
    assert [row["uuid"] for row in found["items"]] == [item["uuid"]]
    assert hub.query(client_id, "dev", "requests", client_ip="10.9.9.9")["items"] == []


def test_off_by_default(hub: HubServer) -> None:
    _, items, _ = run(hub, lambda client: client.get("/work"))
    assert items == []


def test_quota_suspends_logging(hub: HubServer) -> None:
    hub.faults.add("log", 402, times=1, headers={"Retry-After": "3600"})

    def traffic(client: httpx.Client) -> None:
        import time

        for _ in range(3):
            client.get("/work")
        time.sleep(2.5)  # the first upload gets the 402
        for _ in range(3):
            client.get("/work")

    client_id, items, output = run(hub, traffic, APITALLY_REQUEST_LOGGING_ENABLED="true")
    assert items == [], output
    assert output.count("request log quota reached (402)") == 1
    endpoints = hub.query(client_id, "dev", "endpoints")["endpoints"]
    assert endpoints[0]["requests"] == 6  # metrics are unaffected


# -- the item builder on its own -----------------------------------------------------------------


def raw(scope_extra: dict[str, Any] | None = None, **fields: Any) -> RawLogItem:
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/p",
        "query_string": b"",
        "headers": [(b"host", b"h")],
        "scheme": "http",
    }
    scope.update(scope_extra or {})
    fields.setdefault("status_code", 200)
    return RawLogItem(1.0, "GET", "/p", scope, response_time=0.1, **fields)


def build(config: RequestLoggingConfig, item: RawLogItem) -> dict[str, Any] | None:
    line = ItemBuilder(config).build(item)
    return None if line is None else json.loads(line)


def test_user_patterns_add_to_defaults_and_callbacks_are_guarded() -> None:
    def explode(*args: Any) -> Any:
        raise RuntimeError("callback bug")

    config = RequestLoggingConfig(
        enabled=True,
        log_request_headers=True,
        mask_headers=["x-tenant"],
        mask_request_body=explode,
        exclude_callback=explode,
    )
    item = raw(
        {"headers": [(b"host", b"h"), (b"x-tenant", b"t1"), (b"authorization", b"a")]},
        request_body=b'{"x": 1}',
    )
    line = build(config, item)
    assert line is not None
    assert line["request"]["headers"] == [["host", "h"], ["x-tenant", "******"], ["authorization", "******"]]
    assert base64.b64decode(line["request"]["body"]) == b"<masked>"


def test_exclusions() -> None:
    config = RequestLoggingConfig(
        enabled=True, exclude_paths=["^/internal/"], exclude_callback=lambda req, res: res.status_code == 204
    )
    builder = ItemBuilder(config)
    assert (
        builder.excluded_path("/internal/x")
        and builder.excluded_path("/healthz")
        and not builder.excluded_path("/api")
    )
    assert build(config, raw(status_code=204)) is None
    assert build(config, raw({"headers": [(b"user-agent", b"GoogleHC/1.0")]})) is None
    assert build(config, raw()) is not None


def test_config_from_env() -> None:
    config = RequestLoggingConfig.from_env(
        {
            "APITALLY_REQUEST_LOGGING_ENABLED": "yes",
            "APITALLY_REQUEST_LOGGING_LOG_QUERY_PARAMS": "false",
            "APITALLY_REQUEST_LOGGING_EXCLUDE_PATHS": "^/a, ^/b",
            "APITALLY_REQUEST_LOGGING_LOG_REQUEST_BODY": "maybe",
        }
    )
    assert config.enabled and not config.log_query_params and config.exclude_paths == ("^/a", "^/b")
    assert config.log_request_body is False  # an unreadable value keeps the default


@pytest.mark.parametrize(
    ("client", "expected"),
    [
        (("127.0.0.1", 50000), "127.0.0.1"),
        (("::1", 50000, 0, 0), "::1"),
        (("testclient", 50000), None),
        (None, None),
    ],
)
def test_the_item_has_the_client_ip(client: Any, expected: str | None) -> None:
    line = build(RequestLoggingConfig(enabled=True), raw({"client": client}))
    assert line is not None
    assert line["request"].get("client_ip") == expected
