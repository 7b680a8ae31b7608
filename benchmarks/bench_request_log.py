"""Request logging: per-request cost with logging on vs off, sampled vs not, and the sustained rate
without loss.

    python benchmarks/bench_request_log.py [--quick]

Both parts call the FastAPI benchmark app in-process (ASGI, no sockets) with a JSON body, and send
hub traffic to the loopback sink. The cost part runs every variant in each round (interleaved),
sampling at 0.1 against 1.0 included: each request starts a new trace, so one in ten is logged.
The sustained part drives a fixed rate (1 000 requests/s for 60 s; 2 s with --quick), then flushes
and counts the items written and dropped.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import apps
from common import RESULTS_DIR, log, median, save_json, sink, table

BODY = json.dumps({"name": "widget", "price": 9.5, "tags": ["a", "b"], "password": "s3cret"}).encode()
LOG_ALL = {
    "enabled": True,
    "log_request_headers": True,
    "log_request_body": True,
    "log_response_body": True,
    "capture_logs": True,
    "capture_traces": True,
}


def keep_server_errors(request: Any, response: Any) -> bool | None:
    return True if response.status_code >= 500 else None


def build(sink_url: str, logging: dict[str, Any] | None) -> Any:
    from opentelemetry.sdk.trace import TracerProvider

    from apitally_otel import RequestLoggingConfig, instrument_app

    app = apps.build_fastapi()
    setup = instrument_app(
        app,
        client_id=apps.CLIENT_ID,
        env=apps.ENV,
        hub_base_url=sink_url,
        sync_interval=3600,
        tracer_provider=TracerProvider(),
        request_logging=RequestLoggingConfig(**logging) if logging else RequestLoggingConfig(),
    )
    assert setup is not None
    return app, setup


async def call(app: Any) -> None:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/items",
        "raw_path": b"/items",
        "query_string": b"token=abc",
        "root_path": "",
        "headers": [
            (b"host", b"bench"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(BODY)).encode()),
            (b"authorization", b"Bearer xyz"),
        ],
        "server": ("127.0.0.1", 80),
        "client": ("127.0.0.1", 1234),
    }
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            await asyncio.sleep(3600)
        sent = True
        return {"type": "http.request", "body": BODY, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        pass

    await app(scope, receive, send)


async def per_request_cost(sink_url: str, rounds: int, batch: int) -> dict[str, dict[str, float]]:
    """Median µs/request of each variant over ``rounds`` interleaved rounds (in a shuffled order
    each round), in wall time and in CPU time of all the process's threads (the writer's included;
    less moved by other processes on the machine)."""
    variants = {
        "logging off": build(sink_url, None),
        "logging on (defaults)": build(sink_url, {"enabled": True}),
        "logging on (everything)": build(sink_url, LOG_ALL),
        "logging on (defaults), sample_rate=0.1": build(sink_url, {"enabled": True, "sample_rate": 0.1}),
        "logging on (everything), sample_rate=0.1": build(sink_url, {**LOG_ALL, "sample_rate": 0.1}),
        "logging on (everything), sample_rate=0 (every request dropped)": build(
            sink_url, {**LOG_ALL, "sample_rate": 0.0}
        ),
        "logging on (everything), sample_rate=0.1 + sample_on_response": build(
            sink_url, {**LOG_ALL, "sample_rate": 0.1, "sample_on_response": keep_server_errors}
        ),
    }
    wall: dict[str, list[float]] = {name: [] for name in variants}
    cpu: dict[str, list[float]] = {name: [] for name in variants}
    order = list(variants)
    shuffle = random.Random(17).shuffle
    for round_ in range(rounds + 1):  # round 0 warms up
        shuffle(order)
        for name in order:
            app, setup = variants[name]
            start, start_cpu = time.perf_counter(), time.process_time()
            for _ in range(batch):
                await call(app)
            if setup.request_logger is not None:
                setup.request_logger.flush(30)  # the writer's work is paid for in the timing
            if round_:
                wall[name].append((time.perf_counter() - start) / batch * 1e6)
                cpu[name].append((time.process_time() - start_cpu) / batch * 1e6)
    for _, setup in variants.values():
        setup.shutdown()
    return {
        "wall": {name: median(wall[name]) for name in variants},
        "cpu": {name: median(cpu[name]) for name in variants},
    }


def decision_cost(calls: int) -> dict[str, float]:
    """µs per sampling decision at the start of a request, alone: what a dropped request costs the
    request path beyond logging off (between two identical app instances the in-app figures above
    differ by up to ~10 µs, more than this)."""
    from opentelemetry.sdk.trace import TracerProvider

    from apitally_otel import RequestLoggingConfig
    from apitally_otel._sampling import DROP, LogSampler

    sampler = LogSampler(RequestLoggingConfig(enabled=True, sample_rate=0.1), lambda path: False)
    tracer = TracerProvider().get_tracer("bench")
    spans = [tracer.start_span("s") for _ in range(1000)]
    scope = {"type": "http", "method": "POST", "path": "/items", "headers": [(b"host", b"bench")]}
    dropped = [span for span in spans if sampler.on_request(scope, span) is DROP]
    start = time.perf_counter()
    for _ in range(calls // len(dropped) + 1):
        for span in dropped:
            sampler.on_request(scope, span)
    per_call = (time.perf_counter() - start) / ((calls // len(dropped) + 1) * len(dropped)) * 1e6
    return {"dropped_request_decision_us": per_call}


async def sustained(sink_url: str, rate: float, seconds: float) -> dict[str, Any]:
    app, setup = build(sink_url, LOG_ALL)
    logger = setup.request_logger
    assert logger is not None
    sent = 0
    start = time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        due = int(elapsed * rate) + 1
        while sent < due:
            await call(app)
            sent += 1
        await asyncio.sleep(0.001)
    duration = time.perf_counter() - start
    flushed = logger.flush(60)
    result = {
        "requests": sent,
        "seconds": round(duration, 1),
        "rate": round(sent / duration, 1),
        "written": logger.written,
        "dropped": logger.total_dropped,
        "files_uploaded": logger.uploaded_files,
        "flushed": flushed,
    }
    setup.shutdown()
    return result


def run(*, quick: bool) -> dict[str, Any]:
    with sink() as sink_url:
        # Large batches: each ends with a flush (a file written and uploaded, ~4 ms of CPU and ~45 ms
        # of wall time here whatever its size), paid once per sync interval in real use.
        rounds, batch = (3, 200) if quick else (10, 5000)
        cost = asyncio.run(per_request_cost(sink_url, rounds=rounds, batch=batch))
        rate = asyncio.run(sustained(sink_url, rate=1000.0, seconds=2.0 if quick else 60.0))
    return {
        "per_request_us": cost["wall"],
        "per_request_cpu_us": cost["cpu"],
        "decision": decision_cost(20_000 if quick else 500_000),
        "sustained": rate,
    }


def report(result: dict[str, Any]) -> str:
    wall, cpu = result["per_request_us"], result.get("per_request_cpu_us", {})
    s = result["sustained"]
    lines = [
        "Request logging, FastAPI POST /items with a JSON body (in-process, µs/request, median of "
        "interleaved rounds; the overhead over logging off in brackets):",
        "",
        table(
            ["variant", "wall µs/request", "CPU µs/request"],
            [
                [
                    name,
                    f"{value:.1f} ({value - wall['logging off']:+.1f})",
                    f"{cpu[name]:.1f} ({cpu[name] - cpu['logging off']:+.1f})" if name in cpu else "-",
                ]
                for name, value in wall.items()
            ],
        ),
        "",
    ]
    for label, cost in (("wall", wall), ("CPU", cpu)):
        if not cost:
            continue
        off = cost["logging off"]

        def over(name: str, cost: dict[str, float] = cost, off: float = off) -> str:
            return f"{cost[name] - off:+.1f}" if name in cost else "-"

        lines.append(
            f"{label}: logging costs {over('logging on (defaults)')} µs/request with the defaults and "
            f"{over('logging on (everything)')} with everything on (headers, bodies, log records, "
            f"spans), the writer thread's work included; sampling at 0.1: "
            f"{over('logging on (defaults), sample_rate=0.1')} with the defaults, "
            f"{over('logging on (everything), sample_rate=0.1')} with everything on; a dropped "
            f"request {over('logging on (everything), sample_rate=0 (every request dropped)')}; "
            f"0.1 with a sample_on_response callback (every request captured until its response) "
            f"{over('logging on (everything), sample_rate=0.1 + sample_on_response')}"
        )
    if "decision" in result:
        lines.append(
            f"the sampling decision of a dropped request, alone: "
            f"{result['decision']['dropped_request_decision_us']:.2f} µs"
        )
    lines += [
        "",
        f"sustained: {s['requests']} requests at {s['rate']}/s for {s['seconds']} s, everything "
        f"logged: {s['written']} items written, {s['dropped']} dropped, "
        f"{s['files_uploaded']} files uploaded",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    log("request log: cost and sustained rate")
    result = run(quick=args.quick)
    save_json(RESULTS_DIR / "request_log.json", result)
    print(report(result))


if __name__ == "__main__":
    main()
