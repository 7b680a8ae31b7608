"""The alerting API's contract and strict validation, the rules file, the ``alerts`` CLI and the
hub's alerting flags."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from apitally_hub import HubServer
from apitally_hub.alerting.config import AlertingConfig
from apitally_hub.cli import build_parser, main
from tests.support.alerting_helpers import DrivenHub, driven_hub, traffic
from tests.support.servers import ServerThread, WebhookReceiver

RULE = {"name": "5xx", "metric": "server_errors", "condition": ">", "threshold": 0, "window_minutes": 1}

JSON = {"Content-Type": "application/json"}


@pytest.fixture
def client_id() -> str:
    return str(uuid.uuid4())


@pytest.fixture
def hub(tmp_path: Path, client_id: str, hub_db: str | Path) -> Iterator[DrivenHub]:
    with driven_hub(hub_db, client_id) as driven:
        yield driven


def error_locs(response: Any) -> list[list[Any]]:
    assert response.status_code == 422, response.text
    return [e["loc"] for e in response.json()["detail"]]


def test_contract_create_list_update_delete(hub: DrivenHub) -> None:
    channel = hub.post(
        "channels", {"name": "ops", "type": "webhook", "url": "http://127.0.0.1:9/hook", "secret": "x"}
    )
    assert (
        set(channel) >= {"id", "name", "type", "url"}
        and channel["secret_set"] is True
        and "secret" not in channel
    )
    created = hub.post("alert-rules", {**RULE, "channels": [channel["id"]]})
    assert created["id"] and created["for_minutes"] == 0 and created["scope"] == {}
    [listed] = hub.get("alert-rules")["rules"]
    assert (listed["id"], listed["name"], listed["channels"], listed["source"]) == (
        created["id"],
        "5xx",
        [channel["id"]],
        "api",
    )
    assert hub.get("alerts") == {**hub.get("alerts"), "alerts": []}
    patched = hub.http.patch(
        f"{hub.api}/alert-rules/{created['id']}", json={"threshold": 5, "for_minutes": 2}
    )
    assert patched.status_code == 200 and (patched.json()["threshold"], patched.json()["metric"]) == (
        5,
        "server_errors",
    )
    put = hub.http.put(f"{hub.api}/alert-rules/{created['id']}", json={**RULE, "name": "errors"})
    assert put.status_code == 200 and put.json()["channels"] == [] and put.json()["threshold"] == 0
    # a PATCH of the channel keeps its secret
    renamed = hub.http.patch(f"{hub.api}/channels/{channel['id']}", json={"name": "ops2"})
    assert renamed.status_code == 200 and renamed.json()["secret_set"] is True
    assert hub.http.delete(f"{hub.api}/alert-rules/{created['id']}").status_code == 204
    assert hub.http.get(f"{hub.api}/alert-rules/{created['id']}").status_code == 404
    assert hub.http.delete(f"{hub.api}/channels/{channel['id']}").status_code == 204
    other = f"/api/{uuid.uuid4()}/prod"
    assert hub.http.get(f"{other}/channels").json() == {"channels": []}


@pytest.mark.parametrize(
    ("change", "loc"),
    [
        ({"threshold": None}, ["body", "threshold"]),
        ({"threshold": "1"}, ["body", "threshold"]),
        ({"metric": "latency"}, ["body", "metric"]),
        ({"condition": "=="}, ["body", "condition"]),
        ({"window_minutes": 0}, ["body", "window_minutes"]),
        ({"window_minutes": 61}, ["body", "window_minutes"]),
        ({"for_minutes": -1}, ["body", "for_minutes"]),
        ({"no_data": "maybe"}, ["body", "no_data"]),
        ({"channels": ["nope"]}, ["body", "channels", 0]),
        ({"thresold": 1}, ["body", "thresold"]),
        ({"scope": {"for_each": "planet"}}, ["body", "scope", "for_each"]),
        ({"scope": {"endpoints": [{"path": "items"}]}}, ["body", "scope", "endpoints", 0, "path"]),
        ({"scope": {"consumer": "a", "for_each": "consumer"}}, ["body", "scope", "for_each"]),
        ({"metric": "uptime", "scope": {"path_pattern": "/x"}}, ["body", "scope"]),
        ({"min_requests": 5}, ["body", "min_requests"]),
        ({"name": ""}, ["body", "name"]),
    ],
)
def test_rule_validation_names_the_field(hub: DrivenHub, change: dict[str, Any], loc: list[Any]) -> None:
    body = {k: v for k, v in {**RULE, **change}.items() if v is not None}
    response = hub.http.post(f"{hub.api}/alert-rules", json=body)
    assert loc in error_locs(response)
    assert hub.get("alert-rules")["rules"] == []


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"name": "a", "type": "webhook", "url": "ftp://example.com/x"}, ["body", "url"]),
        ({"name": "a", "type": "webhook", "url": "file:///etc/passwd"}, ["body", "url"]),
        ({"name": "a", "type": "slack"}, ["body", "url"]),
        ({"name": "a", "type": "pager", "url": "http://x/"}, ["body", "type"]),
        ({"name": "a", "type": "email", "smtp_host": "h", "from_address": "a@b.c"}, ["body", "to"]),
        (
            {"name": "a", "type": "email", "smtp_host": "h", "from_address": "x", "to": ["a@b.c"]},
            ["body", "from_address"],
        ),
        (
            {
                "name": "a",
                "type": "email",
                "smtp_host": "h",
                "from_address": "a@b.c",
                "to": ["a@b.c"],
                "smtp_port": 0,
            },
            ["body", "smtp_port"],
        ),
    ],
)
def test_channel_validation_names_the_field(hub: DrivenHub, body: dict[str, Any], loc: list[Any]) -> None:
    assert loc in error_locs(hub.http.post(f"{hub.api}/channels", json=body))


def test_conflicts_and_bad_bodies(hub: DrivenHub) -> None:
    channel = hub.post("channels", {"name": "ops", "type": "teams", "url": "https://example.com/hook"})
    again = hub.http.post(
        f"{hub.api}/channels", json={"name": "ops", "type": "teams", "url": "https://example.com/x"}
    )
    assert again.status_code == 409
    hub.post("alert-rules", {**RULE, "channels": [channel["id"]]})
    assert hub.http.post(f"{hub.api}/alert-rules", json=RULE).status_code == 409
    in_use = hub.http.delete(f"{hub.api}/channels/{channel['id']}")
    assert in_use.status_code == 409 and "5xx" in in_use.json()["detail"]
    assert error_locs(hub.http.post(f"{hub.api}/alert-rules", content=b"{not json", headers=JSON)) == [
        ["body"]
    ]
    assert hub.http.post(f"{hub.api}/alert-rules", content=b"x" * 70_000, headers=JSON).status_code == 413
    assert hub.http.get(f"{hub.api}/alerts", params={"state": "burning"}).status_code == 422
    assert hub.http.get("/api/not-a-uuid/prod/alert-rules").status_code == 404


def test_history_pages(hub: DrivenHub) -> None:
    hub.post("alert-rules", RULE)
    for _ in range(3):
        hub.sync(traffic(status=500))
        hub.evaluate()
        hub.clock.advance(150)
        hub.evaluate()
    first = hub.get("alerts/history", limit=4)
    assert len(first["history"]) == 4 and first["next_cursor"]
    rest = hub.get("alerts/history", limit=4, cursor=first["next_cursor"])
    assert len(rest["history"]) == 2 and rest["next_cursor"] is None
    ids = [h["id"] for h in first["history"] + rest["history"]]
    assert len(set(ids)) == 6
    assert hub.http.get(f"{hub.api}/alerts/history", params={"cursor": "zzz"}).status_code == 422


def test_health_check_up_down_and_redirects(hub: DrivenHub) -> None:
    from starlette.applications import Starlette
    from starlette.responses import RedirectResponse, Response
    from starlette.routing import Route

    state = {"code": 200}

    async def health(request: Any) -> Response:
        return Response(status_code=state["code"])

    async def away(request: Any) -> Response:
        return RedirectResponse("http://example.invalid/health")

    async def here(request: Any) -> Response:
        return RedirectResponse("/health")

    app = Starlette(routes=[Route("/health", health), Route("/away", away), Route("/here", here)])
    alerting = hub.server.context.alerting
    assert alerting is not None
    with ServerThread(app) as url:
        assert error_locs(hub.http.put(f"{hub.api}/health-check", json={"url": "gopher://x"})) == [
            ["body", "url"]
        ]
        assert hub.http.put(f"{hub.api}/health-check", json={"url": url + "/here"}).status_code == 200
        alerting.health.run_once()
        check = hub.get("health-check")
        assert (check["status"], check["status_code"], check["accepted_status_codes"]) == ("up", 200, ["2xx"])
        state["code"] = 503
        alerting.health.run_once()
        check = hub.get("health-check")
        assert (check["status"], check["error"]) == ("down", "HTTP 503")
        uptime = hub.get("uptime")
        assert uptime["status"] == "down" and uptime["health_check"]["status"] == "down"
        hub.http.put(f"{hub.api}/health-check", json={"url": url + "/health", "accepted_status_codes": [503]})
        alerting.health.run_once()
        assert hub.get("health-check")["status"] == "up"
        hub.http.put(f"{hub.api}/health-check", json={"url": url + "/away"})
        alerting.health.run_once()
        check = hub.get("health-check")
        assert check["status"] == "down" and "another host" in check["error"]
    assert hub.http.delete(f"{hub.api}/health-check").status_code == 204


def test_rules_file_is_loaded_at_start_and_read_only(
    tmp_path: Path, client_id: str, monkeypatch: pytest.MonkeyPatch, hub_db: str | Path
) -> None:
    monkeypatch.setenv("HOOK_SECRET", "from-env")
    rules = tmp_path / "rules.toml"
    rules.write_text(
        f'client_id = "{client_id}"\nenv = "prod"\n\n'
        '[[channels]]\nname = "ops"\ntype = "webhook"\nurl = "http://127.0.0.1:9/hook"\n'
        'secret = "${HOOK_SECRET}"\n\n'
        '[[rules]]\nname = "5xx"\nmetric = "server_errors"\ncondition = ">"\nthreshold = 0\n'
        "window_minutes = 5\n"
        'channels = ["ops"]\nscope = { path_pattern = "/api/*", for_each = "endpoint" }\n\n'
        '[[health_checks]]\nurl = "http://127.0.0.1:9/health"\n'
    )
    db = hub_db
    with driven_hub(db, client_id, rules_file=rules) as hub:
        [rule] = hub.get("alert-rules")["rules"]
        [channel] = hub.get("channels")["channels"]
        assert (rule["source"], rule["channels"], rule["scope"]["for_each"]) == (
            "file",
            [channel["id"]],
            "endpoint",
        )
        assert channel["secret_set"] is True
        assert hub.http.patch(f"{hub.api}/alert-rules/{rule['id']}", json={"threshold": 1}).status_code == 409
        assert hub.http.delete(f"{hub.api}/channels/{channel['id']}").status_code == 409
        assert hub.get("health-check")["source"] == "file"
    with driven_hub(db, client_id, rules_file=rules) as hub:  # ids are stable across restarts
        assert hub.get("alert-rules")["rules"][0]["id"] == rule["id"]
    rules.write_text(f'client_id = "{client_id}"\n[[rules]]\nname = "x"\nmetric = "server_errors"\n')
    with pytest.raises(RuntimeError):
        HubServer(db, alerting=AlertingConfig(enabled=False, rules_file=rules)).start()


def test_hub_flags(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = build_parser().parse_args(["hub", "--alert-interval", "15", "--alerts-file", "r.toml"])
    assert (args.alert_interval, args.alerts_file) == (15.0, Path("r.toml"))
    bad = tmp_path / "bad.toml"
    bad.write_text("[[rules]]\nname = 1\n")
    assert main(["hub", "--port", "0", "--db", str(tmp_path / "h.sqlite"), "--alerts-file", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "bad.toml" in err and "client_id" in err


def test_alerts_cli(
    tmp_path: Path, client_id: str, capsys: pytest.CaptureFixture[str], hub_db: str | Path
) -> None:
    hook = WebhookReceiver()
    settings = {"enabled": True, "interval": 3600}
    with ServerThread(hook.app()) as url, driven_hub(hub_db, client_id, **settings) as hub:
        common = ["--hub", hub.server.url, "--client-id", client_id, "--env", "prod"]
        assert (
            main(
                [
                    "alerts",
                    "add",
                    "channel",
                    *common,
                    "--name",
                    "ops",
                    "--type",
                    "webhook",
                    "--url",
                    url + "/h",
                ]
            )
            == 0
        )
        args = [
            "--name",
            "5xx",
            "--metric",
            "server_errors",
            "--condition",
            ">",
            "--threshold",
            "0",
            "--window",
            "5",
        ]
        assert main(["alerts", "add", "rule", *common, *args, "--channel", "ops"]) == 0
        assert main(["alerts", "add", "silence", *common, "--rule", "5xx", "--minutes", "10"]) == 0
        capsys.readouterr()
        assert main(["alerts", "list", *common]) == 0
        out = capsys.readouterr().out
        assert "ops" in out and "server_errors > 0" in out and "Silences" in out
        assert main(["alerts", "test", "ops", *common]) == 0
        assert "sent after 1 attempt" in capsys.readouterr().out
        assert hook.delivered("/h")[0].json()["test"] is True
        assert main(["alerts", "list", *common, "--json"]) == 0
        listed = json.loads(capsys.readouterr().out)
        assert [r["name"] for r in listed["rules"]] == ["5xx"]
        bad = ["--name", "x", "--metric", "nope", "--condition", ">", "--threshold", "0", "--window", "5"]
        assert main(["alerts", "add", "rule", *common, *bad]) == 1
        assert "metric" in capsys.readouterr().err
        assert main(["alerts", "rm", "rule", "5xx", *common]) == 0
        assert main(["alerts", "rm", "channel", "ops", *common]) == 0
        assert hub.get("alert-rules")["rules"] == [] and hub.get("channels")["channels"] == []


def test_management_needs_the_token_when_one_is_configured(
    tmp_path: Path, client_id: str, hub_db: str | Path
) -> None:
    import httpx

    settings = AlertingConfig(enabled=False)
    with HubServer(hub_db, tokens=["tok-1"], alerting=settings) as server:
        api = f"{server.url}/api/{client_id}/prod"
        body = {"name": "ops", "type": "webhook", "url": "http://127.0.0.1:9/h"}
        assert httpx.post(f"{api}/channels", json=body).status_code == 401
        assert httpx.get(f"{api}/alert-rules").status_code == 401
        page = httpx.get(f"{server.url}/apps/{client_id}/prod/alerts")  # a page read: to the login form
        assert page.status_code == 303 and page.headers["location"].startswith("/login?")
        auth = {"Authorization": "Bearer tok-1"}
        assert httpx.post(f"{api}/channels", json=body, headers=auth).status_code == 201
        common = ["--hub", server.url, "--client-id", client_id, "--env", "prod"]
        assert main(["alerts", "list", *common]) == 1
        assert main(["alerts", "list", *common, "--token", "tok-1"]) == 0
