"""Custom request attributes on the hub (``request.attributes``, hub-protocol §5): validated at
ingest (a bad one is a 422 naming the field, nothing stored), filtered by (``attribute=key:value``,
exact, over the newest :data:`LOG_BODY_SCAN` requests matching the other filters) in the JSON API
and the dashboard's request log on each backend, and shown, escaped, on the request's page."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from apitally_hub.protocol.log_lines import validate_log_lines
from apitally_hub.storage.records import LOG_BODY_SCAN
from tests.support.hub_samples import gzip_lines, log_line, new_uuid


def tagged(n: int, attributes: dict[str, Any] | None, *, at: float | None = None) -> dict[str, Any]:
    line = log_line(url=f"https://host/items/{n}", timestamp=time.time() - 5 + n * 0.01 if at is None else at)
    if attributes is not None:
        line["request"]["attributes"] = attributes
    return line


def upload(http: httpx.Client, client_id: str, lines: list[dict[str, Any]]) -> httpx.Response:
    return http.post(f"/v2/{client_id}/dev/log", params={"uuid": new_uuid()}, content=gzip_lines(lines))


def urls(http: httpx.Client, client_id: str, **params: str) -> list[str]:
    response = http.get(f"/api/{client_id}/dev/requests", params={"since": "1h", **params})
    assert response.status_code == 200, response.text
    return [item["url"].rsplit("/", 1)[-1] for item in response.json()["items"]]


# -- validation -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "attributes",
    [
        {},
        {"tenant": "acme"},
        {"K.k-_9": "", "x" * 64: "v" * 256},
        {f"a{i}": str(i) for i in range(20)},
        None,
    ],
)
def test_attributes_within_the_bounds_are_accepted(attributes: dict[str, Any] | None) -> None:
    assert validate_log_lines([(0, tagged(0, attributes))]) == []


LOC = ("lines", 0, "request", "attributes")


@pytest.mark.parametrize(
    ("attributes", "loc", "type_"),
    [
        ({f"a{i}": str(i) for i in range(21)}, LOC, "too_long"),
        ({"k" * 65: "v"}, (*LOC, "k" * 65), "attribute_key"),
        ({"": "v"}, (*LOC, ""), "attribute_key"),
        ({"bad key": "v"}, (*LOC, "bad key"), "attribute_key"),
        ({"ünï": "v"}, (*LOC, "ünï"), "attribute_key"),
        ({"a\n": "v"}, (*LOC, "a\n"), "attribute_key"),
        ({"tenant": 7}, (*LOC, "tenant"), "string_type"),
        ({"tenant": True}, (*LOC, "tenant"), "string_type"),
        ({"tenant": None}, (*LOC, "tenant"), "string_type"),
        ({"tenant": ["acme"]}, (*LOC, "tenant"), "string_type"),
        ({"tenant": "v" * 257}, (*LOC, "tenant"), "string_too_long"),
        (["tenant", "acme"], LOC, "object_type"),
        ("tenant=acme", LOC, "object_type"),
    ],
)
def test_attributes_beyond_the_bounds_are_refused(attributes: Any, loc: tuple[Any, ...], type_: str) -> None:
    errors = validate_log_lines([(0, tagged(0, attributes))])
    assert [(e.loc, e.type) for e in errors] == [(loc, type_)]


def test_a_bad_attribute_is_a_422_and_nothing_is_stored(http: httpx.Client, client_id: str) -> None:
    lines = [tagged(0, {"tenant": "acme"}), tagged(1, {f"a{i}": "x" for i in range(21)})]
    response = upload(http, client_id, lines)
    assert response.status_code == 422
    assert [e["loc"] for e in response.json()["detail"]] == [["lines", 1, "request", "attributes"]]
    response = upload(http, client_id, [tagged(2, {"long": "v" * 257}), tagged(3, {"bad key": "v"})])
    assert response.status_code == 422
    assert [e["loc"] for e in response.json()["detail"]] == [
        ["lines", 0, "request", "attributes", "long"],
        ["lines", 1, "request", "attributes", "bad key"],
    ]
    assert urls(http, client_id) == []
    assert upload(http, client_id, lines[:1]).status_code == 202
    assert urls(http, client_id) == ["0"]


# -- the filter -----------------------------------------------------------------------------------


def fill(http: httpx.Client, client_id: str) -> list[dict[str, Any]]:
    lines = [
        tagged(0, {"tenant": "acme", "plan": "pro"}),
        tagged(1, {"tenant": "globex"}),
        tagged(2, {"tenant": "acme", "odd.key-1_x": "a:b c"}),
        tagged(3, None),
        tagged(4, {"tenant": "acme corp"}),
        tagged(5, {"tenant": ""}),
    ]
    assert upload(http, client_id, lines).status_code == 202
    return lines


def test_the_api_filters_by_an_attribute(http: httpx.Client, client_id: str) -> None:
    fill(http, client_id)
    assert urls(http, client_id, attribute="tenant:acme") == ["2", "0"]
    assert urls(http, client_id, attribute="tenant:acme corp") == ["4"]
    assert urls(http, client_id, attribute="tenant:") == ["5"]  # an empty value, exactly
    assert urls(http, client_id, attribute="odd.key-1_x:a:b c") == ["2"]  # the first ':' ends the key
    assert urls(http, client_id, attribute="plan:pro") == ["0"]
    assert urls(http, client_id, attribute="plan:PRO") == []
    assert urls(http, client_id, attribute="nothing:acme") == []
    assert urls(http, client_id, attribute="tenant:acme", q="items/2") == ["2"]
    assert urls(http, client_id, attribute="tenant:acme", request_body="name") == [
        "2",
        "0",
    ]  # with a body search
    assert urls(http, client_id, attribute="tenant:acme", request_body="nowhere") == []
    answer = http.get(
        f"/api/{client_id}/dev/requests", params={"since": "1h", "attribute": "tenant:acme"}
    ).json()
    assert answer["total"] == 2 and answer["attribute_search_scanned_at_most"] == LOG_BODY_SCAN
    plain = http.get(f"/api/{client_id}/dev/requests", params={"since": "1h"}).json()
    assert plain["total"] == 6 and "attribute_search_scanned_at_most" not in plain


@pytest.mark.parametrize(
    "value", ["tenant", "bad key:x", ":x", "k" * 65 + ":x", "tenant:" + "v" * 257, "ü:x"]
)
def test_a_bad_filter_is_a_422(http: httpx.Client, client_id: str, value: str) -> None:
    response = http.get(f"/api/{client_id}/dev/requests", params={"attribute": value})
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == ["query", "attribute"]


def test_the_filter_reads_only_the_newest_items(http: httpx.Client, client_id: str) -> None:
    now = time.time()
    old = [tagged(i, {"tenant": "needle"}, at=now - 600 - i) for i in range(3)]
    new = [tagged(100 + i, {"tenant": "hay"}, at=now - 500 + i * 0.01) for i in range(LOG_BODY_SCAN)]
    lines = old + new
    for start in range(0, len(lines), 1000):
        assert upload(http, client_id, lines[start : start + 1000]).status_code == 202
    assert urls(http, client_id, attribute="tenant:needle") == []  # past the bound
    assert urls(http, client_id, attribute="tenant:needle", until="550") == ["0", "1", "2"]


# -- the dashboard ----------------------------------------------------------------------------------


def test_the_request_log_page_has_the_field(http: httpx.Client, client_id: str) -> None:
    fill(http, client_id)
    page = http.get(f"/apps/{client_id}/dev/requests", params={"attribute": "tenant:acme"})
    assert page.status_code == 200, page.text[:300]
    assert '<label>Attribute <input type="text" name="attribute"' in page.text
    assert 'value="tenant:acme"' in page.text
    assert page.text.count('data-request="') == 2
    assert 'id="attribute-scan"' in page.text and f"searched the last {LOG_BODY_SCAN:,} requests" in page.text
    assert "attribute=tenant%3Aacme" in page.text  # the CSV link
    assert 'class="field-error"' not in page.text
    plain = http.get(f"/apps/{client_id}/dev/requests")
    assert 'id="attribute-scan"' not in plain.text and plain.text.count('data-request="') == 6


def test_a_bad_filter_is_said_next_to_the_field(http: httpx.Client, client_id: str) -> None:
    fill(http, client_id)
    page = http.get(f"/apps/{client_id}/dev/requests", params={"attribute": "<b>no colon"})
    assert page.status_code == 422
    assert '<span class="field-error" id="attribute-error">Should be key:value</span>' in page.text
    assert 'aria-invalid="true" aria-describedby="attribute-error"' in page.text
    assert 'value="&lt;b&gt;no colon"' in page.text and "<b>no colon" not in page.text
    assert page.text.count('data-request="') == 0
    assert "attribute=" not in page.text.split('id="csv-requests"')[1].split(">")[0]  # not in the CSV link
    bad_key = http.get(f"/apps/{client_id}/dev/requests", params={"attribute": "bad key:x"})
    assert bad_key.status_code == 422 and 'id="attribute-error">Attribute key should be' in bad_key.text


def test_the_request_page_shows_them_escaped(http: httpx.Client, client_id: str) -> None:
    lines = [tagged(0, {"tenant": "<script>alert(1)</script>", "plan": "pro"}), tagged(1, None)]
    assert upload(http, client_id, lines).status_code == 202
    urls(http, client_id)  # folded
    page = http.get(f"/apps/{client_id}/dev/requests/{lines[0]['uuid']}")
    assert page.status_code == 200, page.text[:300]
    assert 'id="request-attributes"' in page.text and "Custom attributes" in page.text
    assert '<tr data-attribute="plan"><td class="mono nowrap">plan</td><td class="mono">pro</td>' in page.text
    assert "<script>alert(1)</script>" not in page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    assert "requests?attribute=plan%3Apro" in page.text  # a link to the requests with this value
    without = http.get(f"/apps/{client_id}/dev/requests/{lines[1]['uuid']}")
    assert without.status_code == 200 and 'id="request-attributes"' not in without.text
    assert "None set" in without.text
