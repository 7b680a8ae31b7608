"""Request logging: per-request cost with logging on vs off, sampled vs not, and the sustained rate
without loss.

    python -m benchmarks.client.request_log [--quick]

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
import math
import random
import time
from typing import Any

from benchmarks.client import apps
from benchmarks.common import RESULTS_DIR, log, median, save_json, sink, table

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


def variant(setup: Any, rate: float | None, **callbacks: Any) -> Any:
    """Prepares ``setup``'s request logger before a batch: logging at ``rate`` (with ``callbacks``),
    or suspended (None: the app runs as with logging off, the logger's ``active`` check aside)."""
    from dataclasses import replace

    from apitally_otel._request_log.sampling import LogSampler

    logger = setup.request_logger
    sampler = None
    if rate is not None:
        config = replace(logger.config, sample_rate=rate, **callbacks)
        sampler = LogSampler(config, logger.builder.excluded_path)

    def prepare() -> None:
        if sampler is None:
            logger.suspended_until = math.inf
        else:
            logger.sampler, logger.suspended_until = sampler, 0.0

    return prepare


async def per_request_cost(sink_url: str, rounds: int, batch: int) -> dict[str, dict[str, float]]:
    """Median µs/request of each variant over ``rounds`` interleaved rounds (in a shuffled order
    each round), in wall time and in CPU time of all the process's threads (the writer's included;
    less moved by other processes on the machine).

    Two app instances, one per set of options; each variant switches its instance's logger (off,
    sampling at 1.0, 0.1, 0). Comparing variants of one instance matters: identical instances of
    the app differ by up to ~20 µs/request here (memory layout), more than what is measured."""
    defaults = build(sink_url, {"enabled": True})
    everything = build(sink_url, LOG_ALL)
    variants = {
        "defaults: logging off": (defaults, variant(defaults[1], None)),
        "defaults: sample_rate=1.0": (defaults, variant(defaults[1], 1.0)),
        "defaults: sample_rate=0.1": (defaults, variant(defaults[1], 0.1)),
        "defaults: sample_rate=0 (every request dropped)": (defaults, variant(defaults[1], 0.0)),
        "everything: logging off": (everything, variant(everything[1], None)),
        "everything: sample_rate=1.0": (everything, variant(everything[1], 1.0)),
        "everything: sample_rate=0.1": (everything, variant(everything[1], 0.1)),
        "everything: sample_rate=0 (every request dropped)": (everything, variant(everything[1], 0.0)),
        "everything: sample_rate=0.1 + sample_on_response": (
            everything,
            variant(everything[1], 0.1, sample_on_response=keep_server_errors),
        ),
    }
    wall: dict[str, list[float]] = {name: [] for name in variants}
    cpu: dict[str, list[float]] = {name: [] for name in variants}
    order = list(variants)
    shuffle = random.Random(17).shuffle
    for round_ in range(rounds + 1):  # round 0 warms up
        shuffle(order)
        for name in order:
            (app, setup), prepare = variants[name]
            prepare()
            start, start_cpu = time.perf_counter(), time.process_time()
            for _ in range(batch):
                await call(app)
            setup.request_logger.flush(30)  # the writer's work is paid for in the timing
            if round_:
                wall[name].append((time.perf_counter() - start) / batch * 1e6)
                cpu[name].append((time.process_time() - start_cpu) / batch * 1e6)
    for _, setup in (defaults, everything):
        setup.shutdown()
    return {
        "wall": {name: median(wall[name]) for name in variants},
        "cpu": {name: median(cpu[name]) for name in variants},
    }


def decision_cost(calls: int) -> dict[str, float]:
    """µs per sampling decision at the start of a request, alone: what a dropped request costs the
    request path beyond logging off (too little to see in the in-app figures)."""
    from opentelemetry.sdk.trace import TracerProvider

    from apitally_otel import RequestLoggingConfig
    from apitally_otel._request_log.sampling import DROP, LogSampler

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
        rounds, batch = (3, 200) if quick else (10, 3000)
        cost = asyncio.run(per_request_cost(sink_url, rounds=rounds, batch=batch))
        rate = asyncio.run(sustained(sink_url, rate=1000.0, seconds=2.0 if quick else 60.0))
    return {
        "per_request_us": cost["wall"],
        "per_request_cpu_us": cost["cpu"],
        "decision": decision_cost(20_000 if quick else 500_000),
        "sustained": rate,
    }


def overheads(cost: dict[str, float]) -> dict[str, float]:
    """Each variant's µs/request over logging off on the same app instance."""
    return {
        name: value - cost[name.split(":")[0] + ": logging off"]
        for name, value in cost.items()
        if not name.endswith("logging off")
    }


def report(result: dict[str, Any]) -> str:
    wall, cpu = result["per_request_us"], result.get("per_request_cpu_us", {})
    wall_over, cpu_over = overheads(wall), overheads(cpu) if cpu else {}
    s = result["sustained"]
    rows = []
    for name, value in wall.items():
        row = [name, f"{value:.1f}", f"{cpu.get(name, 0.0):.1f}"]
        if name in wall_over:
            row[1] += f" ({wall_over[name]:+.1f})"
            row[2] += f" ({cpu_over.get(name, 0.0):+.1f})"
        rows.append(row)
    lines = [
        "Request logging, FastAPI POST /items with a JSON body (in-process, µs/request, median of "
        "interleaved rounds; in brackets the overhead over logging off on the same app instance):",
        "",
        table(["variant", "wall µs/request", "CPU µs/request"], rows),
        "",
    ]
    for label, over in (("wall", wall_over), ("CPU", cpu_over)):
        if over:
            lines.append(
                f"{label}: logging costs {over['defaults: sample_rate=1.0']:+.1f} µs/request with the "
                f"defaults and {over['everything: sample_rate=1.0']:+.1f} with everything on (headers, "
                f"bodies, log records, spans), the writer thread's work included; sampling at 0.1: "
                f"{over['defaults: sample_rate=0.1']:+.1f} and {over['everything: sample_rate=0.1']:+.1f}; "
                f"every request dropped: {over['defaults: sample_rate=0 (every request dropped)']:+.1f} and "
                f"{over['everything: sample_rate=0 (every request dropped)']:+.1f}; 0.1 with a "
                f"sample_on_response callback (every request captured until its response): "
                f"{over['everything: sample_rate=0.1 + sample_on_response']:+.1f}"
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
