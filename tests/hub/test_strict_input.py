"""Hostile input from the issue's table (issue 11): each case against the real hub on loopback."""

from __future__ import annotations

import copy
import json
import time
from typing import Any

import httpx
import pytest

from apitally_hub import HubServer
from apitally_hub.cli import main
from apitally_hub.config import Retention
from tests.support.hub_samples import SERVER_ERROR_ITEM, gzip_lines, log_line, new_uuid, sync

DAY = 86400.0


def locs(response: httpx.Response) -> list[list[Any]]:
    return [error["loc"] for error in response.json()["detail"]]


# -- counts that could overflow a SUM are refused at ingest -----------------------------------


def _server_errors(count: int, error_count: int) -> list[dict[str, Any]]:
    return [{**SERVER_ERROR_ITEM, "msg": f"fake {i}", "error_count": error_count} for i in range(count)]


def test_error_counts_near_2_53_are_refused_and_queries_keep_answering(
    http: httpx.Client, app_path: str, client_id: str, capsys: pytest.CaptureFixture[str], hub: HubServer
) -> None:
    """1 100 items of 2**53 - 1 used to be accepted; then SQLite's SUM overflowed into a 500."""
    huge = sync(server_errors=_server_errors(1100, 2**53 - 1))
    huge["validation_errors"][0]["error_count"] = 2**53 - 1
    response = http.post(f"{app_path}/sync", json=huge)
    assert response.status_code == 422
    assert ["server_errors", 0, "error_count"] in locs(response)
    assert ["validation_errors", 0, "error_count"] in locs(response)
    # the largest count an item may carry, 10**9, is accepted 1 100 times over and sums fine
    fine = sync(server_errors=_server_errors(1100, 10**9))
    assert http.post(f"{app_path}/sync", json=fine).status_code == 202
    for resource in ("server-errors", "validation-errors"):
        assert http.get(f"/api/{client_id}/dev/{resource}").status_code == 200
    errors, cursor = [], None
    while True:  # every list of the query API is paged
        params = {"limit": 1000, "cursor": cursor}
        page = http.get(f"/api/{client_id}/dev/server-errors", params=params).json()
        errors += page["server_errors"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(errors) == 1100 and sum(e["count"] for e in errors) == 1100 * 10**9
    assert main(["report", "--hub", hub.url, "--client-id", client_id, "--json"]) == 0
    capsys.readouterr()


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("requests", 0, "request_count"), 10**9 + 1),
        (("requests", 0, "response_size_sum"), 10**15 + 1),
        (("requests", 0, "response_times", "0"), 10**9 + 1),
        (("validation_errors", 0, "error_count"), 10**9 + 1),
    ],
    ids=str,
)
def test_counts_and_byte_sums_have_ceilings(
    http: httpx.Client, app_path: str, path: tuple[Any, ...], value: int
) -> None:
    message = sync()
    target: Any = message
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    response = http.post(f"{app_path}/sync", json=message)
    assert response.status_code == 422
    assert list(path) in locs(response)


# -- size sums must agree with their bins -----------------------------------------------------


@pytest.mark.parametrize(
    ("key", "total"),
    [("request_size_sum", 23_999), ("request_size_sum", 65_959), ("response_size_sum", 0)],
)
def test_size_sums_that_contradict_the_bins_are_422(
    http: httpx.Client, app_path: str, client_id: str, key: str, total: int
) -> None:
    # request_sizes {"0": 40, "12": 2} allow 24 000 .. 65 958 bytes; response_sizes {"1": 42} 42 000 ..
    message = sync()
    message["requests"][0][key] = total
    response = http.post(f"{app_path}/sync", json=message)
    assert response.status_code == 422, response.text
    assert ["requests", 0, key] in locs(response)
    assert http.get(f"/api/{client_id}/dev/endpoints").json()["endpoints"] == []


def test_size_sums_at_the_bins_bounds_are_accepted(http: httpx.Client, app_path: str) -> None:
    for total in (24_000, 65_958):
        message = sync()
        message["requests"][0]["request_size_sum"] = total
        assert http.post(f"{app_path}/sync", json=message).status_code == 202


# -- timestamps within [now - retention, now + 1 day] -----------------------------------------


@pytest.mark.parametrize(
    "offset", [9.9e9 - time.time(), 2 * DAY, -31 * DAY], ids=["year-2286", "+2d", "-31d"]
)
def test_sync_timestamps_outside_the_window_are_422(
    http: httpx.Client, app_path: str, client_id: str, offset: float
) -> None:
    response = http.post(f"{app_path}/sync", json=sync(timestamp=time.time() + offset))
    assert response.status_code == 422, response.text
    assert locs(response) == [["timestamp"]]
    assert http.get(f"/api/{client_id}/dev/instances").json()["instances"] == []


def test_timestamps_inside_the_window_are_accepted(http: httpx.Client, app_path: str) -> None:
    for offset in (-29 * DAY, 0.5 * DAY):
        assert http.post(f"{app_path}/sync", json=sync(timestamp=time.time() + offset)).status_code == 202


def test_log_line_timestamps_outside_the_window_are_422(http: httpx.Client, app_path: str) -> None:
    body = gzip_lines([log_line(), log_line(timestamp=9.9e9)])
    response = http.post(f"{app_path}/log", params={"uuid": new_uuid()}, content=body)
    assert response.status_code == 422
    assert ["lines", 1, "request", "timestamp"] in locs(response)


def test_the_window_follows_the_retention() -> None:
    with HubServer(retention=Retention(minutes=1)) as hub, httpx.Client(base_url=hub.url) as http:
        path = f"/v2/{new_uuid()}/dev/sync"
        assert http.post(path, json=sync(timestamp=time.time() - 2 * DAY)).status_code == 422
        assert http.post(path, json=sync(timestamp=time.time() - 0.5 * DAY)).status_code == 202


# -- env names are ASCII ----------------------------------------------------------------------


@pytest.mark.parametrize("env", ["prödé", "\uff44\uff45\uff56", "dev\u0663", "dev\u200b"])
def test_non_ascii_env_is_422(http: httpx.Client, client_id: str, env: str) -> None:
    response = http.post(f"/v2/{client_id}/{env}/sync", json=sync())
    assert response.status_code == 422
    assert locs(response) == [["path", "env"]]
    assert http.get(f"/api/{client_id}/{env}/endpoints").status_code == 422


# -- a charset other than UTF-8 is 415 --------------------------------------------------------


@pytest.mark.parametrize("charset", ["latin-1", "ISO-8859-1", '"utf-16"'])
def test_non_utf8_charset_is_415(http: httpx.Client, app_path: str, client_id: str, charset: str) -> None:
    message = sync(consumers=[{"identifier": "caf\u00e9", "name": "Caf\u00e9", "group": None}])
    body = json.dumps(message, ensure_ascii=False).encode("latin-1")
    headers = {"content-type": f"application/json; charset={charset}"}
    response = http.post(f"{app_path}/sync", content=body, headers=headers)
    assert response.status_code == 415
    assert "charset" in response.json()["detail"]
    assert http.get(f"/api/{client_id}/dev/consumers").json()["consumers"] == []


@pytest.mark.parametrize("charset", ["utf-8", "UTF-8", '"utf-8"', "utf8"])
def test_utf8_charset_is_fine(http: httpx.Client, app_path: str, charset: str) -> None:
    body = json.dumps(sync()).encode()
    headers = {"content-type": f"application/json; charset={charset}"}
    assert http.post(f"{app_path}/sync", content=body, headers=headers).status_code == 202


def test_log_with_a_non_utf8_charset_is_415(http: httpx.Client, app_path: str) -> None:
    response = http.post(
        f"{app_path}/log",
        params={"uuid": new_uuid()},
        content=gzip_lines([log_line()]),
        headers={"content-type": "application/octet-stream; charset=latin-1"},
    )
    assert response.status_code == 415


# -- every query parameter is validated: 4xx, never 500 ---------------------------------------

BAD_PARAMS = [
    ("endpoints", {"since": "1e20"}),
    ("endpoints", {"since": "100000000000000000000"}),
    ("endpoints", {"until": "1e20"}),
    ("endpoints", {"since": "9" * 400 + "w"}),
    ("endpoints", {"since": "٣h"}),
    ("endpoints", {"since": "0001-01-01T00:00:00Z"}),
    ("endpoints", {"include_idle": "maybe"}),
    ("timeseries", {"since": "1e20"}),
    ("consumers", {"since": "1e20"}),
    ("validation-errors", {"until": "1e20"}),
    ("server-errors", {"since": "1e20"}),
    ("rejections", {"limit": "²"}),
    ("requests", {"limit": "²"}),
    ("requests", {"cursor": "9" * 5000}),
    ("requests", {"cursor": "-1"}),
    ("requests", {"status": "٤xx"}),
    ("requests", {"q": "x" * 5000}),
    ("timeseries", {"path": "/" + "x" * 5000}),
]


@pytest.mark.parametrize(("resource", "params"), BAD_PARAMS, ids=lambda v: repr(v)[:40])
def test_bad_query_parameters_are_422(
    http: httpx.Client, client_id: str, resource: str, params: dict[str, str]
) -> None:
    response = http.get(f"/api/{client_id}/dev/{resource}", params=params)
    assert response.status_code == 422, response.text
    [name] = params
    assert locs(response) == [["query", name]]


# -- ANSI/OSC escapes never reach the operator's terminal -------------------------------------

ESCAPES = "\x1b]0;pwned\x07\x1b[2J\x1b[31m\r\u202e"


def test_report_escapes_control_characters(
    hub: HubServer, http: httpx.Client, app_path: str, client_id: str, capsys: pytest.CaptureFixture[str]
) -> None:
    message = sync(consumers=[{"identifier": f"evil{ESCAPES}", "name": f"Name{ESCAPES}", "group": None}])
    request = copy.deepcopy(message["requests"][0])
    message["requests"] = [{**request, "path": f"/api/{ESCAPES}x", "consumer": f"evil{ESCAPES}"}]
    message["server_errors"][0]["msg"] = f"boom{ESCAPES}"
    assert http.post(f"{app_path}/sync", json=message).status_code == 202
    url = "https://host/\x1b]0;pwned\x07\u202e"  # a URL has no whitespace
    body = gzip_lines([log_line(url=url, consumer=f"evil{ESCAPES}")])
    assert http.post(f"{app_path}/log", params={"uuid": new_uuid()}, content=body).status_code == 202
    assert main(["report", "--hub", hub.url, "--client-id", client_id]) == 0
    out = capsys.readouterr().out
    assert not any(char in out for char in "\x1b\x07\r\u202e"), repr(out)
    assert "/api/\\x1b]0;pwned\\x07" in out and "evil\\x1b" in out and "\\u202e" in out
    assert "boom\\x1b" in out
