"""The read-only query API: windows, time series, consumers, errors, instances, request log."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from apitally_hub import HubServer
from tests.support.hub_samples import (
    CONSUMER_ITEM,
    REQUEST_ITEM,
    SERVER_ERROR_ITEM,
    VALIDATION_ERROR_ITEM,
    gzip_lines,
    log_line,
    new_uuid,
    settling_client,
    startup,
    sync,
)


def item(**changes: Any) -> dict[str, Any]:
    """REQUEST_ITEM with ``changes``; empty size bins come with zero size sums (the hub checks
    every sum against its bins)."""
    result = {**REQUEST_ITEM, **changes}
    for bins, total in (("request_sizes", "request_size_sum"), ("response_sizes", "response_size_sum")):
        if not result[bins] and total not in changes:
            result[total] = 0
    return result


def get(http: httpx.Client, client_id: str, resource: str, **params: Any) -> Any:
    response = http.get(f"/api/{client_id}/dev/{resource}", params=params)
    assert response.status_code == 200, response.text
    return response.json()


def test_endpoint_summary_counts_errors_bytes_and_percentiles(
    http: httpx.Client, app_path: str, client_id: str
) -> None:
    requests = [
        item(),
        item(status_code=404, request_count=2, response_times={"0": 2}, request_sizes={}, response_sizes={}),
        item(
            consumer=None,
            status_code=500,
            request_count=1,
            response_times={"990": 1},
            request_sizes={},
            response_sizes={"0": 1},
            request_size_sum=0,
            response_size_sum=10,
        ),
        item(
            method="POST",
            path="/api/items",
            request_count=1,
            response_times={"20": 1},
            request_sizes={},
            response_sizes={},
        ),
    ]
    assert http.post(f"{app_path}/sync", json=sync(requests=requests)).status_code == 202
    endpoints = get(http, client_id, "endpoints")["endpoints"]
    assert [(e["method"], e["path"]) for e in endpoints] == [
        ("POST", "/api/items"),
        ("GET", "/api/items/{item_id}"),
    ]
    get_item = endpoints[1]
    assert get_item["requests"] == 45
    assert (get_item["client_errors"], get_item["server_errors"]) == (2, 1)
    assert get_item["error_rate"] == round(3 / 45, 6)
    assert get_item["request_bytes"] == REQUEST_ITEM["request_size_sum"]  # the others sent 0
    assert get_item["response_bytes"] == REQUEST_ITEM["response_size_sum"] + 10
    assert get_item["status_codes"] == {"200": 42, "404": 2, "500": 1}
    # bins {0: 32, 10: 9, 120: 3, 990: 1}, N = 45: p50 rank 23 -> 0; p95 rank 43 -> 120; p99 rank 45 -> 990
    assert (get_item["p50_ms"], get_item["p95_ms"], get_item["p99_ms"]) == (0, 120, 990)


def test_include_idle_lists_paths_from_startup(http: httpx.Client, app_path: str, client_id: str) -> None:
    assert http.post(f"{app_path}/startup", json=startup()).status_code == 202
    assert get(http, client_id, "endpoints")["endpoints"] == []
    [idle] = get(http, client_id, "endpoints", include_idle="true")["endpoints"]
    assert (idle["method"], idle["path"], idle["requests"], idle["p50_ms"]) == (
        "GET",
        "/api/items/{item_id}",
        0,
        None,
    )


def test_window_excludes_older_minutes(http: httpx.Client, app_path: str, client_id: str) -> None:
    now = time.time()
    for ts in (now - 7200, now - 1800, now):
        assert http.post(f"{app_path}/sync", json=sync(timestamp=ts)).status_code == 202
    assert get(http, client_id, "endpoints", since="1h")["endpoints"][0]["requests"] == 84
    assert get(http, client_id, "endpoints", since="3h")["endpoints"][0]["requests"] == 126
    assert get(http, client_id, "endpoints", since="3h", until="45m")["endpoints"][0]["requests"] == 42
    assert get(http, client_id, "endpoints", since="3h", until="20m")["endpoints"][0]["requests"] == 84
    iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 2 * 3600 - 120))
    assert get(http, client_id, "endpoints", since=iso)["endpoints"][0]["requests"] == 126
    assert len(get(http, client_id, "timeseries", since="3h")["points"]) == 3


@pytest.mark.parametrize(("name", "value"), [("since", "yesterday"), ("since", "-5"), ("until", "soon")])
def test_bad_time_parameters_are_422(http: httpx.Client, client_id: str, name: str, value: str) -> None:
    response = http.get(f"/api/{client_id}/dev/endpoints", params={name: value})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", name]


def test_timeseries_filters_by_endpoint(http: httpx.Client, app_path: str, client_id: str) -> None:
    minute = int(time.time() // 60) * 60 - 120
    requests = [
        item(),
        item(method="POST", request_count=1, response_times={"20": 1}, request_sizes={}, response_sizes={}),
    ]
    for ts in (minute + 5, minute + 65):
        assert http.post(f"{app_path}/sync", json=sync(timestamp=ts, requests=requests)).status_code == 202
    points = get(http, client_id, "timeseries", method="post", path="/api/items/{item_id}")["points"]
    assert [(p["bucket"], p["requests"], p["p50_ms"]) for p in points] == [
        (minute, 1, 20),
        (minute + 60, 1, 20),
    ]


def test_consumers_with_traffic_and_name_history(http: httpx.Client, app_path: str, client_id: str) -> None:
    renamed = {**CONSUMER_ITEM, "group": "Free"}
    messages = [
        sync(requests=[item(consumer="acme-corp")]),
        sync(
            requests=[
                item(
                    consumer="anon",
                    request_count=1,
                    response_times={"0": 1},
                    request_sizes={},
                    response_sizes={},
                )
            ],
            consumers=[],
        ),
        sync(requests=[], consumers=[renamed]),
        sync(requests=[], consumers=[renamed]),  # unchanged: no new history entry
    ]
    for message in messages:
        assert http.post(f"{app_path}/sync", json=message).status_code == 202
    consumers = get(http, client_id, "consumers")["consumers"]
    assert [(c["identifier"], c["name"], c["group"], c["requests"]) for c in consumers] == [
        ("acme-corp", "Acme Corp", "Free", 42),
        ("anon", None, None, 1),
    ]
    assert [h["group"] for h in consumers[0]["history"]] == ["Enterprise", "Free"]


def test_validation_and_server_errors_are_summed(http: httpx.Client, app_path: str, client_id: str) -> None:
    for _ in range(2):
        assert http.post(f"{app_path}/sync", json=sync()).status_code == 202
    [validation] = get(http, client_id, "validation-errors")["validation_errors"]
    assert (validation["loc"], validation["type"], validation["count"]) == (
        ["query", "foo"],
        "int_parsing",
        6,
    )
    [server] = get(http, client_id, "server-errors")["server_errors"]
    assert (server["type"], server["msg"], server["count"]) == ("builtins.ValueError", "baz", 2)
    assert server["traceback"] == SERVER_ERROR_ITEM["traceback"]
    assert VALIDATION_ERROR_ITEM["msg"] == validation["msg"]


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clocked_hub(hub_db: str | Path) -> Iterator[tuple[HubServer, Clock]]:
    clock = Clock()
    with HubServer(hub_db, clock=clock) as hub:
        yield hub, clock


def test_instances_go_offline_after_three_inferred_intervals(clocked_hub: tuple[HubServer, Clock]) -> None:
    hub, clock = clocked_hub
    client_id, instance = new_uuid(), new_uuid()
    with settling_client(hub) as http:
        assert http.post(f"/v2/{client_id}/dev/startup", json=startup(instance)).status_code == 202
        for offset in (0.0, 10.0):
            message = sync(instance_uuid=instance, timestamp=clock.now + offset)
            assert http.post(f"/v2/{client_id}/dev/sync", json=message).status_code == 202
        # a late resend of an older message must not shrink the inferred interval
        old = sync(instance_uuid=instance, timestamp=clock.now + 9.5)
        assert http.post(f"/v2/{client_id}/dev/sync", json=old).status_code == 202
        [row] = get(http, client_id, "instances")["instances"]
        assert (row["online"], row["sync_interval"], row["syncs"]) == (True, 10.0, 3)
        assert row["versions"]["app"] == "1.2.3" and row["client"] == "python:starlette"
        assert row["cpu_percent"] == 3.2 and row["memory_rss"] == 123456789
        clock.now += 29
        assert get(http, client_id, "instances")["instances"][0]["online"] is True
        clock.now += 2
        assert get(http, client_id, "instances")["instances"][0]["online"] is False
        detail = http.get(f"/api/{client_id}/dev/instances/{instance}").json()
        assert detail["paths"] == [{"method": "GET", "path": "/api/items/{item_id}"}]
        assert detail["openapi"]["openapi"] == "3.1.0"
        assert http.get(f"/api/{client_id}/dev/instances/{new_uuid()}").status_code == 404


def test_instance_without_inferred_interval_uses_60_seconds(clocked_hub: tuple[HubServer, Clock]) -> None:
    hub, clock = clocked_hub
    client_id = new_uuid()
    with settling_client(hub) as http:
        assert http.post(f"/v2/{client_id}/dev/sync", json=sync()).status_code == 202
        clock.now += 179
        assert get(http, client_id, "instances")["instances"][0]["online"] is True
        clock.now += 2
        assert get(http, client_id, "instances")["instances"][0]["online"] is False


def test_request_log_filters_and_detail(http: httpx.Client, app_path: str, client_id: str) -> None:
    lines = [
        log_line(),
        log_line(method="POST", path="/api/items", url="https://host/api/items?Search=Blue", status_code=422),
        log_line(status_code=500, consumer=None),
        log_line(timestamp=time.time() - 7200),
    ]
    assert (
        http.post(f"{app_path}/log", params={"uuid": new_uuid()}, content=gzip_lines(lines)).status_code
        == 202
    )

    def uuids(**params: Any) -> set[str]:
        return {i["uuid"] for i in get(http, client_id, "requests", **params)["items"]}

    assert uuids() == {line["uuid"] for line in lines[:3]}
    assert uuids(since="3h") == {line["uuid"] for line in lines}
    assert uuids(method="post") == {lines[1]["uuid"]}
    assert uuids(status="4xx") == {lines[1]["uuid"]}
    assert uuids(status="500") == {lines[2]["uuid"]}
    assert uuids(consumer="acme") == {lines[0]["uuid"], lines[1]["uuid"]}
    assert uuids(q="search=blue") == {lines[1]["uuid"]}
    assert uuids(path="/api/items") == {lines[1]["uuid"]}
    page = get(http, client_id, "requests", limit=1, offset=1)
    assert (page["total"], len(page["items"])) == (3, 1)
    detail = get(http, client_id, f"requests/{lines[0]['uuid']}")
    assert detail["item"] == lines[0]
    assert detail["response_time_ms"] == 105.0 and detail["exception_type"] == "builtins.ValueError"
    assert http.get(f"/api/{client_id}/dev/requests/{new_uuid()}").status_code == 404
    assert http.get(f"/api/{client_id}/dev/requests", params={"status": "6xx"}).status_code == 422
    assert http.get(f"/api/{client_id}/dev/requests", params={"limit": "0"}).status_code == 422


def test_apps_lists_client_and_env(http: httpx.Client, client_id: str) -> None:
    assert http.post(f"/v2/{client_id}/staging/sync", json=sync()).status_code == 202
    # every page: the session's hub holds many named apps (listed first) by now
    apps: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        body = http.get("/api/apps", params={"limit": 1000, **({"cursor": cursor} if cursor else {})}).json()
        apps += body["apps"]
        if not (cursor := body["next_cursor"]):
            break
    assert {"client_id": client_id, "env": "staging"}.items() <= next(
        a for a in apps if a["client_id"] == client_id
    ).items()


def test_malformed_client_id_in_a_query_is_404(http: httpx.Client) -> None:
    assert http.get("/api/nope/dev/endpoints").status_code == 404
    assert http.get("/api/does/not/exist").status_code == 404


def test_hub_server_query_helper(hub: HubServer, http: httpx.Client, app_path: str, client_id: str) -> None:
    assert http.post(f"{app_path}/sync", json=sync()).status_code == 202
    [endpoint] = hub.query(client_id, "dev", "endpoints", since="10m")["endpoints"]
    assert endpoint["requests"] == 42
    assert hub.hub_url(client_id, "dev") == f"{hub.url}{app_path}"


def test_endpoints_sort_by_any_column_in_either_order(
    http: httpx.Client, app_path: str, client_id: str
) -> None:
    requests = [
        item(path="/a", request_count=5, response_times={"10": 5}, request_sizes={}, response_sizes={}),
        item(path="/b", request_count=9, response_times={"300": 9}, request_sizes={}, response_sizes={}),
        item(path="/c", request_count=1, response_times={"50": 1}, request_sizes={}, response_sizes={}),
    ]
    message = sync(requests=requests)
    message["consumers"] = []
    assert http.post(f"{app_path}/startup", json=startup()).status_code == 202
    assert http.post(f"{app_path}/sync", json=message).status_code == 202

    def paths(**params: Any) -> list[str]:
        return [
            e["path"] for e in get(http, client_id, "endpoints", include_idle="true", **params)["endpoints"]
        ]

    assert paths() == ["/a", "/api/items/{item_id}", "/b", "/c"]
    assert paths(sort="requests") == ["/b", "/a", "/c", "/api/items/{item_id}"]
    assert paths(sort="requests", order="asc") == ["/api/items/{item_id}", "/c", "/a", "/b"]
    assert paths(sort="p95") == ["/b", "/c", "/a", "/api/items/{item_id}"]  # no traffic: no p95, last
    assert paths(sort="p95", order="asc") == ["/a", "/c", "/b", "/api/items/{item_id}"]
    assert paths(sort="path", order="desc") == ["/c", "/b", "/api/items/{item_id}", "/a"]
    for bad in ({"sort": "nope"}, {"order": "up"}, {"apdex_ms": "0"}):
        assert http.get(f"/api/{client_id}/dev/endpoints", params=bad).status_code == 422


def test_apdex_uses_the_apps_stored_threshold(
    hub: HubServer, http: httpx.Client, app_path: str, client_id: str
) -> None:
    from apitally_hub.storage.records import AppKey

    requests = [item(response_times={"0": 30, "10": 9, "300": 3}, request_sizes={}, response_sizes={})]
    assert http.post(f"{app_path}/sync", json=sync(requests=requests)).status_code == 202
    assert get(http, client_id, "settings")["settings"] == {"apdex_ms": 500}
    assert get(http, client_id, "overview")["apdex"] == 1.0
    hub.context.store.put_app_setting(AppKey(client_id, "dev"), "apdex_ms", "100", now=time.time())
    assert get(http, client_id, "settings")["settings"] == {"apdex_ms": 100}
    overview = get(http, client_id, "overview")
    # 39 satisfied (bins ending by 100 ms), 3 tolerating (ending by 400 ms): (39 + 1.5) / 42
    assert (overview["apdex"], overview["apdex_ms"]) == (round(40.5 / 42, 4), 100)
    [endpoint] = get(http, client_id, "endpoints")["endpoints"]
    assert endpoint["apdex"] == overview["apdex"]
    assert get(http, client_id, "overview", apdex_ms=500)["apdex"] == 1.0
    assert get(http, client_id, "timeseries")["points"][0]["apdex"] == overview["apdex"]


def test_timeseries_points_carry_status_classes_and_rate(
    http: httpx.Client, app_path: str, client_id: str
) -> None:
    requests = [
        item(),
        item(status_code=503, request_count=2, response_times={"0": 2}, request_sizes={}, response_sizes={}),
    ]
    assert http.post(f"{app_path}/sync", json=sync(requests=requests)).status_code == 202
    [point] = get(http, client_id, "timeseries", bucket="5m")["points"]
    assert point["status_classes"] == {"2xx": 42, "5xx": 2}
    assert point["requests_per_minute"] == round(44 / 5, 3)
    errors = get(http, client_id, "error-status-codes")["error_status_codes"]
    assert errors == [{"method": "GET", "path": "/api/items/{item_id}", "status_code": 503, "requests": 2}]


def test_one_consumer_and_size_histograms(http: httpx.Client, app_path: str, client_id: str) -> None:
    assert http.post(f"{app_path}/sync", json=sync(requests=[item(consumer="acme-corp")])).status_code == 202
    consumer = get(http, client_id, "consumers/acme-corp")
    assert (consumer["name"], consumer["group"], consumer["requests"]) == ("Acme Corp", "Enterprise", 42)
    assert [h["name"] for h in consumer["history"]] == ["Acme Corp"]
    assert http.get(f"/api/{client_id}/dev/consumers/nobody").status_code == 404
    sizes = get(http, client_id, "sizes")
    assert sizes["request_sizes"] == {"0": 40, "12": 2} and sizes["response_sizes"] == {"1": 42}
    assert get(http, client_id, "sizes", consumer="acme-corp")["request_sizes"] == {"0": 40, "12": 2}


def test_apps_with_stats_carry_the_overview_and_the_status(http: httpx.Client, client_id: str) -> None:
    assert http.post(f"/v2/{client_id}/dev/sync", json=sync()).status_code == 202
    body = http.get("/api/apps", params={"stats": "true", "limit": 1000}).json()
    [mine] = [a for a in body["apps"] if a["client_id"] == client_id]
    assert mine["overview"]["requests"] == 42 and mine["status"]["status"] == "up"
    assert body["window"]["until"] - body["window"]["since"] == 86400
    assert get(http, client_id, "status")["status"] == "up"


def test_consumers_by_last_sighting_and_percentiles_over_time(
    http: httpx.Client, app_path: str, client_id: str
) -> None:
    now = time.time()
    first = sync(timestamp=now - 120, requests=[item(consumer="old")], consumers=[])
    second = sync(
        timestamp=now,
        requests=[
            item(
                consumer="new", request_count=1, response_times={"20": 1}, request_sizes={}, response_sizes={}
            )
        ],
        consumers=[],
    )
    for message in (first, second):
        assert http.post(f"{app_path}/sync", json=message).status_code == 202
        time.sleep(0.01)  # last seen in this order
    by_requests = get(http, client_id, "consumers")
    assert by_requests["sort"] == "requests" and [c["identifier"] for c in by_requests["consumers"]] == [
        "old",
        "new",
    ]
    by_sighting = get(http, client_id, "consumers", sort="last_seen")
    assert by_sighting["sort"] == "last_seen" and [c["identifier"] for c in by_sighting["consumers"]] == [
        "new",
        "old",
    ]
    assert {c["identifier"]: c["requests"] for c in by_sighting["consumers"]} == {"new": 1, "old": 42}
    assert by_sighting["total"] == 2
    one = get(http, client_id, "consumers", sort="last_seen", consumer="old")
    assert [c["identifier"] for c in one["consumers"]] == ["old"]
    # with an endpoint filter the registry cannot tell: by requests
    assert get(http, client_id, "consumers", sort="last_seen", method="GET")["sort"] == "requests"
    assert http.get(f"/api/{client_id}/dev/consumers", params={"sort": "name"}).status_code == 422
    points = get(http, client_id, "percentiles", bucket="1h")["points"]
    assert sum(p["requests"] for p in points) == 43 and points[-1]["p50_ms"] is not None
    plain = get(http, client_id, "timeseries", bucket="1h", percentiles="false")["points"]
    assert sum(p["requests"] for p in plain) == 43
    assert all(p["p50_ms"] is None and p["apdex"] is None for p in plain)
