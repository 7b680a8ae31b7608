"""Issue 27, consumers: a consumer's name and group set in the dashboard or the JSON API win over
the client's (everywhere consumers are shown) until reset, and its traffic moves along to the
group it is given. Over a real hub on loopback, on both backends (the ``hub`` fixture)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from apitally_hub import HubServer
from tests.support.hub_samples import REQUEST_ITEM, settling_client, sync

ADMIN = "consumer-admin-token-0123456789"
VIEWER = "consumer-viewer-token-0123456789"


def requests_of(consumer: str, count: int) -> dict[str, Any]:
    return {
        **REQUEST_ITEM,
        "consumer": consumer,
        "request_count": count,
        "response_times": {"0": count},
        "request_size_sum": 0,
        "response_size_sum": 0,
        "request_sizes": {"0": count},
        "response_sizes": {"0": count},
    }


def send(http: httpx.Client, api_app: str, consumers: list[dict[str, Any]], counts: dict[str, int]) -> None:
    v2 = api_app.replace("/api/", "/v2/", 1)
    body = sync(
        requests=[requests_of(c, n) for c, n in counts.items()],
        consumers=consumers,
        validation_errors=[],
        server_errors=[],
    )
    assert http.post(f"{v2}/sync", json=body).status_code == 202


def groups(http: httpx.Client, api_app: str) -> dict[str, tuple[int, int]]:
    answer = http.get(f"{api_app}/consumer-groups").json()["groups"]
    return {g["group"]: (g["consumers"], g["requests"]) for g in answer}


CLIENT_NAMES = [
    {"identifier": "c1", "name": "One", "group": "Gold"},
    {"identifier": "c2", "name": "Two", "group": "Gold"},
]


def test_a_name_and_group_set_through_the_api_win_and_the_traffic_follows(hub: HubServer) -> None:
    api_app = f"/api/{uuid.uuid4()}/prod"
    with settling_client(hub) as http:
        send(http, api_app, CLIENT_NAMES, {"c1": 10, "c2": 5})
        assert groups(http, api_app) == {"Gold": (2, 15)}

        moved = http.put(f"{api_app}/consumers/c1", json={"name": " Uno ", "group": "Silver"})
        assert moved.status_code == 200, moved.text
        assert moved.json() | {"client_id": None} == {
            "client_id": None,
            "env": "prod",
            "identifier": "c1",
            "name": "Uno",
            "group": "Silver",
            "client_name": "One",
            "client_group": "Gold",
            "dashboard_name": "Uno",
            "dashboard_group": "Silver",
        }
        assert groups(http, api_app) == {"Gold": (1, 5), "Silver": (1, 10)}
        listed = http.get(f"{api_app}/consumers", params={"group": "Silver"}).json()["consumers"]
        assert [(c["identifier"], c["name"], c["group"], c["requests"]) for c in listed] == [
            ("c1", "Uno", "Silver", 10)
        ]
        by_requests = http.get(f"{api_app}/consumers", params={"sort": "requests", "group": "Gold"}).json()
        assert [c["identifier"] for c in by_requests["consumers"]] == ["c2"]
        one = http.get(f"{api_app}/consumers/c1").json()
        assert (one["name"], one["group"], one["client_name"], one["dashboard_group"]) == (
            "Uno",
            "Silver",
            "One",
            "Silver",
        )

        # the client sends its names again, and more traffic: the dashboard's still win
        send(http, api_app, [{"identifier": "c1", "name": "Eins", "group": "Gold"}], {"c1": 3})
        one = http.get(f"{api_app}/consumers/c1").json()
        assert (one["name"], one["group"], one["client_name"]) == ("Uno", "Silver", "Eins")
        assert groups(http, api_app) == {"Gold": (1, 5), "Silver": (1, 13)}

        # only the group set: the client's name fills in
        assert (
            http.put(f"{api_app}/consumers/c1", json={"name": "", "group": "Silver"}).json()["name"] == "Eins"
        )

        reset = http.delete(f"{api_app}/consumers/c1/overrides")
        assert reset.status_code == 200
        assert (reset.json()["name"], reset.json()["group"], reset.json()["dashboard_group"]) == (
            "Eins",
            "Gold",
            None,
        )
        assert groups(http, api_app) == {"Gold": (2, 18)}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "x" * 65}, "name"),
        ({"group": "bad\x07bell"}, "group"),
        ({"name": "new\nline"}, "name"),
        ({"name": 5}, "name"),
        ({"nickname": "x"}, "nickname"),
    ],
)
def test_invalid_names_are_refused_and_nothing_changes(
    hub: HubServer, body: dict[str, Any], field: str
) -> None:
    api_app = f"/api/{uuid.uuid4()}/prod"
    with settling_client(hub) as http:
        send(http, api_app, CLIENT_NAMES, {"c1": 1})
        refused = http.put(f"{api_app}/consumers/c1", json=body)
        assert refused.status_code == 422
        assert [e["loc"] for e in refused.json()["detail"]] == [["body", field]]
        assert http.get(f"{api_app}/consumers/c1").json()["name"] == "One"
        assert http.put(f"{api_app}/consumers/nobody", json={"name": "x"}).status_code == 404
        assert http.delete(f"{api_app}/consumers/nobody/overrides").status_code == 404


# -- the consumer page's form ----------------------------------------------------------------------


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


def test_the_consumer_form_sets_and_resets_for_admins_only(roles_hub: HubServer) -> None:
    client_id = str(uuid.uuid4())
    api_app, page = f"/api/{client_id}/prod", f"/apps/{client_id}/prod/consumer?consumer=c1"
    form_url = f"/apps/{client_id}/prod/consumer?consumer=c1"
    with settling_client(roles_hub) as admin, settling_client(roles_hub) as viewer:
        admin.headers["Authorization"] = f"Bearer {ADMIN}"
        send(admin, api_app, CLIENT_NAMES, {"c1": 4})
        del admin.headers["Authorization"]
        login(admin, ADMIN)
        login(viewer, VIEWER)

        shown = viewer.get(page)
        assert shown.status_code == 200 and 'id="consumer-form"' not in shown.text
        token = csrf_of(shown.text)  # the logout form's
        refused = viewer.post(form_url, data={"csrf": token, "name": "X", "group": "Y", "action": "save"})
        assert refused.status_code == 403
        api_refused = viewer.put(
            f"{api_app}/consumers/c1", json={"name": "X"}, headers={"Authorization": f"Bearer {VIEWER}"}
        )
        assert api_refused.status_code == 403

        shown = admin.get(page)
        assert (
            'id="consumer-form"' in shown.text
            and '<datalist id="consumer-groups"><option value="Gold">' in (shown.text)
        )
        token = csrf_of(shown.text)
        bad = admin.post(form_url, data={"csrf": token, "name": "a" * 65, "group": "Gold", "action": "save"})
        assert bad.status_code == 422
        assert 'id="name-error"' in bad.text and 'id="group-error"' not in bad.text
        assert 'value="' + "a" * 65 + '"' in bad.text  # what was typed stays in the field
        assert (
            admin.post(form_url, data={"csrf": "0" * 64, "name": "Uno", "action": "save"}).status_code == 403
        )

        saved = admin.post(
            form_url, data={"csrf": token, "name": "Uno", "group": "Platinum", "action": "save"}
        )
        assert saved.status_code == 303
        after = admin.get(saved.headers["location"]).text
        assert 'id="saved"' in after and "Uno" in after and "Platinum" in after
        groups_page = admin.get(f"/apps/{client_id}/prod/groups").text
        assert "Platinum" in groups_page
        listed = admin.get(f"/apps/{client_id}/prod/consumers").text
        assert "Uno" in listed

        reset = admin.post(form_url, data={"csrf": token, "action": "reset"})
        assert reset.status_code == 303
        one = admin.get(f"{api_app}/consumers/c1").json()
        assert (one["name"], one["group"]) == ("One", "Gold")
