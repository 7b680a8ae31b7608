"""Request-log sampling, end to end through the local hub, and the sampler's rule on its own."""

from __future__ import annotations

import logging
import math
import random
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased, Sampler, TraceIdRatioBased
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from apitally_hub import HubServer
from apitally_otel import RequestLoggingConfig, instrument_app
from apitally_otel._config import resolve_sample_rate
from apitally_otel._request_log.sampling import DROP, KEEP, UNLESS_RESPONSE, LogSampler, _traceparent_sampled
from tests.support.servers import ServerThread, app_process

BOUND = TraceIdRatioBased.get_bound_for_rate(0.1)


def kept_by_rate(trace_id: str) -> bool:
    """OpenTelemetry's TraceIdRatioBased rule at 0.1, written out: the low 64 bits below the bound."""
    return int(trace_id, 16) & (2**64 - 1) < BOUND


def binomial_band(n: int, p: float, sigmas: float = 5.0) -> tuple[float, float]:
    mean, sd = n * p, math.sqrt(n * p * (1 - p))
    return mean - sigmas * sd, mean + sigmas * sd


@pytest.fixture
def hub() -> Iterator[HubServer]:
    with HubServer() as server:
        yield server


def log_items(hub: HubServer, client_id: str) -> list[dict[str, Any]]:
    page = hub.query(client_id, "dev", "requests", limit=1000)
    assert page["next_cursor"] is None
    with ThreadPoolExecutor(8) as pool:
        found = pool.map(lambda row: hub.query(client_id, "dev", f"requests/{row['uuid']}"), page["items"])
        return [answer["item"] for answer in found]


def run(hub: HubServer, paths: list[str], mode: str, **env: str) -> tuple[str, list[Any], str]:
    """Serve tests/support/apps/sampling_app.py, GET each path; the answers, and the process output."""
    client_id = str(uuid.uuid4())
    environment = {
        "APITALLY_CLIENT_ID": client_id,
        "APITALLY_HUB_BASE_URL": hub.url,
        "APITALLY_SYNC_INTERVAL": "1",
        "APITALLY_REQUEST_LOGGING_ENABLED": "true",
        "APITALLY_REQUEST_LOGGING_CAPTURE_TRACES": "true",
        "APITALLY_REQUEST_LOGGING_SAMPLE_RATE": "0.1",
        "SAMPLING_MODE": mode,
        **env,
    }
    with app_process("tests.support.apps.sampling_app:app", environment) as process:
        process.wait_ready("/__ready__")
        answers = get_all(process.url, paths)
    return client_id, answers, process.output


def get_all(base_url: str, paths: list[str], connections: int = 16) -> list[tuple[int, Any]]:
    """GET every path, over a few connections at once: a response to a socket uvicorn took with
    ``--fd`` waits ~40 ms for the client's delayed ACK (no TCP_NODELAY there), in parallel here."""

    def get(chunk: list[str]) -> list[tuple[int, Any]]:
        with httpx.Client(base_url=base_url, timeout=30) as client:
            return [(r.status_code, r.json()) for r in (client.get(path) for path in chunk)]

    with ThreadPoolExecutor(connections) as pool:
        chunks = pool.map(get, [paths[i::connections] for i in range(connections)])
    return [answer for chunk in chunks for answer in chunk]


def test_sampled_logs_follow_the_trace_id_ratio(hub: HubServer) -> None:
    # The app samples its traces at the same rate, with OpenTelemetry's own sampler.
    env = {"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.1"}
    client_id, answers, output = run(hub, [f"/items/{i}" for i in range(2000)], "rate", **env)
    traces = [body["trace_id"] for _, body in answers]
    assert len(set(traces)) == 2000
    items = log_items(hub, client_id)
    logged = {item["trace_id"] for item in items}
    low, high = binomial_band(2000, 0.1)  # 200 ± 67: outside it one run in ~2 million
    assert low <= len(logged) <= high, output
    assert len(logged) == len(items)  # one item per request
    # Exactly the requests the rule keeps, which are exactly the traces the app's sampler kept.
    assert logged == {t for t in traces if kept_by_rate(t)}
    assert logged == {body["trace_id"] for _, body in answers if body["sampled"]}
    for item in items:  # each kept item has its spans
        spans = item["spans"]
        assert {s["name"] for s in spans} >= {"db.query"} and any(s["kind"] == "SERVER" for s in spans)
        server = next(s for s in spans if s["kind"] == "SERVER")
        assert next(s for s in spans if s["name"] == "db.query")["parent_span_id"] == server["span_id"]
    (endpoint,) = hub.query(client_id, "dev", "endpoints")["endpoints"]
    assert endpoint["requests"] == 2000  # metrics count every request


def test_a_response_callback_keeps_every_5xx(hub: HubServer) -> None:
    client_id, answers, output = run(hub, [f"/flaky/{i}" for i in range(400)], "keep-5xx")
    assert sum(1 for status, _ in answers if status == 503) == 80
    logged = {(item["response"]["status_code"], item["trace_id"]) for item in log_items(hub, client_id)}
    expected = {
        (status, body["trace_id"])
        for status, body in answers
        if status == 503 or kept_by_rate(body["trace_id"])
    }
    assert logged == expected, output
    assert {status for status, _ in logged} == {200, 503}


def test_a_raising_callback_keeps_the_default_and_logs_once(hub: HubServer) -> None:
    client_id, answers, output = run(hub, [f"/items/{i}" for i in range(300)], "raising")
    logged = {item["trace_id"] for item in log_items(hub, client_id)}
    assert logged == {body["trace_id"] for _, body in answers if kept_by_rate(body["trace_id"])}
    assert logged  # 300 requests at 0.1: none kept would be a 1-in-10^14 run
    assert output.count("sample_on_request raised RuntimeError: sampling callback bug") == 1, output
    assert output.count("sample_on_response raised RuntimeError: sampling callback bug") == 1, output


# -- an incoming sampled trace context, in-process --------------------------------------------------


async def hello(request: Request) -> PlainTextResponse:
    return PlainTextResponse("hello")


def high_trace_id() -> int:
    """A trace id the 0.1 rate drops: low 64 bits at or above the bound."""
    return (random.getrandbits(64) << 64) | random.randrange(BOUND, 2**64)


@pytest.mark.parametrize(
    "sampler",
    [ParentBased(ALWAYS_ON), TraceIdRatioBased(0.1)],
    ids=["parent-based: the span's remote parent", "ratio only: the traceparent header"],
)
def test_a_sampled_traceparent_is_kept(hub: HubServer, sampler: Sampler) -> None:
    client_id = str(uuid.uuid4())
    app = Starlette(routes=[Route("/hello", hello)])
    setup = instrument_app(
        app,
        client_id=client_id,
        hub_base_url=hub.url,
        tracer_provider=TracerProvider(sampler=sampler),
        sync_interval=3600,
        request_logging=RequestLoggingConfig(enabled=True, sample_rate=0.1),
    )
    assert setup is not None
    sampled = [high_trace_id() for _ in range(20)]
    unsampled = [high_trace_id() for _ in range(20)]
    with ServerThread(app) as url, httpx.Client(base_url=url) as client:
        for trace_id, flags in [*((t, "01") for t in sampled), *((t, "00") for t in unsampled)]:
            client.get("/hello", headers={"traceparent": f"00-{trace_id:032x}-00f067aa0ba902b7-{flags}"})
    setup.shutdown()
    logged = {row["trace_id"] for row in hub.query(client_id, "dev", "requests", limit=1000)["items"]}
    assert logged == {f"{t:032x}" for t in sampled}  # the caller's sampled flag wins over the rate
    (endpoint,) = hub.query(client_id, "dev", "endpoints")["endpoints"]
    assert endpoint["requests"] == 40


# -- the rule on its own ----------------------------------------------------------------------------


SCOPE = {"type": "http", "method": "GET", "path": "/p", "headers": []}


def sampler_for(**config: Any) -> LogSampler:
    return LogSampler(RequestLoggingConfig(enabled=True, **config), lambda path: path == "/excluded")


@pytest.mark.parametrize("rate", [0.0, 0.001, 0.1, 0.5, 0.999, 1.0])
def test_the_rate_is_opentelemetrys_trace_id_ratio_rule(rate: float) -> None:
    sampler, otel = sampler_for(sample_rate=rate), TraceIdRatioBased(rate)
    provider = TracerProvider(sampler=ALWAYS_ON)
    tracer = provider.get_tracer("t")
    for _ in range(2000):
        span = tracer.start_span("s")
        trace_id = span.get_span_context().trace_id
        expected = otel.should_sample(None, trace_id, "s").decision.is_sampled()
        assert (sampler.on_request(SCOPE, span) is KEEP) == expected, (rate, hex(trace_id))
        span.end()


def test_requests_without_a_trace_draw_at_random() -> None:
    sampler = sampler_for(sample_rate=0.3)
    untraced = NonRecordingSpan(SpanContext(0, 0, False))  # an excluded URL: no trace id
    kept = sum(sampler.on_request(SCOPE, untraced) is KEEP for _ in range(10_000))
    low, high = binomial_band(10_000, 0.3)
    assert low <= kept <= high


def test_callbacks_decide_in_order() -> None:
    provider = TracerProvider()
    span = provider.get_tracer("t").start_span("s")
    calls: list[str] = []

    def on_request(request: Request) -> bool | None:
        calls.append(request.url.path)
        return {"/keep": True, "/drop": False}.get(request.url.path)

    both = sampler_for(sample_rate=0.0, sample_on_request=on_request, sample_on_response=lambda rq, rs: None)
    assert both.on_request({**SCOPE, "path": "/keep"}, span) is KEEP
    assert both.on_request({**SCOPE, "path": "/drop"}, span) is DROP  # for good: nothing captured
    assert both.on_request(SCOPE, span) is UNLESS_RESPONSE  # the response may still keep it
    assert both.on_request({**SCOPE, "path": "/excluded"}, span) is DROP
    assert calls == ["/keep", "/drop", "/p"]  # excluded paths never reach the callback
    assert sampler_for(sample_rate=0.0, sample_on_request=on_request).on_request(SCOPE, span) is DROP

    async def coroutine(request: Request) -> bool:
        return True

    awaitable = sampler_for(sample_rate=0.0, sample_on_request=coroutine)  # type: ignore[arg-type]
    assert awaitable.on_request(SCOPE, span) is DROP  # not awaited: the rate decides, no warning left


@pytest.mark.parametrize(
    ("header", "sampled"),
    [
        (b"00-%032x-00f067aa0ba902b7-01", True),
        (b" 00-%032x-00f067aa0ba902b7-03 ", True),  # other flags set too
        (b"00-%032x-00f067aa0ba902b7-00", False),
        (b"00-%032x-00f067aa0ba902b7", False),
        (b"00-%032x-00f067aa0ba902b7-zz", False),
        (b"00-0%032x-00f067aa0ba902b7-01", False),  # 33 digits
    ],
)
def test_traceparent_header(header: bytes, sampled: bool) -> None:
    trace_id = 0x4BF92F3577B34DA6A3CE929D0E0E4736
    assert _traceparent_sampled(header % trace_id, trace_id) is sampled
    assert _traceparent_sampled(header % (trace_id + 1), trace_id) is False  # another trace's header


def test_an_unrecorded_span_reads_the_header() -> None:
    trace_id = high_trace_id()
    span = NonRecordingSpan(SpanContext(trace_id, 1, True, TraceFlags(0)))
    header = f"00-{trace_id:032x}-00f067aa0ba902b7-01".encode()
    sampler = sampler_for(sample_rate=0.1)
    assert sampler.on_request({**SCOPE, "headers": [(b"traceparent", header)]}, span) is KEEP
    assert sampler.on_request(SCOPE, span) is DROP
    assert trace.INVALID_SPAN.get_span_context().trace_id == 0


@pytest.mark.parametrize("value", [-0.1, 1.5, float("nan"), "often", None])
def test_an_invalid_rate_logs_every_request(value: Any, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        assert resolve_sample_rate(value) == 1.0
    assert "invalid request logging sample_rate" in caplog.text


def test_the_rate_from_the_environment(caplog: pytest.LogCaptureFixture) -> None:
    prefix = "APITALLY_REQUEST_LOGGING_SAMPLE_RATE"
    assert RequestLoggingConfig.from_env({prefix: "0.25"}).sample_rate == 0.25
    with caplog.at_level(logging.WARNING):
        assert RequestLoggingConfig.from_env({prefix: "a quarter"}).sample_rate == 1.0
    assert "invalid APITALLY_REQUEST_LOGGING_SAMPLE_RATE='a quarter' (expected a number)" in caplog.text
