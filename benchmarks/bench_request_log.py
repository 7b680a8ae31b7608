"""Request logging: per-request cost with logging on vs off, and the sustained rate without loss.

    python benchmarks/bench_request_log.py [--quick]

Both parts call the FastAPI benchmark app in-process (ASGI, no sockets) with a JSON body, and send
hub traffic to the loopback sink. The sustained part drives a fixed rate (1 000 requests/s for 60 s;
2 s with --quick), then flushes and counts the items written and dropped.
"""

from __future__ import annotations

import argparse
import asyncio
import json
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


def build(sink_url: str, logging: dict[str, bool] | None) -> Any:
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


async def per_request_cost(sink_url: str, rounds: int, batch: int) -> dict[str, float]:
    variants = {
        "logging off": build(sink_url, None),
        "logging on (defaults)": build(sink_url, {"enabled": True}),
        "logging on (everything)": build(sink_url, LOG_ALL),
    }
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for round_ in range(rounds + 1):
        for name, (app, setup) in variants.items():
            start = time.perf_counter()
            for _ in range(batch):
                await call(app)
            if setup.request_logger is not None:
                setup.request_logger.flush(30)  # the writer's work is paid for in the timing
            if round_:
                samples[name].append((time.perf_counter() - start) / batch * 1e6)
    for _, setup in variants.values():
        setup.shutdown()
    return {name: median(values) for name, values in samples.items()}


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
        rounds, batch = (3, 200) if quick else (10, 2000)
        cost = asyncio.run(per_request_cost(sink_url, rounds=rounds, batch=batch))
        rate = asyncio.run(sustained(sink_url, rate=1000.0, seconds=2.0 if quick else 60.0))
    return {"per_request_us": cost, "sustained": rate}


def report(result: dict[str, Any]) -> str:
    cost = result["per_request_us"]
    off, on, defaults = cost["logging off"], cost["logging on (everything)"], cost["logging on (defaults)"]
    s = result["sustained"]
    return "\n".join(
        [
            "Request logging, FastAPI POST /items with a JSON body (in-process, µs/request, median):",
            "",
            table(["variant", "µs/request"], [[name, f"{value:.1f}"] for name, value in cost.items()]),
            "",
            f"logging costs {defaults - off:.1f} µs/request with the default options and "
            f"{on - off:.1f} µs/request with everything on (headers, bodies, log records, spans), "
            "the writer thread's work included",
            "",
            f"sustained: {s['requests']} requests at {s['rate']}/s for {s['seconds']} s, everything "
            f"logged: {s['written']} items written, {s['dropped']} dropped, "
            f"{s['files_uploaded']} files uploaded",
        ]
    )


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
