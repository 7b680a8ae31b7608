"""Validators as pure functions: examples pass, and no input makes them (or storage) raise."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from apitally_hub.errors import HubError
from apitally_hub.ingest import folding
from apitally_hub.ingest.bodies import loads_strict, parse_json
from apitally_hub.ingest.worker import FoldingWorker
from apitally_hub.protocol.log_lines import validate_log_lines
from apitally_hub.protocol.messages import is_valid_env, validate_startup, validate_sync
from apitally_hub.storage.records import AppKey, RawMessage
from apitally_hub.storage.sqlite.store import SQLiteStorage
from tests.support.hub_samples import log_line, minimal_log_line, new_uuid, startup, sync

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=2**53 - 2, max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
    | st.text(st.characters(exclude_categories=[]), max_size=4)  # lone surrogates included
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)


def test_examples_are_valid() -> None:
    assert validate_startup(startup()) == []
    assert validate_sync(sync()) == []
    assert validate_log_lines([(0, log_line()), (1, minimal_log_line())]) == []


def test_extra_fields_can_be_allowed() -> None:
    message = sync()
    message["future_field"] = 1
    message["requests"][0]["another"] = True
    assert [e.loc for e in validate_sync(message)] == [("future_field",), ("requests", 0, "another")]
    assert validate_sync(message, allow_extra=True) == []


def test_error_count_is_bounded() -> None:
    message = sync(requests=[{"method": 1}] * 1000)
    assert len(validate_sync(message)) == 50


def test_env_pattern() -> None:
    assert is_valid_env("dev") and is_valid_env("Prod_EU-1") and is_valid_env("x" * 32)
    assert not is_valid_env("") and not is_valid_env("x" * 33) and not is_valid_env("dev\n")


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_validators_never_raise_on_any_json(value: Any) -> None:
    validate_startup(value)
    validate_sync(value)
    validate_log_lines([(0, value)])


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix] if prefix else []
    if isinstance(doc, dict):
        for key, value in doc.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(doc, list):
        for index, value in enumerate(doc):
            found += _paths(value, (*prefix, index))
    return found


def _replace(doc: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    target: Any = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return doc


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_a_mutated_message_either_fails_validation_or_stores(data: st.DataObject) -> None:
    """Whatever one field is replaced with: a 422, or a message storage accepts without error."""
    kind = data.draw(st.sampled_from(["startup", "sync"]))
    message = startup() if kind == "startup" else sync()
    path = data.draw(st.sampled_from(_paths(message)))
    try:  # the hub's pipeline: JSON text -> strict parse -> validate -> store
        mutated = parse_json(json.dumps(_replace(message, path, data.draw(json_values))).encode())
    except HubError:
        return
    errors = (validate_startup if kind == "startup" else validate_sync)(mutated)
    if errors:
        return
    # accepted: it must fold into the aggregates without error
    store = _STORE[0]
    body = folding.encode_json_body(json.dumps(mutated).encode())
    items = folding.item_count(mutated) if kind == "sync" else 1
    message = RawMessage(AppKey("c", "dev"), kind, new_uuid(), None, 1.0, body, "zlib", items)
    assert store.enqueue(message)
    FoldingWorker(store).drain()
    assert store.queue_stats().failed == 0


_STORE: list[SQLiteStorage] = []


@pytest.fixture(scope="module", autouse=True)
def _store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    store = SQLiteStorage(tmp_path_factory.mktemp("fold") / "hub.sqlite")
    store.open()
    _STORE.append(store)
    try:
        yield
    finally:
        _STORE.clear()
        store.close()


def test_loads_strict_rejects_duplicates_and_constants() -> None:
    for text in ('{"a": 1, "a": 1}', "NaN", '{"x": Infinity}'):
        try:
            loads_strict(text)
        except ValueError:
            continue
        raise AssertionError(text)
    assert loads_strict('{"a": [1, {"b": null}]}') == {"a": [1, {"b": None}]}


@pytest.mark.parametrize("ip", ["203.0.113.7", "2001:db8::1", "::1"])
def test_client_ip_accepts_addresses(ip: str) -> None:
    line = log_line()
    line["request"]["client_ip"] = ip
    assert validate_log_lines([(0, line)]) == []


@pytest.mark.parametrize("ip", ["testclient", "", "10.0.0.0/8", "1.2.3.256", " 1.2.3.4", 7, "1" * 65])
def test_client_ip_rejects_what_is_not_an_address(ip: object) -> None:
    line = log_line()
    line["request"]["client_ip"] = ip
    assert [e.loc for e in validate_log_lines([(0, line)])] == [("lines", 0, "request", "client_ip")]
