"""Aggregator -> OTel metric data -> sync payload: exact, and bounded."""

from __future__ import annotations

import gc
import logging
from collections import Counter, defaultdict

import pytest
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry.sdk.metrics.export import MetricsData, ResourceMetrics, ScopeMetrics
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from apitally_otel._aggregator import _REQUEST_ITEMS, Aggregator
from apitally_otel._consumers import Consumer
from apitally_otel._hub.encoding import encode_sync_items
from apitally_otel._metrics import SCOPE_NAME, interval_to_metrics


def to_payload(aggregator: Aggregator) -> dict[str, list[dict[str, object]]]:
    metrics = interval_to_metrics(aggregator.drain())
    data = MetricsData(
        [
            ResourceMetrics(
                Resource.get_empty(), [ScopeMetrics(InstrumentationScope(SCOPE_NAME), metrics, "")], ""
            )
        ]
    )
    return encode_sync_items(data)


def test_bins_sums_and_string_keys() -> None:
    agg = Aggregator()
    acme = Consumer("acme", "Acme", "Enterprise")
    agg.add_request(acme, "GET", "/items/{id}", 200, 0.0042, None, 1500)
    agg.add_request(acme, "GET", "/items/{id}", 200, 0.0199, 10, 999)
    agg.add_request(acme, "GET", "/items/{id}", 200, 0.125, 2500, 0)
    agg.add_request(None, "POST", "/items", 201, 1.0, 1000, None)
    payload = to_payload(agg)
    items = {(r["consumer"], r["method"], r["path"], r["status_code"]): r for r in payload["requests"]}
    get = items[("acme", "GET", "/items/{id}", 200)]
    assert get["request_count"] == 3
    assert get["response_times"] == {"0": 1, "10": 1, "120": 1}
    assert get["request_size_sum"] == 2510 and get["request_sizes"] == {"0": 1, "2": 1}
    assert get["response_size_sum"] == 2499 and get["response_sizes"] == {"0": 2, "1": 1}
    post = items[(None, "POST", "/items", 201)]
    assert post["response_times"] == {"1000": 1}
    assert post["request_sizes"] == {"1": 1} and post["response_sizes"] == {}
    assert payload["consumers"] == [{"identifier": "acme", "name": "Acme", "group": "Enterprise"}]


def test_consumer_names_are_sent_once_and_again_when_changed() -> None:
    agg = Aggregator()
    agg.add_request(Consumer("a", "A"), "GET", "/", 200, 0.0, None, None)
    agg.add_request(Consumer("b"), "GET", "/", 200, 0.0, None, None)  # identifier only: not listed
    assert to_payload(agg)["consumers"] == [{"identifier": "a", "name": "A", "group": None}]
    agg.add_request(Consumer("a", "A"), "GET", "/", 200, 0.0, None, None)
    assert to_payload(agg)["consumers"] == []
    agg.add_request(Consumer("a", "A", "G"), "GET", "/", 200, 0.0, None, None)
    assert to_payload(agg)["consumers"] == [{"identifier": "a", "name": "A", "group": "G"}]


def test_consumer_cap_folds_overflow_without_losing_requests(caplog: pytest.LogCaptureFixture) -> None:
    agg = Aggregator(max_consumers=10)
    with caplog.at_level(logging.WARNING):
        for _ in range(2):
            for i in range(100):
                agg.add_request(Consumer(f"c{i}"), "GET", "/", 200, 0.0, None, None)
            payload = to_payload(agg)
            counts = Counter({r["consumer"]: r["request_count"] for r in payload["requests"]})
            assert sum(counts.values()) == 100
            assert counts[None] == 90 and len(counts) == 11
    assert len([r for r in caplog.records if "distinct consumers" in r.getMessage()]) == 1


def test_known_consumer_memory_is_bounded() -> None:
    agg = Aggregator(max_consumers=1_000_000, max_known_consumers=100)
    for i in range(1000):
        agg.add_request(Consumer(f"c{i}", "name"), "GET", "/", 200, 0.0, None, None)
    assert len(to_payload(agg)["consumers"]) == 1000
    assert len(agg._known) == 100


def test_error_details_are_capped(caplog: pytest.LogCaptureFixture) -> None:
    agg = Aggregator(max_validation_errors=5, max_server_errors=2)
    for i in range(10):
        agg.add_validation_errors(None, "POST", "/", [(("body", str(i)), "m", "t")])
        agg.add_server_error(None, "GET", "/", "builtins.ValueError", str(i), "tb")
    agg.add_validation_errors(None, "POST", "/", [(("body", "0"), "m", "t")])
    with caplog.at_level(logging.WARNING):
        payload = to_payload(agg)
    assert len(payload["validation_errors"]) == 5 and len(payload["server_errors"]) == 2
    assert payload["validation_errors"][0]["error_count"] == 2
    assert payload["validation_errors"][0]["loc"] == ["body", "0"]
    assert any("13 error details dropped" in r.getMessage() for r in caplog.records)


def test_empty_interval_still_produces_lists() -> None:
    assert to_payload(Aggregator()) == {
        "requests": [],
        "validation_errors": [],
        "server_errors": [],
        "consumers": [],
    }


requests = st.lists(
    st.tuples(
        st.sampled_from([None, "a", "b"]),
        st.sampled_from(["GET", "POST"]),
        st.sampled_from(["/x", "/y/{id}"]),
        st.sampled_from([200, 404, 500]),
        st.floats(min_value=0, max_value=30, allow_nan=False),
        st.none() | st.integers(min_value=0, max_value=5_000_000),
        st.none() | st.integers(min_value=0, max_value=5_000_000),
    ),
    max_size=60,
)


@given(requests)
def test_roundtrip_matches_a_naive_computation(reqs: list[tuple]) -> None:  # type: ignore[type-arg]
    agg = Aggregator()
    expected: dict[tuple, dict[str, object]] = defaultdict(  # type: ignore[type-arg]
        lambda: {"count": 0, "times": Counter(), "rq": Counter(), "rs": Counter(), "rq_sum": 0, "rs_sum": 0}
    )
    for consumer, method, path, status, seconds, rq, rs in reqs:
        agg.add_request(Consumer(consumer) if consumer else None, method, path, status, seconds, rq, rs)
        e = expected[(consumer, method, path, status)]
        e["count"] += 1  # type: ignore[operator]
        e["times"][str(int(seconds / 0.01) * 10)] += 1  # type: ignore[index]
        if rq is not None:
            e["rq"][str(rq // 1000)] += 1  # type: ignore[index]
            e["rq_sum"] += rq  # type: ignore[operator]
        if rs is not None:
            e["rs"][str(rs // 1000)] += 1  # type: ignore[index]
            e["rs_sum"] += rs  # type: ignore[operator]
    payload = to_payload(agg)
    assert len(payload["requests"]) == len(expected)
    for item in payload["requests"]:
        e = expected[(item["consumer"], item["method"], item["path"], item["status_code"])]
        assert item["request_count"] == e["count"]
        assert item["response_times"] == dict(e["times"])  # type: ignore[call-overload]
        assert sum(item["response_times"].values()) == item["request_count"]  # type: ignore[attr-defined]
        assert item["request_sizes"] == dict(e["rq"]) and item["request_size_sum"] == e["rq_sum"]  # type: ignore[call-overload]
        assert item["response_sizes"] == dict(e["rs"]) and item["response_size_sum"] == e["rs_sum"]  # type: ignore[call-overload]
        assert all(int(k) % 10 == 0 for k in item["response_times"])  # type: ignore[attr-defined]


def test_state_stays_bounded_over_many_distinct_consumers() -> None:
    """100 000 distinct named consumers over 10 intervals on 1 000 routes: every structure that
    outlives an interval is capped (RSS over time is measured in benchmarks/)."""
    agg = Aggregator(max_consumers=5_000, max_known_consumers=20_000)
    routes = [f"/r{i}/{{id}}" for i in range(1000)]
    n = 0
    for _ in range(10):
        for _ in range(10_000):
            agg.add_request(
                Consumer(f"consumer-{n:07d}", f"Name {n}", "g"), "GET", routes[n % 1000], 200, 0.01, 1, 2
            )
            n += 1
        # appended on the request path, folded on another thread
        assert len(agg._pending) <= 10_000 * _REQUEST_ITEMS
        data = agg.drain()
        assert len(data.series) <= 5_000 + 1000  # capped consumers + overflow per route
        assert sum(s.count for s in data.series.values()) == 10_000  # nothing lost
        assert len(data.consumers) == 5_000
        assert len(agg._known) <= 20_000 and not agg._changed and not agg._interval_consumers
    assert len(agg._known) == 20_000


def test_for_otlp_rebuckets_exactly() -> None:
    from apitally_otel._metrics import OTLP_DURATION_BOUNDS, for_otlp

    agg = Aggregator()
    seconds = [0.0, 0.009, 0.01, 0.0199, 0.02, 0.3, 9.99, 12.0]
    for s in seconds:
        agg.add_request(Consumer("c"), "GET", "/", 200, s, 1500, None)
    duration, request_size, _response_size = for_otlp(interval_to_metrics(agg.drain()))
    (point,) = duration.data.data_points  # type: ignore[attr-defined]
    assert list(point.explicit_bounds) == list(OTLP_DURATION_BOUNDS)
    expected = [0] * (len(OTLP_DURATION_BOUNDS) + 1)
    for s in seconds:  # as in the hub bins, [lower, upper): a value equal to a bound counts above it
        expected[
            next((i for i, b in enumerate(OTLP_DURATION_BOUNDS) if s < b), len(OTLP_DURATION_BOUNDS))
        ] += 1
    assert list(point.bucket_counts) == expected
    assert point.attributes["apitally.consumer.identifier"] == "c"
    (size_point,) = request_size.data.data_points  # type: ignore[attr-defined]
    assert size_point.count == len(seconds) and size_point.sum == 1500 * len(seconds)


def test_pending_items_are_bounded_and_folded_inline() -> None:
    agg = Aggregator(max_pending=100)
    for _ in range(250):
        agg.add_request(None, "GET", "/", 200, 0.0, None, None)
        agg.add_validation_body(None, "POST", "/", b'{"detail": [{"loc": ["q"], "msg": "m", "type": "t"}]}')
    assert len(agg._pending) < 100 * _REQUEST_ITEMS  # requests' fields, one by one
    data = agg.drain()
    assert sum(s.count for s in data.series.values()) == 250
    assert sum(data.validation_errors.values()) == 250


def test_backlog_is_folded_off_the_request_thread() -> None:
    import time

    agg = Aggregator(fold_at=1_000)
    for _ in range(5_000):
        agg.add_request(None, "GET", "/", 200, 0.0, None, None)
    deadline = time.monotonic() + 5
    while len(agg._pending) >= 1_000 * _REQUEST_ITEMS and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(agg._pending) < 1_000 * _REQUEST_ITEMS and agg._folder is not None
    assert sum(s.count for s in agg.drain().series.values()) == 5_000


def test_concurrent_adds_lose_nothing() -> None:
    import threading

    agg = Aggregator(max_pending=1_000)
    totals = []

    def drainer(stop: threading.Event) -> None:
        while not stop.is_set():
            totals.append(sum(s.count for s in agg.drain().series.values()))

    stop = threading.Event()
    thread = threading.Thread(target=drainer, args=(stop,))
    thread.start()
    workers = [
        threading.Thread(
            target=lambda: [agg.add_request(None, "GET", "/", 200, 0.0, None, None) for _ in range(20_000)]
        )
        for _ in range(3)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    stop.set()
    thread.join()
    totals.append(sum(s.count for s in agg.drain().series.values()))
    assert sum(totals) == 60_000


def test_repeated_validation_bodies_are_parsed_once_and_counted_each_time() -> None:
    import gzip
    import json

    agg = Aggregator()
    detail = [{"loc": ["body", "f0"], "msg": "m", "type": "t"}]
    bodies = [json.dumps({"detail": detail, "n": i}).encode() for i in range(300)]
    for _ in range(3):
        for body in bodies:
            agg.add_validation_body(None, "POST", "/", body)
        agg.add_validation_body(None, "POST", "/", gzip.compress(bodies[0]), "gzip")
    data = agg.drain()
    assert data.validation_errors == {(None, "POST", "/", ("body", "f0"), "m", "t"): 3 * 301}
    assert len(agg._parsed) <= 256  # what is remembered stays bounded


def _tracked_growth(action: object, n: int) -> float:
    """Objects the garbage collector tracks that ``action`` leaves alive, per call (GC paused)."""
    gc.collect()
    gc.disable()
    try:
        before = gc.get_count()[0]
        for i in range(n):
            action(i)  # type: ignore[operator]
        return (gc.get_count()[0] - before) / n
    finally:
        gc.enable()


def test_pending_requests_leave_nothing_for_the_garbage_collector() -> None:
    """A tuple (and a Consumer) per request, alive until folded, is one or two objects more for the
    collector on each request: a busy app ran young collections every ~700 requests and promoted
    the backlog into its full collections (measured under uvicorn; bare and contrib: none)."""
    agg = Aggregator(fold_at=100_000)
    body = b'{"detail": [{"loc": ["body", "name"], "msg": "field required", "type": "missing"}]}'

    def anonymous(i: int) -> None:
        agg.add_request(None, "GET", "/items/{id}", 200, 0.004, None, 12)

    def named(i: int) -> None:
        agg.add_request(Consumer(f"c{i % 50}", "Name", "g"), "POST", "/items", 422, 0.002, 40, 90)
        agg.add_validation_body(Consumer(f"c{i % 50}"), "POST", "/items", body, None)

    assert _tracked_growth(anonymous, 5_000) < 0.01
    assert _tracked_growth(named, 5_000) < 0.01
    data = agg.drain()
    assert sum(s.count for s in data.series.values()) == 10_000
    assert sum(data.validation_errors.values()) == 5_000
    assert len(data.consumers) == 50  # the labels of each named consumer, once
