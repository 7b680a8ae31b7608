from __future__ import annotations

import builtins
import gzip
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from apitally_otel._error_details import (
    MAX_MSG_LENGTH,
    MAX_TRACEBACK_LENGTH,
    decode_body,
    parse_validation_errors,
    server_error_details,
    truncate_traceback,
)

FASTAPI_BODY = {
    "detail": [
        {"loc": ["query", "limit"], "msg": "Input should be a valid integer", "type": "int_parsing"},
        {"loc": ["body", "items", 0, "price"], "msg": "Field required", "type": "missing", "input": {}},
    ]
}


def test_fastapi_shape() -> None:
    assert parse_validation_errors(json.dumps(FASTAPI_BODY).encode()) == [
        (("query", "limit"), "Input should be a valid integer", "int_parsing"),
        (("body", "items", "0", "price"), "Field required", "missing"),
    ]


def test_items_missing_keys_are_skipped() -> None:
    body = {
        "detail": [
            {"loc": ["a"], "msg": "m"},
            {"msg": "m", "type": "t"},
            "x",
            {"loc": "a", "msg": "m", "type": "t"},
        ]
    }
    assert parse_validation_errors(json.dumps(body).encode()) == []


def test_odd_bodies_count_nothing() -> None:
    for body in [b"", b"not json", b"\xff\xfe\x00", b'{"detail": "nope"}', b"[1,2]", b"null", b"[" * 100_000]:
        assert parse_validation_errors(body) == []


def test_gzip_is_decoded_and_bombs_are_refused() -> None:
    body = json.dumps(FASTAPI_BODY).encode()
    assert decode_body(gzip.compress(body), "gzip") == body
    bomb = gzip.compress(b"\0" * 50_000_000)
    assert len(bomb) < 100_000
    assert decode_body(bomb, "gzip") is None
    assert decode_body(b"garbage", "gzip") is None
    assert decode_body(body, "br") is None
    assert decode_body(body, None) == body


@given(st.binary(max_size=2000))
def test_never_raises_on_bytes(body: bytes) -> None:
    assert isinstance(parse_validation_errors(body), list)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=30,
)


@given(st.dictionaries(st.sampled_from(["detail", "loc", "msg", "type", "x"]), json_values, max_size=4))
def test_never_raises_on_json(data: dict[str, object]) -> None:
    errors = parse_validation_errors(json.dumps(data).encode())
    for loc, msg, type_ in errors:
        assert all(isinstance(part, str) for part in loc)
        assert isinstance(msg, str) and isinstance(type_, str)


def raise_and_catch(exc: BaseException) -> BaseException:
    try:
        raise exc
    except BaseException as caught:
        return caught


def test_server_error_type_msg_traceback() -> None:
    class Boom(Exception):
        pass

    type_, msg, tb = server_error_details(raise_and_catch(Boom("  bad thing  ")))
    assert type_ == f"{Boom.__module__}.test_server_error_type_msg_traceback.<locals>.Boom"
    assert msg == "bad thing"
    assert tb.startswith("Traceback (most recent call last):")
    assert tb.endswith("Boom:   bad thing")  # the traceback is formatted as Python prints it


def test_long_message_is_cut_with_marker() -> None:
    _, msg, _ = server_error_details(raise_and_catch(ValueError("x" * 10_000)))
    assert len(msg) == MAX_MSG_LENGTH
    assert msg.endswith("... (truncated)")


def test_traceback_keeps_the_tail() -> None:
    tb = "\n".join(f"line {i}" for i in range(20_000)) + "\nValueError: the end"
    cut = truncate_traceback(tb)
    assert len(cut) <= MAX_TRACEBACK_LENGTH
    assert cut.startswith("... (truncated) ...\n")
    assert cut.endswith("ValueError: the end")
    assert truncate_traceback("short") == "short"


@pytest.mark.skipif(not hasattr(builtins, "ExceptionGroup"), reason="Python 3.11+")
def test_exception_group_collapses_to_first_leaf() -> None:
    group = builtins.ExceptionGroup(
        "outer", [builtins.ExceptionGroup("inner", [KeyError("k"), ValueError()]), TypeError()]
    )
    type_, msg, _ = server_error_details(raise_and_catch(group))
    assert type_ == "builtins.KeyError"
    assert msg == "'k'"


def test_broken_str_does_not_break_reporting() -> None:
    class Weird(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no")

    type_, msg, _ = server_error_details(raise_and_catch(Weird()))
    assert type_.endswith("Weird") and msg == ""
