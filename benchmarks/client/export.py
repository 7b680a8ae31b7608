"""Export cost: one sync interval with 10 000 series, and the event-loop stall it causes.

1. Cost: the aggregate is filled with 10 000 series (1 000 routes x 10 consumers, a few histogram
   bins each); ``metric_reader.force_flush()`` then collects, converts and delivers it to a loopback
   sink. Timed: collect (drain + OTel metric data), export (hub payload + JSON, on the reader's
   thread), send (until the sink has it, on the hub client's thread).
2. Stall: a Starlette app instrumented with ``instrument_app`` (sync interval 1 s) serves 1 000
   requests/s in-process on an asyncio loop while a probe task sleeps 1 ms in a loop and records how late it
   wakes up. Every collection on the reader's thread carries the 10 000 series. Compared with the
   same run without them. Full garbage collections (which hold the GIL) are counted and timed.

    python -m benchmarks.client.export [--quick] [--series N] [--seconds S]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from benchmarks import common
from benchmarks.client import apps, collector, worker

STALL_TARGET_MS = 20.0
REQUEST_RATE = 1_000.0  # requests/s served during the stall measurement (about a quarter of capacity)


def fill(processor: Any, series: int, per_series: int = 3) -> None:
    """``series`` distinct (consumer, route) series of ``per_series`` requests, recorded as the
    capture middleware records a request."""
    from apitally_otel._asgi.context import RequestRecord
    from apitally_otel._consumers import Consumer

    consumers = [Consumer(f"consumer-{c}") for c in range(10)]
    for n in range(series * per_series):
        s = n % series
        record = RequestRecord("GET", n + 1, n + 1)
        record.route = f"/resource{s // 10}/{{item_id}}"
        record.status = 200
        record.ttfb = 0.005 + 0.011 * (n // series)
        record.request_size = 0
        record.response_size = 500 + 1000 * (n // series)
        record.consumer = consumers[s % 10]
        processor.record_request(record)


def timed(target: Any, name: str, log: list[tuple[str, float, float]]) -> None:
    """Wrap ``target.name`` to log (name, start, end) of every call."""
    original: Callable[..., Any] = getattr(target, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            log.append((name, start, time.perf_counter()))

    setattr(target, name, wrapper)


def export_cost(sink_url: str, series: int, repeats: int) -> dict[str, Any]:
    from apitally_otel import ApitallyMetricExporter, ApitallyMetricReader, ApitallySpanProcessor

    processor = ApitallySpanProcessor()
    exporter = ApitallyMetricExporter(apps.CLIENT_ID, apps.ENV, sink_url)
    reader = ApitallyMetricReader(exporter, span_processor=processor, sync_interval=3600)
    calls: list[tuple[str, float, float]] = []
    captured: list[Any] = []
    timed(exporter, "export", calls)
    original_export = exporter.export

    def capture(metrics_data: Any, *args: Any, **kwargs: Any) -> Any:
        captured.append(metrics_data)
        return original_export(metrics_data, *args, **kwargs)

    exporter.export = capture  # type: ignore[method-assign]
    rows = []
    for _ in range(repeats):
        fill(processor, series)
        bytes_before = common.sink_stats(sink_url)["bytes"]
        calls.clear()
        captured.clear()
        start = time.perf_counter()
        reader.force_flush(timeout_millis=60_000)
        end = time.perf_counter()
        (_, export_start, export_end) = calls[-1]
        rows.append(
            {
                "collect_s": export_start - start,
                "export_s": export_end - export_start,
                "send_s": end - export_end,
                "total_s": end - start,
                "payload_bytes": common.sink_stats(sink_url)["bytes"] - bytes_before,
                **_json_cost(captured[-1]),
            }
        )
    reader.shutdown()
    return {key: common.median([r[key] for r in rows]) for key in rows[0]} | {"repeats": repeats}


def _json_cost(metrics_data: Any) -> dict[str, float]:
    """The part of the export that is one C call holding the GIL: JSON-encoding the payload."""
    from apitally_otel._hub.encoding import encode_sync

    payload = encode_sync(metrics_data, instance_uuid="x", message_uuid="y", timestamp=0.0, resources=None)
    start = time.perf_counter()
    json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
    return {"json_dumps_s": time.perf_counter() - start, "request_items": float(len(payload["requests"]))}


async def serve_and_probe(app: Any, seconds: float, rate: float) -> dict[str, float]:
    lifespan = worker.Lifespan(app)
    await lifespan.start()
    stop = asyncio.Event()
    lags: list[tuple[float, float]] = []
    served = 0

    async def probe() -> None:
        while not stop.is_set():
            start = time.perf_counter()
            await asyncio.sleep(0.001)
            lags.append((start, time.perf_counter() - start - 0.001))

    async def drive() -> None:  # ``rate`` requests/s, evenly spaced (as many as it can if it can't)
        nonlocal served
        template = worker.make_scope(apps.SCENARIOS[0])
        due = time.perf_counter()
        while not stop.is_set():
            await worker.call(app, template, b"")
            served += 1
            due += 1 / rate
            await asyncio.sleep(max(0.0, due - time.perf_counter()))

    with collector.Collections() as pauses:
        tasks = [asyncio.create_task(probe()), asyncio.create_task(drive())]
        await asyncio.sleep(seconds)
        stop.set()
        await asyncio.gather(*tasks)
    await lifespan.stop()
    values = [lag for _, lag in lags]
    return {
        "max_lag_ms": max(values) * 1e3,
        "p99_lag_ms": common.quantile(values, 0.99) * 1e3,
        "requests_per_s": served / seconds,
        "lag_samples": len(values),
        "full_gcs": pauses.counts[2],
        "longest_full_gc_ms": pauses.longest[2] * 1e3,
    }


def loop_stall(sink_url: str, series: int, seconds: float, interval: float, inject: bool) -> dict[str, Any]:
    from opentelemetry.sdk.trace import TracerProvider

    from apitally_otel import ApitallySpanProcessor, instrument_app

    app = apps.build_starlette()
    setup = instrument_app(
        app,
        client_id=apps.CLIENT_ID,
        env=apps.ENV,
        hub_base_url=sink_url,
        sync_interval=interval,
        tracer_provider=TracerProvider(),
    )
    assert setup is not None
    calls: list[tuple[str, float, float]] = []
    carried: list[int] = []  # series per collection
    if inject:
        aggregator = setup.span_processor.aggregator
        original_drain = aggregator.drain

        def drain_with_series() -> Any:  # runs on the reader's thread, at every collection
            # Fresh objects every interval, as in production (an aggregate lives one interval):
            # a fixture kept alive across intervals would inflate every full GC of the process.
            source = ApitallySpanProcessor()
            fill(source, series)
            data = original_drain()
            data.series.update(source.aggregator.drain().series)
            carried.append(len(data.series))
            return data

        aggregator.drain = drain_with_series  # type: ignore[method-assign]
    timed(setup.exporter, "export", calls)
    result = asyncio.run(serve_and_probe(app, seconds, REQUEST_RATE))
    getattr(setup, "shutdown", setup.metric_reader.shutdown)()  # stop its reader thread
    exports = [end - start for _, start, end in calls]
    return result | {
        "exports": len(exports),
        "export_max_s": max(exports, default=0.0),
        "series_per_export": min(carried, default=0),
    }


def run(*, quick: bool, series: int | None = None, seconds: float | None = None) -> dict[str, Any]:
    series = series or (500 if quick else 10_000)
    seconds = seconds or (0.6 if quick else 15.0)
    interval = 0.2 if quick else 1.0
    with common.sink() as sink_url:
        common.log(f"export: {series} series")
        cost = export_cost(sink_url, series, 1 if quick else 5)
        common.log("export: loop stall without / with the series (each in a fresh process)")
        stall = [sink_url, str(series), str(seconds), str(interval)]
        baseline, loaded = (_child([*stall, inject]) for inject in ("0", "1"))
    return {
        "series": series,
        "sync_interval_s": interval,
        "cost": cost,
        "stall_without_series": baseline,
        "stall_with_series": loaded,
        "stall_target_ms": STALL_TARGET_MS,
        "stall_met": loaded["max_lag_ms"] <= STALL_TARGET_MS,
    }


def _child(args: list[str]) -> dict[str, Any]:
    """``loop_stall`` in a new interpreter: the heap (and so a full GC's length) is the app's only."""
    command = [sys.executable, "-m", "benchmarks.client.export", "--stall-child", *args]
    output = subprocess.run(command, check=True, capture_output=True, text=True, cwd=common.ROOT).stdout
    result: dict[str, Any] = json.loads(output.splitlines()[-1])
    return result


STALL_HEADERS = ["run", "exports", "max lag ms", "p99 lag ms", "full GCs", "longest full GC, wall ms"]


def report(result: dict[str, Any]) -> str:
    c = result["cost"]
    cost_rows = [
        ["collect (drain + OTel metric data)", c["collect_s"] * 1e3],
        ["export (hub payload + JSON, reader thread)", c["export_s"] * 1e3],
        ["  of which json.dumps (one GIL-holding call)", c["json_dumps_s"] * 1e3],
        ["send (hub client thread, loopback POST)", c["send_s"] * 1e3],
        ["total force_flush()", c["total_s"] * 1e3],
    ]
    stall_rows = []
    for label, key in (("without", "stall_without_series"), ("with", "stall_with_series")):
        s = result[key]
        label = f"{label} {result['series']:,} series per export"
        gcs = [s["full_gcs"], s["longest_full_gc_ms"]]
        stall_rows.append([label, s["exports"], s["max_lag_ms"], s["p99_lag_ms"], *gcs])
    verdict = "met" if result["stall_met"] else "MISSED"
    return "\n".join(
        [
            f"One interval of {result['series']:,} series ({c['payload_bytes'] / 1e6:.2f} MB of JSON, "
            f"{c['request_items']:.0f} request items), median of {c['repeats']}:",
            "",
            common.table(["step", "ms"], cost_rows),
            "",
            f"Event-loop lag while serving {REQUEST_RATE:,.0f} requests/s, sync interval "
            f"{result['sync_interval_s']:g} s (probe sleeps 1 ms):",
            "",
            common.table(STALL_HEADERS, stall_rows),
            "",
            f"longest stall with export: {result['stall_with_series']['max_lag_ms']:.1f} ms "
            f"(target ≤ {result['stall_target_ms']:.0f} ms: {verdict})",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="500 series, 0.6 s of serving")
    parser.add_argument("--series", type=int)
    parser.add_argument("--seconds", type=float)
    parser.add_argument("--stall-child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stall_child:
        url, series, seconds, interval, inject = args.stall_child
        stall = loop_stall(url, int(series), float(seconds), float(interval), inject == "1")
        print(json.dumps(stall))
        return
    result = run(quick=args.quick, series=args.series, seconds=args.seconds)
    common.save_json(common.RESULTS_DIR / "export.json", result)
    print(report(result))


if __name__ == "__main__":
    main()
