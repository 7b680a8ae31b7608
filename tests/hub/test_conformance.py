"""Protocol conformance of the ingest endpoints (hub-protocol.md §1-§6) against a real hub."""

from __future__ import annotations

import copy
import gzip
import json
import zlib
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from apitally_hub import HubServer
from tests.support.hub_samples import gzip_lines, log_line, minimal_log_line, new_uuid, startup, sync


class _Delete:
    """The mutation that removes the field (its repr names the test ids the same in every process)."""

    def __repr__(self) -> str:
        return "DELETE"


DELETE = _Delete()


def mutate(doc: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    target = doc
    for key in path[:-1]:
        target = target[key]
    if value is DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return doc


def locs(response: httpx.Response) -> list[list[Any]]:
    return [error["loc"] for error in response.json()["detail"]]


def endpoint_summary(http: httpx.Client, client_id: str) -> list[dict[str, Any]]:
    response = http.get(f"/api/{client_id}/dev/endpoints", params={"since": "2h"})
    assert response.status_code == 200
    return list(response.json()["endpoints"])


# -- the examples are accepted ----------------------------------------------------------------


def test_startup_example_is_accepted(http: httpx.Client, app_path: str) -> None:
    response = http.post(f"{app_path}/startup", json=startup())
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "accepted"


def test_startup_accepts_upper_case_methods_and_no_openapi(http: httpx.Client, app_path: str) -> None:
    message = startup()
    message["paths"].append({"method": "POST", "path": "/api/items"})
    del message["openapi"]
    assert http.post(f"{app_path}/startup", json=message).status_code == 202


def test_sync_example_with_all_item_kinds_is_accepted(http: httpx.Client, app_path: str) -> None:
    response = http.post(f"{app_path}/sync", json=sync())
    assert response.status_code == 202, response.text


def test_sync_with_empty_lists_and_null_resources_is_a_heartbeat(http: httpx.Client, app_path: str) -> None:
    message = sync(requests=[], validation_errors=[], server_errors=[], consumers=[])
    message["resources"] = None
    assert http.post(f"{app_path}/sync", json=message).status_code == 202


def test_log_example_is_accepted(http: httpx.Client, app_path: str) -> None:
    body = gzip_lines([log_line(), minimal_log_line()])
    response = http.post(f"{app_path}/log", params={"uuid": new_uuid()}, content=body)
    assert response.status_code == 202, response.text
    assert response.json()["lines"] == 2


def test_env_with_underscore_and_upper_case_is_accepted(http: httpx.Client, client_id: str) -> None:
    assert http.post(f"/v2/{client_id}/Prod_eu-1/sync", json=sync()).status_code == 202


def test_upper_case_client_id_is_normalized(http: httpx.Client, client_id: str) -> None:
    assert http.post(f"/v2/{client_id.upper()}/dev/sync", json=sync()).status_code == 202
    assert endpoint_summary(http, client_id)[0]["requests"] == 42


# -- strict validation: each mutation is a 422 naming the field -------------------------------

STARTUP_MUTATIONS = [
    (("instance_uuid",), 123, None),
    (("instance_uuid",), "not-a-uuid", None),
    (("message_uuid",), "6F9619FF-8B86-D011-B42D-00C04FC964FF", None),
    (("message_uuid",), DELETE, None),
    (("paths",), "GET /", None),
    (("paths", 0), ["get", "/"], None),
    (("paths", 0, "method"), 1, None),
    (("paths", 0, "method"), "OPTIONS", None),
    (("paths", 0, "path"), "api/items", None),
    (("paths", 0, "path"), DELETE, None),
    (("openapi",), 5, None),
    (("openapi",), "{not json", None),
    (("versions",), ["3.11"], None),
    (("versions", "python"), 3.11, None),
    (("client",), None, None),
    (("unexpected",), 1, None),
]


@pytest.mark.parametrize(("path", "value", "loc"), STARTUP_MUTATIONS, ids=lambda v: repr(v)[:30])
def test_startup_mutation_is_rejected(
    http: httpx.Client, app_path: str, path: tuple[Any, ...], value: Any, loc: tuple[Any, ...] | None
) -> None:
    response = http.post(f"{app_path}/startup", json=mutate(startup(), path, value))
    assert response.status_code == 422, response.text
    assert list(loc or path) in locs(response)


SYNC_MUTATIONS = [
    (("timestamp",), "now", None),
    (("timestamp",), -1, None),
    (("timestamp",), True, None),
    (("timestamp",), 1e300, None),
    (("timestamp",), 10**400, None),
    (("requests",), {}, None),
    (("requests",), DELETE, None),
    (("requests", 0), "GET /", None),
    (("requests", 0, "consumer"), 5, None),
    (("requests", 0, "consumer"), "x" * 129, None),
    (("requests", 0, "consumer"), " acme", None),
    (("requests", 0, "consumer"), "", None),
    (("requests", 0, "method"), "get", None),
    (("requests", 0, "method"), "OPTIONS", None),
    (("requests", 0, "path"), "items", None),
    (("requests", 0, "path"), None, None),
    (("requests", 0, "status_code"), "200", None),
    (("requests", 0, "status_code"), 99, None),
    (("requests", 0, "status_code"), 600, None),
    (("requests", 0, "status_code"), 200.0, None),
    (("requests", 0, "request_count"), -1, None),
    (("requests", 0, "request_count"), 2**64, None),
    (("requests", 0, "request_count"), 41, ("requests", 0, "response_times")),
    (("requests", 0, "request_size_sum"), -5, None),
    (("requests", 0, "response_size_sum"), "1", None),
    (("requests", 0, "response_times"), [30, 9, 3], None),
    (("requests", 0, "response_times"), {"0": 41}, None),
    (("requests", 0, "response_times"), {"5": 42}, ("requests", 0, "response_times", "5")),
    (("requests", 0, "response_times"), {"010": 42}, ("requests", 0, "response_times", "010")),
    (("requests", 0, "response_times"), {"-10": 42}, ("requests", 0, "response_times", "-10")),
    (("requests", 0, "response_times"), {"abc": 42}, ("requests", 0, "response_times", "abc")),
    (("requests", 0, "response_times"), {"9" * 5000: 42}, ("requests", 0, "response_times", "9" * 5000)),
    (("requests", 0, "response_times"), {"0": 42.0}, ("requests", 0, "response_times", "0")),
    (("requests", 0, "response_times", "0"), -1, None),
    (("requests", 0, "request_sizes"), {"0": "40", "12": 2}, ("requests", 0, "request_sizes", "0")),
    (("requests", 0, "request_sizes"), {"0": 43}, None),
    (("requests", 0, "response_sizes"), {"1.5": 42}, ("requests", 0, "response_sizes", "1.5")),
    (("requests", 0, "response_sizes"), DELETE, None),
    (("requests", 0, "extra"), 1, None),
    (("validation_errors",), None, None),
    (("validation_errors", 0, "loc"), "query.foo", None),
    (("validation_errors", 0, "loc"), ["query", 0], ("validation_errors", 0, "loc", 1)),
    (("validation_errors", 0, "msg"), None, None),
    (("validation_errors", 0, "error_count"), -1, None),
    (("validation_errors", 0, "method"), "get", None),
    (("server_errors", 0, "type"), "", None),
    (("server_errors", 0, "msg"), "x" * 2049, None),
    (("server_errors", 0, "traceback"), "x" * 65537, None),
    (("server_errors", 0, "sentry_event_id"), 5, None),
    (("server_errors", 0, "error_count"), "1", None),
    (("server_errors", 0, "path"), DELETE, None),
    (("consumers", 0, "identifier"), "", None),
    (("consumers", 0, "identifier"), "x" * 129, None),
    (("consumers", 0, "name"), "x" * 65, None),
    (("consumers", 0, "name"), "Acme ", None),
    (("consumers", 0, "group"), 5, None),
    (("consumers", 0), {"identifier": "acme", "name": None, "group": None}, None),
    (("resources",), "high", None),
    (("resources",), DELETE, None),
    (("resources", "cpu_percent"), -1, None),
    (("resources", "cpu_percent"), "3.2", None),
    (("resources", "memory_rss"), 1.5, None),
    (("resources", "memory_rss"), 2**70, None),
    (("resources", "cpu_percent"), 10**400, None),
    (("resources", "memory_rss"), DELETE, None),
]


@pytest.mark.parametrize(("path", "value", "loc"), SYNC_MUTATIONS, ids=lambda v: repr(v)[:30])
def test_sync_mutation_is_rejected(
    http: httpx.Client, app_path: str, path: tuple[Any, ...], value: Any, loc: tuple[Any, ...] | None
) -> None:
    response = http.post(f"{app_path}/sync", json=mutate(sync(), path, value))
    assert response.status_code == 422, response.text
    assert list(loc or path) in locs(response)


def test_duplicate_request_items_are_rejected(http: httpx.Client, app_path: str) -> None:
    message = sync()
    message["requests"].append(copy.deepcopy(message["requests"][0]))
    response = http.post(f"{app_path}/sync", json=message)
    assert response.status_code == 422
    assert ["requests", 1] in locs(response)


def test_rejected_sync_is_not_stored(http: httpx.Client, app_path: str, client_id: str) -> None:
    message = mutate(sync(), ("requests", 0, "status_code"), "200")
    assert http.post(f"{app_path}/sync", json=message).status_code == 422
    assert endpoint_summary(http, client_id) == []
    rejections = http.get(f"/api/{client_id}/dev/rejections").json()["rejections"]
    assert rejections[0]["endpoint"] == "sync"
    assert rejections[0]["status_code"] == 422


LOG_MUTATIONS = [
    (("uuid",), "abc", None),
    (("request",), DELETE, None),
    (("request", "timestamp"), "yesterday", None),
    (("request", "method"), "get", None),
    (("request", "url"), "/relative", None),
    (("request", "headers"), [["accept"]], ("request", "headers", 0)),
    (("request", "size"), -1, None),
    (("request", "size"), 2**64, None),
    (("request", "timestamp"), 1e20, None),
    (("request", "body"), "not base64!", None),
    (("request", "consumer"), 7, None),
    (("response", "status_code"), "200", None),
    (("response", "response_time"), -0.1, None),
    (("response", "headers"), {"a": "b"}, None),
    (("response", "body"), 5, None),
    (("exception", "type"), 5, None),
    (("exception", "traceback"), DELETE, None),
    (("logs",), [{"timestamp": 1.0, "logger": "a", "level": "INFO", "message": "m"}] * 1001, None),
    (("logs", 0, "message"), "x" * 2049, None),
    (("logs", 0, "line"), "42", None),
    (("spans", 0, "span_id"), "xyz", None),
    (("spans", 0, "kind"), "SIDEWAYS", None),
    (("spans", 0, "end_time"), 0, None),
    (("spans", 0, "start_time"), 1.5, None),
    (("trace_id",), "abc", None),
    (("surprise",), True, None),
]


@pytest.mark.parametrize(("path", "value", "loc"), LOG_MUTATIONS, ids=lambda v: repr(v)[:30])
def test_log_line_mutation_is_rejected(
    http: httpx.Client, app_path: str, path: tuple[Any, ...], value: Any, loc: tuple[Any, ...] | None
) -> None:
    lines = [minimal_log_line(), mutate(log_line(), path, value)]
    response = http.post(f"{app_path}/log", params={"uuid": new_uuid()}, content=gzip_lines(lines))
    assert response.status_code == 422, response.text
    assert ["lines", 1, *(loc or path)] in locs(response)


def test_log_line_with_duplicate_uuid_is_rejected(http: httpx.Client, app_path: str) -> None:
    line = log_line()
    response = http.post(f"{app_path}/log", params={"uuid": new_uuid()}, content=gzip_lines([line, line]))
    assert response.status_code == 422
    assert ["lines", 1, "uuid"] in locs(response)


@pytest.mark.parametrize("file_uuid", [None, "abc", "6F9619FF-8B86-D011-B42D-00C04FC964FF"])
def test_log_needs_a_file_uuid(http: httpx.Client, app_path: str, file_uuid: str | None) -> None:
    params = {} if file_uuid is None else {"uuid": file_uuid}
    response = http.post(f"{app_path}/log", params=params, content=gzip_lines([log_line()]))
    assert response.status_code == 422
    assert locs(response) == [["query", "uuid"]]


# -- idempotency ------------------------------------------------------------------------------


def test_resent_sync_is_counted_once(http: httpx.Client, app_path: str, client_id: str) -> None:
    message = sync()
    first = http.post(f"{app_path}/sync", json=message)
    second = http.post(f"{app_path}/sync", json=message)
    assert (first.status_code, second.status_code) == (202, 200)
    assert second.json()["status"] == "duplicate"
    [endpoint] = endpoint_summary(http, client_id)
    assert endpoint["requests"] == 42


def test_resent_startup_is_acknowledged(http: httpx.Client, app_path: str) -> None:
    message = startup()
    assert http.post(f"{app_path}/startup", json=message).status_code == 202
    assert http.post(f"{app_path}/startup", json=message).status_code == 200


def test_resent_log_file_is_stored_once(http: httpx.Client, app_path: str, client_id: str) -> None:
    body, file_uuid = gzip_lines([log_line(), log_line()]), new_uuid()
    assert http.post(f"{app_path}/log", params={"uuid": file_uuid}, content=body).status_code == 202
    assert http.post(f"{app_path}/log", params={"uuid": file_uuid}, content=body).status_code == 200
    assert http.get(f"/api/{client_id}/dev/requests").json()["total"] == 2


# -- malformed input, sizes and media types never give 500 ------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"{",
        b"",
        b"\xff\xfe{}",
        b'{"a": 1, "a": 2}',
        b'{"timestamp": NaN}',
        b"[" * 100_000 + b"]" * 100_000,
        b'{"client": "\\ud800"}',
        b'{"\\uDFFF": 1}',
        b'{"n": ' + b"9" * 5000 + b"}",
    ],
    ids=[
        "truncated",
        "empty",
        "not-utf8",
        "duplicate-key",
        "nan",
        "deep",
        "surrogate",
        "surrogate-key",
        "huge-int",
    ],
)
def test_malformed_json_is_400(http: httpx.Client, app_path: str, body: bytes) -> None:
    response = http.post(f"{app_path}/sync", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400, response.text


def test_escaped_surrogate_pairs_are_fine(http: httpx.Client, app_path: str) -> None:
    body = json.dumps(sync(consumers=[{"identifier": "rocket", "name": "Acme \U0001f680", "group": None}]))
    assert "\\ud83d\\ude80" in body
    response = http.post(f"{app_path}/sync", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 202


def test_json_that_is_not_an_object_is_422(http: httpx.Client, app_path: str) -> None:
    response = http.post(f"{app_path}/sync", json=[sync()])
    assert response.status_code == 422
    assert locs(response) == [[]]


@pytest.mark.parametrize(
    "headers",
    [{"content-type": "text/plain"}, {}, {"content-type": "application/json", "content-encoding": "gzip"}],
)
def test_wrong_content_type_is_415(http: httpx.Client, app_path: str, headers: dict[str, str]) -> None:
    response = http.post(f"{app_path}/sync", content=json.dumps(sync()).encode(), headers=headers)
    assert response.status_code == 415


def test_log_with_json_content_type_is_415(http: httpx.Client, app_path: str) -> None:
    response = http.post(
        f"{app_path}/log",
        params={"uuid": new_uuid()},
        content=gzip_lines([log_line()]),
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 415


def _chunks(total: int, size: int = 256 * 1024) -> Iterator[bytes]:
    sent = 0
    while sent < total:
        chunk = b" " * min(size, total - sent)
        sent += len(chunk)
        yield chunk


def test_oversized_json_body_is_413(http: httpx.Client, app_path: str) -> None:
    body = b" " * 10_000_001
    response = http.post(f"{app_path}/sync", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 413


def test_oversized_chunked_body_is_413_without_content_length(http: httpx.Client, app_path: str) -> None:
    headers = {"content-type": "application/json"}
    response = http.post(f"{app_path}/sync", content=_chunks(10_500_000), headers=headers)
    assert response.status_code == 413
    assert http.get("/health").json()["status"] == "ok"


def test_oversized_log_body_is_413(http: httpx.Client, app_path: str) -> None:
    response = http.post(
        f"{app_path}/log", params={"uuid": new_uuid()}, content=b"\x1f\x8b" + b"\0" * 2_000_000
    )
    assert response.status_code == 413


def test_gzip_bomb_is_413_and_the_hub_keeps_serving(http: httpx.Client, app_path: str) -> None:
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    bomb = b"".join(compressor.compress(b"\0" * 1_000_000) for _ in range(60)) + compressor.flush()
    assert len(bomb) < 1_000_000
    response = http.post(f"{app_path}/log", params={"uuid": new_uuid()}, content=bomb)
    assert response.status_code == 413
    assert http.get("/health").status_code == 200
    assert http.post(f"{app_path}/sync", json=sync()).status_code == 202


@pytest.mark.parametrize(
    "body",
    [b"not gzip at all", gzip.compress(b'{"uuid": 1}\n')[:-9], b"", gzip.compress(b"\xff\xfe\n")],
    ids=["not-gzip", "truncated", "empty", "not-utf8"],
)
def test_broken_log_body_is_400(http: httpx.Client, app_path: str, body: bytes) -> None:
    response = http.post(f"{app_path}/log", params={"uuid": new_uuid()}, content=body)
    assert response.status_code == 400, response.text


def test_malformed_ndjson_line_is_400_naming_the_line(http: httpx.Client, app_path: str) -> None:
    body = gzip.compress((json.dumps(log_line()) + "\n{oops\n").encode())
    response = http.post(f"{app_path}/log", params={"uuid": new_uuid()}, content=body)
    assert response.status_code == 400
    assert locs(response) == [["lines", 1]]


def test_concatenated_gzip_members_are_one_file(http: httpx.Client, app_path: str) -> None:
    body = gzip_lines([log_line()]) + gzip_lines([log_line()])
    response = http.post(f"{app_path}/log", params={"uuid": new_uuid()}, content=body)
    assert response.status_code == 202
    assert response.json()["lines"] == 2


# -- addressing -------------------------------------------------------------------------------


@pytest.mark.parametrize("client_id", ["not-a-uuid", "1234", "6f9619ff8b86d011b42d00c04fc964ff"])
def test_malformed_client_id_is_404(http: httpx.Client, client_id: str) -> None:
    assert http.post(f"/v2/{client_id}/dev/sync", json=sync()).status_code == 404


@pytest.mark.parametrize("env", ["x" * 33, "with space", "dot.env"])
def test_bad_env_is_422(http: httpx.Client, client_id: str, env: str) -> None:
    response = http.post(f"/v2/{client_id}/{env}/sync", json=sync())
    assert response.status_code == 422
    assert locs(response) == [["path", "env"]]


def test_allow_list_rejects_unknown_client_ids() -> None:
    allowed = new_uuid()
    with HubServer(client_ids=[allowed.upper()]) as hub, httpx.Client(base_url=hub.url) as http:
        assert http.post(f"/v2/{allowed}/dev/sync", json=sync()).status_code == 202
        assert http.post(f"/v2/{new_uuid()}/dev/sync", json=sync()).status_code == 404
        assert http.post(f"/v2/{new_uuid()}/dev/startup", json=startup()).status_code == 404
        response = http.post(f"/v2/{new_uuid()}/dev/log", params={"uuid": new_uuid()}, content=b"x")
        assert response.status_code == 404


def test_get_on_an_ingest_endpoint_is_405(http: httpx.Client, app_path: str) -> None:
    response = http.get(f"{app_path}/sync")
    assert response.status_code == 405
    assert "detail" in response.json()


def test_injected_faults_answer_first_then_the_hub_recovers(
    hub: HubServer, http: httpx.Client, app_path: str
) -> None:
    hub.faults.add("log", 402, headers={"Retry-After": "30"})
    hub.faults.add("sync", 503, times=2)
    message = sync()
    statuses = [http.post(f"{app_path}/sync", json=message).status_code for _ in range(3)]
    assert statuses == [503, 503, 202]
    response = http.post(f"{app_path}/log", params={"uuid": new_uuid()}, content=gzip_lines([log_line()]))
    assert (response.status_code, response.headers["retry-after"]) == (402, "30")
