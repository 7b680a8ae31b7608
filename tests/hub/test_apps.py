"""The apps registry (issue 27, first slice): its JSON API on each backend, who may change it, the
apps list with names, the dashboard's forms, and the ``apitally-otel apps`` command. Real hubs over
loopback."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from apitally_hub import HubServer
from apitally_hub.cli import main
from tests.support.hub_samples import gzip_lines, log_line, new_uuid, settling_client, startup, sync

ADMIN = "admin-token-0123456789abcdef"
VIEWER = "viewer-token-0123456789abcdef"
WRITE_TOKEN = re.compile(r"apt_[a-zA-Z0-9]{24}")
"""What the apitally 1.x client accepts as a write token (and nothing else)."""


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def create(http: httpx.Client, **body: Any) -> dict[str, Any]:
    fields = {"name": "Shop", "framework": "fastapi", "envs": ["prod", "dev"], **body}
    response = http.post("/api/apps", json=fields)
    assert response.status_code == 201, response.text
    return dict(response.json())


def listed(http: httpx.Client, client_id: str) -> list[dict[str, Any]]:
    apps = http.get("/api/apps", params={"limit": 1000}).json()["apps"]
    return [app for app in apps if app["client_id"] == client_id]


def report(http: httpx.Client, client_id: str, env: str) -> None:
    instance = new_uuid()
    assert http.post(f"/v2/{client_id}/{env}/startup", json=startup(instance)).status_code == 202
    assert http.post(f"/v2/{client_id}/{env}/sync", json=sync(instance_uuid=instance)).status_code == 202


# -- the JSON API, on each backend (the session's ``http`` hub) --------------------------------


def test_create_get_patch_and_list(http: httpx.Client) -> None:
    app = create(http, envs="prod, dev")
    client_id = app["client_id"]
    assert uuid.UUID(client_id).version == 4
    assert app["name"] == "Shop" and app["framework"] == "fastapi" and app["registered"] is True
    assert [(e["env"], e["has_data"], e["instances"]) for e in app["envs"]] == [
        ("prod", False, 0),
        ("dev", False, 0),
    ]
    token = app.pop("write_token")
    assert WRITE_TOKEN.fullmatch(token)
    assert [t["token"] for t in app["write_tokens"]] == [token]
    assert http.get(f"/api/apps/{client_id}").json() == app
    rows = listed(http, client_id)
    assert [(r["env"], r["name"], r["framework"], r["instances"], r["last_seen"]) for r in rows] == [
        ("dev", "Shop", "fastapi", 0, None),
        ("prod", "Shop", "fastapi", 0, None),
    ]
    changed = http.patch(
        f"/api/apps/{client_id}", json={"name": "Shop API", "envs": ["prod", "staging"]}
    ).json()
    assert changed["name"] == "Shop API" and changed["framework"] == "fastapi"
    assert changed["created_at"] == app["created_at"]
    assert [e["env"] for e in changed["envs"]] == ["prod", "staging"]
    assert http.patch(f"/api/apps/{client_id}", json={"framework": "starlette"}).json()["name"] == "Shop API"


def test_stats_list_keeps_every_field_for_an_app_without_data(http: httpx.Client) -> None:
    client_id = create(http, envs=["prod"])["client_id"]
    apps = http.get("/api/apps", params={"stats": "true", "limit": 1000}).json()["apps"]
    [row] = [a for a in apps if a["client_id"] == client_id]
    assert {"client_id", "env", "instances", "first_seen", "last_seen", "last_sync_at"} <= row.keys()
    assert row["overview"]["requests"] == 0 and row["status"]["status"] == "unknown"


def test_data_arriving_shows_per_env(http: httpx.Client) -> None:
    client_id = create(http)["client_id"]
    report(http, client_id, "dev")
    app = http.get(f"/api/apps/{client_id}").json()
    assert {e["env"]: (e["has_data"], e["instances"]) for e in app["envs"]} == {
        "prod": (False, 0),
        "dev": (True, 1),
    }


def test_an_app_that_reported_without_being_created_is_listed_and_can_be_named(http: httpx.Client) -> None:
    client_id = new_uuid()
    report(http, client_id, "prod")
    [row] = listed(http, client_id)
    assert row["name"] is None and row["registered"] is False and row["instances"] == 1
    before = http.get(f"/api/apps/{client_id}").json()
    assert before["registered"] is False and [e["env"] for e in before["envs"]] == ["prod"]
    unnamed = http.patch(f"/api/apps/{client_id}", json={"framework": "starlette"})
    assert unnamed.status_code == 422 and unnamed.json()["detail"][0]["loc"] == ["body", "name"]
    named = http.patch(f"/api/apps/{client_id}", json={"name": "Legacy"}).json()
    assert named["registered"] is True and named["name"] == "Legacy" and named["framework"] == "other"
    assert [e["env"] for e in named["envs"]] == ["prod"]
    assert listed(http, client_id)[0]["name"] == "Legacy"


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"name": "", "framework": "fastapi", "envs": ["prod"]}, "name"),
        ({"name": "   ", "framework": "fastapi", "envs": ["prod"]}, "name"),
        ({"name": "x" * 101, "framework": "fastapi", "envs": ["prod"]}, "name"),
        ({"name": "A", "framework": "django", "envs": ["prod"]}, "framework"),
        ({"name": "A", "framework": "fastapi", "envs": ["prod", "dot.env"]}, "envs"),
        ({"name": "A", "framework": "fastapi", "envs": ["x" * 33]}, "envs"),
        ({"name": "A", "framework": "fastapi", "envs": []}, "envs"),
        ({"name": "A", "framework": "fastapi", "envs": " , "}, "envs"),
        ({"name": "A", "framework": "fastapi", "envs": [1]}, "envs"),
        ({"name": "A", "framework": "fastapi"}, "envs"),
        ({"name": "A", "framework": "fastapi", "envs": ["prod"], "color": "red"}, "color"),
    ],
)
def test_invalid_fields_are_422_naming_the_field(http: httpx.Client, body: dict[str, Any], loc: str) -> None:
    total = http.get("/api/apps").json()["total"]
    response = http.post("/api/apps", json=body)
    assert response.status_code == 422, response.text
    assert [d["loc"] for d in response.json()["detail"]] == [["body", loc]]
    assert http.get("/api/apps").json()["total"] == total  # nothing created


def test_patch_validates_the_same_way_and_changes_nothing(http: httpx.Client) -> None:
    app = create(http)
    response = http.patch(f"/api/apps/{app['client_id']}", json={"name": "B", "envs": ["bad env"]})
    assert response.status_code == 422 and response.json()["detail"][0]["loc"] == ["body", "envs"]
    del app["write_token"]
    assert http.get(f"/api/apps/{app['client_id']}").json() == app


def test_unknown_and_malformed_apps_are_404(http: httpx.Client) -> None:
    missing = new_uuid()
    assert http.get(f"/api/apps/{missing}").status_code == 404
    assert http.patch(f"/api/apps/{missing}", json={"name": "X"}).status_code == 404
    assert http.delete(f"/api/apps/{missing}").status_code == 404
    assert http.get("/api/apps/not-a-uuid").status_code == 404


def test_delete_removes_the_app_and_all_its_data(http: httpx.Client) -> None:
    app = create(http)
    client_id = app["client_id"]
    for env in ("prod", "dev"):
        report(http, client_id, env)
        body = gzip_lines([log_line()])
        assert (
            http.post(f"/v2/{client_id}/{env}/log", params={"uuid": new_uuid()}, content=body).status_code
            == 202
        )
        channel = {"name": "ops", "type": "webhook", "url": "http://127.0.0.1:9/hook"}
        assert http.post(f"/api/{client_id}/{env}/channels", json=channel).status_code == 201
    other = create(http, name="Other")["client_id"]
    report(http, other, "prod")
    assert http.get(f"/api/{client_id}/prod/endpoints", params={"since": "2h"}).json()["endpoints"]
    assert http.get(f"/api/{client_id}/dev/requests", params={"since": "2h"}).json()["total"] == 1

    response = http.delete(f"/api/apps/{client_id}")

    assert response.status_code == 200, response.text
    deleted = response.json()["deleted"]
    assert {
        "apps",
        "instances",
        "endpoint_traffic",
        "request_log",
        "alert_channels",
        "queue",
    } <= deleted.keys()
    assert http.get(f"/api/apps/{client_id}").status_code == 404
    assert listed(http, client_id) == []
    for env in ("prod", "dev"):
        assert http.get(f"/api/{client_id}/{env}/endpoints", params={"since": "2h"}).json()["endpoints"] == []
        assert http.get(f"/api/{client_id}/{env}/requests", params={"since": "2h"}).json()["total"] == 0
        assert http.get(f"/api/{client_id}/{env}/instances").json()["instances"] == []
        assert http.get(f"/api/{client_id}/{env}/channels").json()["channels"] == []
    assert {r["env"]: r["instances"] for r in listed(http, other)} == {"prod": 1, "dev": 0}  # untouched


# -- write tokens (OTLP ingest's credentials) ----------------------------------------------------


def tokens_of(http: httpx.Client, client_id: str) -> list[tuple[str, bool]]:
    """(token, revoked) of the app's write tokens, oldest first."""
    app = http.get(f"/api/apps/{client_id}").json()
    return [(t["token"], t["revoked_at"] is not None) for t in app["write_tokens"]]


def test_write_tokens_are_created_listed_and_revoked(hub: HubServer, http: httpx.Client) -> None:
    app = create(http)
    client_id, first = app["client_id"], app["write_token"]
    store = hub.context.store
    assert store.app_for_write_token(first) == client_id
    made = http.post(f"/api/apps/{client_id}/write-tokens")
    assert made.status_code == 201, made.text
    second = made.json()["token"]
    assert WRITE_TOKEN.fullmatch(second) and second != first and made.json()["created_at"] > 0
    assert tokens_of(http, client_id) == [(first, False), (second, False)]

    revoke = f"/api/apps/{client_id}/write-tokens/revoke"
    revoked = http.post(revoke, json={"token": first})
    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["token"] == first and revoked.json()["revoked_at"] is not None
    assert tokens_of(http, client_id) == [(first, True), (second, False)]
    assert store.app_for_write_token(first) is None and store.app_for_write_token(second) == client_id
    again = http.post(revoke, json={"token": first})  # revoking again changes nothing
    assert again.status_code == 200 and again.json()["revoked_at"] == revoked.json()["revoked_at"]

    other = create(http, name="Other")
    for token in (other["write_token"], "apt_" + "x" * 24, "not-a-token"):
        assert http.post(revoke, json={"token": token}).status_code == 404
    assert store.app_for_write_token(other["write_token"]) == other["client_id"]  # untouched
    for body, loc in (({}, ["body", "token"]), ({"token": first, "x": 1}, ["body", "x"]), ([], ["body"])):
        response = http.post(revoke, json=body)
        assert response.status_code == 422 and [d["loc"] for d in response.json()["detail"]] == [loc]
    missing = new_uuid()
    assert http.post(f"/api/apps/{missing}/write-tokens").status_code == 404
    assert http.post(f"/api/apps/{missing}/write-tokens/revoke", json={"token": second}).status_code == 404

    assert http.delete(f"/api/apps/{client_id}").json()["deleted"]["write_tokens"] == 2
    assert store.app_for_write_token(second) is None


def test_naming_an_app_that_only_reported_gives_it_a_write_token(http: httpx.Client) -> None:
    client_id = new_uuid()
    report(http, client_id, "prod")
    assert tokens_of(http, client_id) == []
    http.patch(f"/api/apps/{client_id}", json={"name": "Legacy"}).raise_for_status()
    [(token, revoked)] = tokens_of(http, client_id)
    assert WRITE_TOKEN.fullmatch(token) and not revoked
    http.patch(f"/api/apps/{client_id}", json={"name": "Legacy API"}).raise_for_status()
    assert tokens_of(http, client_id) == [(token, False)]  # renaming adds none


# -- who may change apps ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def roles_hub() -> Iterator[HubServer]:
    with HubServer(tokens=[ADMIN], viewer_tokens=[VIEWER]) as hub:
        yield hub


def test_viewers_may_read_apps_but_not_change_them(roles_hub: HubServer) -> None:
    with httpx.Client(base_url=roles_hub.url) as http:
        assert (
            http.post("/api/apps", json={"name": "A", "framework": "other", "envs": ["prod"]}).status_code
            == 401
        )
        app = http.post(
            "/api/apps", json={"name": "A", "framework": "other", "envs": ["prod"]}, headers=bearer(ADMIN)
        ).json()
        path = f"/api/apps/{app['client_id']}"
        body = {"name": "B", "framework": "other", "envs": ["prod"]}
        assert http.post("/api/apps", json=body, headers=bearer(VIEWER)).status_code == 403
        assert http.patch(path, json={"name": "B"}, headers=bearer(VIEWER)).status_code == 403
        assert http.delete(path, headers=bearer(VIEWER)).status_code == 403
        assert http.get(path, headers=bearer(VIEWER)).json()["name"] == "A"
        not_json = http.post(
            "/api/apps", content=json.dumps(body), headers={**bearer(ADMIN), "Content-Type": "text/plain"}
        )
        assert not_json.status_code == 415
        page = http.get(f"/apps/{app['client_id']}", headers=bearer(VIEWER)).text
        assert app["client_id"] in page and 'id="edit-app-form"' not in page and "Delete app" not in page
        # write tokens are secrets: viewers see none, in the API or on the setup page
        assert "write_tokens" not in http.get(path, headers=bearer(VIEWER)).json()
        assert [t["token"] for t in http.get(path, headers=bearer(ADMIN)).json()["write_tokens"]] == [
            app["write_token"]
        ]
        assert app["write_token"] not in page and 'id="write-tokens-read-only"' in page
        assert "Bearer%20&lt;write token&gt;" in page and "Create write token" not in page
        tokens = f"{path}/write-tokens"
        assert http.post(tokens, headers=bearer(VIEWER)).status_code == 403
        assert (
            http.post(
                f"{tokens}/revoke", json={"token": app["write_token"]}, headers=bearer(VIEWER)
            ).status_code
            == 403
        )
        admin_page = http.get(f"/apps/{app['client_id']}", headers=bearer(ADMIN)).text
        assert app["write_token"] in admin_page and "Create write token" in admin_page
        assert 'id="new-app"' not in http.get("/", headers=bearer(VIEWER)).text
        assert 'id="new-app-form"' not in http.get("/apps/new", headers=bearer(VIEWER)).text
        assert http.post("/apps/new", data={"name": "C"}, headers=bearer(VIEWER)).status_code == 403


def test_with_an_allow_list_no_app_is_created() -> None:
    allowed = new_uuid()
    with HubServer(client_ids=[allowed]) as hub, settling_client(hub) as http:
        response = http.post("/api/apps", json={"name": "A", "framework": "other", "envs": ["prod"]})
        assert response.status_code == 409 and "--client-id" in response.json()["detail"]
        assert http.get(f"/api/apps/{new_uuid()}").status_code == 404
        report(http, allowed, "prod")
        assert http.patch(f"/api/apps/{allowed}", json={"name": "Allowed"}).json()["name"] == "Allowed"


# -- the dashboard's forms (a no-token hub: everyone is an admin) ----------------------------


@pytest.fixture(scope="module")
def open_hub() -> Iterator[HubServer]:
    with HubServer() as hub:
        yield hub


def csrf_of(page: str) -> str:
    match = re.search(r'name="csrf" value="([0-9a-f]{64})"', page)
    assert match is not None
    return match.group(1)


def test_dashboard_form_creates_an_app_and_shows_its_setup_page(open_hub: HubServer) -> None:
    with settling_client(open_hub) as http:
        home = http.get("/").text
        assert 'id="new-app"' in home
        form = http.get("/apps/new").text
        for label in ("Name", "Framework", "Environments"):
            assert f">{label}</label>" in form
        bad = http.post(
            "/apps/new", data={"csrf": csrf_of(form), "name": "", "framework": "fastapi", "envs": "prod d.v"}
        )
        assert bad.status_code == 422
        assert 'id="name-error"' in bad.text and 'id="envs-error"' in bad.text and "d.v" in bad.text
        created = http.post(
            "/apps/new",
            data={"csrf": csrf_of(form), "name": "Shop", "framework": "fastapi", "envs": "prod, dev"},
        )
        assert created.status_code == 303
        location = created.headers["location"]
        client_id = location.rsplit("/", 1)[1]
        page = http.get(location).text
        assert "Set up Shop" in page and f'<code id="client-id">{client_id}</code>' in page
        assert (
            f"APITALLY_CLIENT_ID={client_id} APITALLY_ENV=prod APITALLY_HUB_BASE_URL={open_hub.url}" in page
        )
        assert f'instrument_app(app, client_id="{client_id}", env="prod")' in page
        assert "after app = FastAPI()\nimport apitally_otel\n" in page
        assert "from apitally_otel.fastapi import ApitallyMiddleware" in page
        assert f'app.add_middleware(ApitallyMiddleware, client_id="{client_id}", env="prod")' in page
        assert 'env="dev"' in http.get(location, params={"env": "dev"}).text
        assert page.count("Waiting for data") == 2
        traffic = http.get(f"/apps/{client_id}/prod")  # before any data: the app's pages work
        assert traffic.status_code == 200 and 'id="app-name">Shop<' in traffic.text
        report(http, client_id, "dev")
        assert http.get(location).text.count("Waiting for data") == 1
        assert "Shop" in http.get("/").text

        renamed = http.post(
            location,
            data={
                "csrf": csrf_of(page),
                "action": "update",
                "name": "Shop API",
                "framework": "starlette",
                "envs": "prod",
            },
        )
        assert renamed.status_code == 303
        page = http.get(location).text
        assert "Set up Shop API" in page
        wrong = http.post(location, data={"csrf": csrf_of(page), "action": "delete", "confirm": "Shop"})
        assert wrong.status_code == 422 and 'id="confirm-error"' in wrong.text
        gone = http.post(location, data={"csrf": csrf_of(page), "action": "delete", "confirm": "Shop API"})
        assert gone.status_code == 303
        assert http.get(location).status_code == 404
        assert http.get(f"/api/{client_id}/dev/instances").json()["instances"] == []


def test_dashboard_setup_page_lists_creates_and_revokes_write_tokens(open_hub: HubServer) -> None:
    with settling_client(open_hub) as http:
        app = create(http, envs=["prod"])
        client_id, first = app["client_id"], app["write_token"]
        location = f"/apps/{client_id}"
        page = http.get(location).text
        assert ">Write tokens</h2>" in page and f'<tr data-token="{first}">' in page
        assert f"APITALLY_OTLP_ENDPOINT={open_hub.url}\nexport APITALLY_WRITE_TOKEN={first}\n" in page
        assert "APITALLY_ENV=prod" in page
        assert f"OTEL_EXPORTER_OTLP_ENDPOINT={open_hub.url}\n" in page
        assert "OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf" in page
        assert f"OTEL_EXPORTER_OTLP_HEADERS=Authorization=Bearer%20{first},Apitally-Env=prod" in page
        assert "OTEL_SEMCONV_STABILITY_OPT_IN=http" in page
        assert f'endpoint: {open_hub.url}\n    headers:\n      Authorization: "Bearer {first}"\n' in page
        assert "Apitally-Env: prod" in page

        made = http.post(location, data={"csrf": csrf_of(page), "action": "create_write_token"})
        assert made.status_code == 303 and made.headers["location"].endswith("?token=created#write-tokens")
        page = http.get(made.headers["location"]).text
        assert 'id="token-notice">Write token created.' in page
        [(first_listed, _), (second, _)] = tokens_of(http, client_id)
        assert first_listed == first and f'<tr data-token="{second}">' in page
        assert f"APITALLY_WRITE_TOKEN={second}" in page  # the snippets show the newest

        revoked = http.post(
            location, data={"csrf": csrf_of(page), "action": "revoke_write_token", "token": second}
        )
        assert revoked.status_code == 303
        page = http.get(revoked.headers["location"]).text
        assert f'<tr data-token="{second}" class="revoked">' in page and "Revoked" in page
        assert f"APITALLY_WRITE_TOKEN={first}" in page
        assert tokens_of(http, client_id) == [(first, False), (second, True)]
        unknown = http.post(
            location, data={"csrf": csrf_of(page), "action": "revoke_write_token", "token": "apt_" + "y" * 24}
        )
        assert unknown.status_code == 404
        no_csrf = http.post(location, data={"action": "create_write_token"})
        assert no_csrf.status_code == 403 and len(tokens_of(http, client_id)) == 2


# -- the command line --------------------------------------------------------------------------


def test_cli_creates_lists_renames_and_deletes(
    roles_hub: HubServer, capsys: pytest.CaptureFixture[str]
) -> None:
    hub = ["--hub", roles_hub.url, "--token", ADMIN]
    create_args = [
        "apps",
        "create",
        "--name",
        "Shop",
        "--env",
        "prod",
        "--env",
        "dev",
        "--framework",
        "fastapi",
    ]
    assert main([*create_args, *hub, "--json"]) == 0
    app = json.loads(capsys.readouterr().out)
    client_id = app["client_id"]
    assert (
        uuid.UUID(client_id) and app["name"] == "Shop" and [e["env"] for e in app["envs"]] == ["prod", "dev"]
    )
    assert WRITE_TOKEN.fullmatch(app["write_token"])

    assert main(["apps", "list", *hub]) == 0
    out = capsys.readouterr().out
    assert client_id in out and "Shop" in out and "fastapi" in out
    assert main(["apps", "list", *hub, "--json"]) == 0
    assert {a["env"] for a in json.loads(capsys.readouterr().out)["apps"] if a["client_id"] == client_id} == {
        "prod",
        "dev",
    }

    assert main(["apps", "rename", client_id, "Shop API", *hub]) == 0
    assert "Shop API" in capsys.readouterr().out
    assert main(["apps", "rename", client_id, "Nope", "--hub", roles_hub.url, "--token", VIEWER]) == 1
    assert "403" in capsys.readouterr().err
    assert main(["apps", "create", "--name", "X", "--env", "bad.env", *hub]) == 1
    assert "envs" in capsys.readouterr().err

    assert main(["apps", "write-tokens", client_id, *hub]) == 0
    out = capsys.readouterr().out
    assert "TOKEN" in out and app["write_token"] in out
    assert main(["apps", "write-token-create", client_id, *hub]) == 0
    second = capsys.readouterr().out.strip()
    assert WRITE_TOKEN.fullmatch(second)
    assert main(["apps", "write-token-revoke", client_id, app["write_token"], *hub]) == 0
    assert "revoked" in capsys.readouterr().out
    assert main(["apps", "write-tokens", client_id, *hub, "--json"]) == 0
    listed_tokens = json.loads(capsys.readouterr().out)["write_tokens"]
    assert [(t["token"], t["revoked_at"] is not None) for t in listed_tokens] == [
        (app["write_token"], True),
        (second, False),
    ]
    assert main(["apps", "write-token-revoke", client_id, "apt_" + "z" * 24, *hub]) == 1
    assert "404" in capsys.readouterr().err
    viewer = ["--hub", roles_hub.url, "--token", VIEWER]
    assert main(["apps", "write-tokens", client_id, *viewer]) == 1
    assert "admin" in capsys.readouterr().err
    assert main(["apps", "write-token-create", client_id, *viewer]) == 1
    assert "403" in capsys.readouterr().err

    assert main(["apps", "delete", client_id, "--yes", *hub]) == 0
    assert "deleted" in capsys.readouterr().out
    with httpx.Client(base_url=roles_hub.url, headers=bearer(ADMIN)) as http:
        assert http.get(f"/api/apps/{client_id}").status_code == 404
