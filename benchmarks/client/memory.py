"""Memory under unbounded cardinality: RSS over sync intervals with 1 000 routes and 100 000 new,
distinct, named consumers in every interval (1 500 000 over 15 intervals); it must plateau.

Requests are fed to the span processor the way the capture middleware hands them over
(``record_request`` with a measured ``RequestRecord``); at the end of every "interval" the metric
reader is flushed (collect, convert, send to a loopback sink, wait for delivery) and the RSS read.

    python -m benchmarks.client.memory [--quick] [--intervals N] [--consumers N] [--routes N]
"""

from __future__ import annotations

import argparse
import gc
import threading
import time
from typing import Any

from benchmarks import common

# Plateau: the peak RSS of the last WINDOW intervals exceeds the peak of the WINDOW before by at most
# this much. The run is 15 intervals: the consumer-name LRU (100 000 entries) fills during the
# first 10 (10 000 consumers are kept per interval), so the plateau shows in the last 5.
PLATEAU_TOLERANCE_MB = 5.0
WINDOW = 5


class PeakSampler:
    """Samples the RSS every few milliseconds on a thread, to catch peaks inside an interval."""

    def __init__(self, period: float = 0.02) -> None:
        self.period = period
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            self.peak = max(self.peak, common.rss_mb())

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def take(self) -> float:
        peak, self.peak = max(self.peak, common.rss_mb()), 0.0
        return peak


def run(
    *,
    quick: bool,
    intervals: int | None = None,
    consumers: int | None = None,
    routes: int | None = None,
) -> dict[str, Any]:
    from apitally_otel import ApitallyMetricExporter, ApitallyMetricReader, ApitallySpanProcessor
    from apitally_otel._asgi.context import RequestRecord
    from apitally_otel._consumers import Consumer
    from benchmarks.client import apps

    intervals = intervals or (3 if quick else 15)
    consumers = consumers or (2_000 if quick else 100_000)
    routes = routes or 1_000
    rows: list[dict[str, float]] = []
    with common.sink() as sink_url:
        processor = ApitallySpanProcessor()
        exporter = ApitallyMetricExporter(apps.CLIENT_ID, apps.ENV, sink_url)
        reader = ApitallyMetricReader(exporter, span_processor=processor, sync_interval=3600)
        route_names = [f"/resource{r}/{{item_id}}" for r in range(routes)]
        gc.collect()
        baseline = common.rss_mb()
        common.log(f"memory: {routes} routes x {consumers} new consumers per interval, {intervals} intervals")
        with PeakSampler() as sampler:
            for interval in range(intervals):
                started = time.perf_counter()
                first = interval * consumers
                for i in range(consumers):
                    record = RequestRecord("GET", first + i, first + i)
                    record.route = route_names[i % routes]
                    record.status = 200 if i % 50 else 404
                    record.ttfb = (i % 37) / 1000
                    record.request_size = 0
                    record.response_size = 200 + i % 3000
                    consumer_id = first + i
                    record.consumer = Consumer(f"consumer-{consumer_id}", f"Consumer {consumer_id}", "group")
                    processor.record_request(record)
                fed = time.perf_counter()
                reader.force_flush(timeout_millis=60_000)
                flushed = time.perf_counter()
                rss = common.rss_mb()
                rows.append(
                    {
                        "interval": interval + 1,
                        "rss_mb": rss,
                        "peak_rss_mb": sampler.take(),
                        "feed_s": fed - started,
                        "flush_s": flushed - fed,
                    }
                )
                common.log(f"  interval {interval + 1}: RSS {rss:.1f} MB (flush {flushed - fed:.2f} s)")
        delivered = common.sink_stats(sink_url)["requests"].get("sync", 0)
        reader.shutdown()
    window = min(WINDOW, len(rows) // 2) or 1
    last = max(r["peak_rss_mb"] for r in rows[-window:])
    before = max(r["peak_rss_mb"] for r in rows[-2 * window : -window] or rows[:1])
    growth = last - before
    return {
        "routes": routes,
        "consumers_per_interval": consumers,
        "intervals": intervals,
        "baseline_rss_mb": baseline,
        "rows": rows,
        "max_rss_mb": max(r["peak_rss_mb"] for r in rows),
        "window": window,
        "last_window_growth_mb": growth,
        "plateau": growth <= PLATEAU_TOLERANCE_MB,
        "syncs_delivered": delivered,
    }


def report(result: dict[str, Any]) -> str:
    rows = [[r["interval"], r["rss_mb"], r["peak_rss_mb"], r["feed_s"], r["flush_s"]] for r in result["rows"]]
    verdict = "plateau" if result["plateau"] else "STILL GROWING"
    return "\n".join(
        [
            f"{result['routes']:,} routes x {result['consumers_per_interval']:,} new distinct consumers per "
            f"interval; RSS before: {result['baseline_rss_mb']:.1f} MB",
            "",
            common.table(["interval", "RSS MB", "peak RSS MB", "feed s", "collect+send s"], rows),
            "",
            f"max RSS {result['max_rss_mb']:.1f} MB; peak of the last {result['window']} intervals vs the "
            f"{result['window']} before: {result['last_window_growth_mb']:+.1f} MB ({verdict}, tolerance "
            f"{PLATEAU_TOLERANCE_MB} MB); "
            f"{result['syncs_delivered']} syncs delivered",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 intervals x 2 000 consumers")
    parser.add_argument("--intervals", type=int)
    parser.add_argument("--consumers", type=int)
    parser.add_argument("--routes", type=int)
    args = parser.parse_args()
    result = run(quick=args.quick, intervals=args.intervals, consumers=args.consumers, routes=args.routes)
    common.save_json(common.RESULTS_DIR / "memory.json", result)
    print(report(result))


if __name__ == "__main__":
    main()
