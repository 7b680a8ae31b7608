"""Issue 27, endpoint settings: an Apdex threshold per endpoint (the app env's where none is set)
and excluding an endpoint from the tables, charts, totals and alert values (its data kept,
reversibly), through the JSON API and the endpoint page's form. A real hub on loopback, both
backends (the ``hub`` fixture)."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from apitally_hub import HubServer
from apitally_hub.query.timewindow import Window
from apitally_hub.storage.records import AppKey, TrafficFilter
from tests.support.hub_samples import REQUEST_ITEM, settling_client, sync

ADMIN = "endpoint-admin-token-0123456789"
VIEWER = "endpoint-viewer-token-0123456789"


def item(path: str, fast: int, slow: int) -> dict[str, Any]:
    count = fast + slow
    return {
        **REQUEST_ITEM,
        "consumer": None,
        "path": path,
        "request_count": count,
        "request_size_sum": 0,
        "response_size_sum": 0,
        "response_times": {"0": fast, "200": slow},
        "request_sizes": {"0": count},
        "response_sizes": {"0": count},
    }


def fill(http: httpx.Client, client_id: str) -> str:
    body = sync(requests=[item("/a", 5, 5), item("/b", 2, 0)], validation_errors=[], server_errors=[])
    assert http.post(f"/v2/{client_id}/prod/sync", json=body).status_code == 202
    return f"/api/{client_id}/prod"


def by_path(answer: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["path"]: e for e in answer["endpoints"]}


def test_an_endpoint_threshold_and_exclusion_through_the_api(hub: HubServer) -> None:
    with settling_client(hub) as http:
        api = fill(http, str(uuid.uuid4()))
        endpoints = by_path(http.get(f"{api}/endpoints").json())
        assert (endpoints["/a"]["apdex"], endpoints["/a"]["apdex_ms"]) == (1.0, 500)

        put = http.put(f"{api}/endpoints/settings", json={"method": "get", "path": "/a", "apdex_ms": 100})
        assert put.status_code == 200, put.text
        assert put.json() | {"updated_at": 0} == {
            "client_id": api.split("/")[2],
            "env": "prod",
            "method": "GET",
            "path": "/a",
            "apdex_ms": 100,
            "excluded": False,
            "updated_at": 0,
        }
        answer = http.get(f"{api}/endpoints").json()
        assert answer["apdex_ms"] == 500  # the app env's
        endpoints = by_path(answer)
        assert (endpoints["/a"]["apdex"], endpoints["/a"]["apdex_ms"], endpoints["/a"]["own_apdex_ms"]) == (
            0.75,
            100,
            100,
        )
        assert (endpoints["/b"]["apdex"], endpoints["/b"]["apdex_ms"]) == (1.0, 500)
        assert http.get(f"{api}/overview").json()["requests"] == 12

        # excluded: out of the tables and totals, kept (and shown) for that one endpoint
        excluded = http.put(
            f"{api}/endpoints/settings", json={"method": "GET", "path": "/a", "excluded": True}
        )
        assert excluded.json()["apdex_ms"] == 100 and excluded.json()["excluded"] is True
        answer = http.get(f"{api}/endpoints").json()
        assert list(by_path(answer)) == ["/b"] and answer["excluded"] == 1
        assert http.get(f"{api}/overview").json()["requests"] == 2
        points = http.get(f"{api}/timeseries").json()["points"]
        assert sum(p["requests"] for p in points) == 2
        shown = by_path(http.get(f"{api}/endpoints", params={"show_excluded": "true"}).json())
        assert shown["/a"]["excluded"] is True and shown["/a"]["requests"] == 10
        one = http.get(f"{api}/endpoints", params={"method": "GET", "path": "/a"}).json()
        assert [e["requests"] for e in one["endpoints"]] == [10]
        listed = http.get(f"{api}/endpoints/settings").json()["endpoints"]
        assert [(s["path"], s["apdex_ms"], s["excluded"]) for s in listed] == [("/a", 100, True)]

        # included again, and back to the app's threshold: no setting left
        http.put(
            f"{api}/endpoints/settings",
            json={"method": "GET", "path": "/a", "excluded": False, "apdex_ms": None},
        )
        assert http.get(f"{api}/endpoints/settings").json()["endpoints"] == []
        assert http.get(f"{api}/overview").json()["requests"] == 12


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"method": "GET", "path": "/a", "apdex_ms": 0}, "apdex_ms"),
        ({"method": "GET", "path": "/a", "apdex_ms": 60_001}, "apdex_ms"),
        ({"method": "GET", "path": "/a", "apdex_ms": True}, "apdex_ms"),
        ({"method": "GET", "path": "/a", "excluded": "yes"}, "excluded"),
        ({"method": "GET", "path": "a"}, "path"),
        ({"method": "G E T", "path": "/a"}, "method"),
        ({"method": "GET", "path": "/a", "color": "red"}, "color"),
    ],
)
def test_invalid_endpoint_settings_are_refused(hub: HubServer, body: dict[str, Any], field: str) -> None:
    with settling_client(hub) as http:
        api = fill(http, str(uuid.uuid4()))
        refused = http.put(f"{api}/endpoints/settings", json=body)
        assert refused.status_code == 422
        assert [e["loc"] for e in refused.json()["detail"]] == [["body", field]]
        assert http.get(f"{api}/endpoints/settings").json()["endpoints"] == []


# -- the endpoint page's form --------------------------------------------------------------------


@pytest.fixture(scope="module")
def roles_hub() -> Iterator[HubServer]:
    with HubServer(tokens=[ADMIN], viewer_tokens=[VIEWER]) as server:
        yield server


def csrf_of(page: str) -> str:
    match = re.search(r'name="csrf" value="([0-9a-f]{64})"', page)
    assert match is not None
    return match.group(1)


def login(http: httpx.Client, token: str) -> None:
    form = http.get("/login")
    assert http.post("/login", data={"csrf": csrf_of(form.text), "token": token}).status_code == 303


def test_the_endpoint_form_sets_a_threshold_and_excludes_for_admins_only(roles_hub: HubServer) -> None:
    client_id = str(uuid.uuid4())
    page = f"/apps/{client_id}/prod/endpoint?endpoint=GET+/a"
    with settling_client(roles_hub) as admin, settling_client(roles_hub) as viewer:
        admin.headers["Authorization"] = f"Bearer {ADMIN}"
        api = fill(admin, client_id)
        del admin.headers["Authorization"]
        login(admin, ADMIN)
        login(viewer, VIEWER)

        shown = viewer.get(page)
        assert shown.status_code == 200 and 'id="endpoint-settings-form"' not in shown.text
        refused = viewer.post(page, data={"csrf": csrf_of(shown.text), "apdex_ms": "100", "action": "save"})
        assert refused.status_code == 403
        api_refused = viewer.put(
            f"{api}/endpoints/settings",
            json={"method": "GET", "path": "/a", "excluded": True},
            headers={"Authorization": f"Bearer {VIEWER}"},
        )
        assert api_refused.status_code == 403

        shown = admin.get(page)
        assert 'id="endpoint-settings-form"' in shown.text and "Apdex threshold (ms)" in shown.text
        token = csrf_of(shown.text)
        bad = admin.post(page, data={"csrf": token, "apdex_ms": "0", "action": "save"})
        assert bad.status_code == 422 and 'id="apdex-error"' in bad.text and "from 1 to 60000" in bad.text
        saved = admin.post(page, data={"csrf": token, "apdex_ms": "100", "action": "save"})
        assert saved.status_code == 303
        after = admin.get(saved.headers["location"]).text
        assert 'id="saved"' in after and "Apdex (100 ms)" in after

        excluded = admin.post(page, data={"csrf": token, "action": "exclude"})
        assert excluded.status_code == 303
        assert 'id="excluded-notice"' in admin.get(page).text
        table = admin.get(f"/apps/{client_id}/prod/endpoints").text
        assert 'data-endpoint="GET /a"' not in table and 'id="show-excluded"' in table
        table = admin.get(f"/apps/{client_id}/prod/endpoints?excluded=show").text
        assert 'data-endpoint="GET /a"' in table and 'id="hide-excluded"' in table
        assert admin.post(page, data={"csrf": token, "action": "include"}).status_code == 303
        assert 'data-endpoint="GET /a"' in admin.get(f"/apps/{client_id}/prod/endpoints").text
        emptied = admin.post(page, data={"csrf": token, "apdex_ms": "", "action": "save"})
        assert emptied.status_code == 303
        assert admin.get(f"{api}/endpoints/settings").json()["endpoints"] == []


def test_alert_values_leave_excluded_endpoints_out(hub: HubServer) -> None:
    client_id = str(uuid.uuid4())
    app = AppKey(client_id, "prod")
    with settling_client(hub) as http:
        api = fill(http, client_id)
        http.put(f"{api}/endpoints/settings", json={"method": "GET", "path": "/a", "apdex_ms": 100})
        http.put(f"{api}/endpoints/settings", json={"method": "GET", "path": "/b", "excluded": True})
        hub.settle()
    queries, now = hub.context.queries, time.time()
    window = Window(now - 3600, now + 60)
    per_endpoint = queries.scoped_traffic(app, window, by="endpoint", apdex_ms=100)  # the rule's
    assert {key: value["apdex"] for key, value in per_endpoint.items()} == {("GET", "/a"): 0.75}
    [whole] = queries.scoped_traffic(app, window, apdex_ms=500).values()
    assert (whole["requests"], whole["apdex"]) == (10, 1.0)
    naming_it = TrafficFilter(method="GET", path="/b")  # a rule on the excluded endpoint alone
    assert [v["requests"] for v in queries.scoped_traffic(app, window, flt=naming_it).values()] == [0]
