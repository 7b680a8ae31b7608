"""One OTLP export request, from its decompressed body to the classic messages in the queue.

:meth:`OtlpIntake.take` runs on a worker thread (parsing, store calls): it decodes the body,
derives each instance's data (:mod:`.metrics`, :mod:`.traces`, :mod:`.logs`), turns cumulative
metrics into deltas against the series the store keeps, checks the messages it made with the
classic protocol's validators (what fails is dropped and reported as rejected, never stored) and
queues them all in one transaction. The messages' uuids come from the body's digest, so a body
sent twice (a retry after a lost answer) is stored, and counted, once.

Counted once: an instance that sends HTTP server metrics with routes is counted from them; one
that sends none (traces only, e.g. through a Collector) from its SERVER spans, whose counts are
held back until it is clear that no metrics come (:mod:`.held`). apitally 1.x instances are never
counted from spans (their spans are a sample).
"""

from __future__ import annotations

import gzip
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from apitally_hub.ingest import folding
from apitally_hub.ingest.otlp import batch as batches
from apitally_hub.ingest.otlp import decoding, held, logs, metrics, traces
from apitally_hub.ingest.otlp.batch import InstanceBatch
from apitally_hub.ingest.otlp.decoding import MediaType, Signal
from apitally_hub.ingest.otlp.held import HELD_MODE, METRICS_MODE, MODE_KEY
from apitally_hub.ingest.otlp.histograms import Histogram
from apitally_hub.protocol.checker import TimeWindow
from apitally_hub.protocol.log_lines import validate_log_lines
from apitally_hub.protocol.messages import is_valid_env, validate_startup, validate_sync
from apitally_hub.storage.base import Storage
from apitally_hub.storage.records import AppKey, RawMessage, SeriesPoint

_logger = logging.getLogger(__name__)

MAX_LOG_LINES_PER_MESSAGE = 5000


@dataclass
class Outcome:
    messages: int = 0
    """Messages stored (not counting ones already stored: a duplicate body)."""
    duplicates: int = 0
    rejected: int = 0
    notes: list[str] = field(default_factory=list)
    items: int = 0

    @property
    def error_message(self) -> str:
        return "; ".join(self.notes)[:1000]


@dataclass
class Target:
    """Where a request's data goes: the app its write token names, and its env."""

    client_id: str
    header_env: str | None
    default_env: str


class OtlpIntake:
    def __init__(self, storage: Storage, window: TimeWindow, allow_extra: bool = False) -> None:
        self.storage = storage
        self.window = window
        self.allow_extra = allow_extra

    @property
    def now(self) -> float:
        return self.window.now

    def take(
        self,
        target: Target,
        signal: Signal,
        body: bytes,
        media_type: MediaType,
        received_at: float | None = None,
    ) -> Outcome:
        digest = batches.body_digest(body)
        outcome = Outcome()
        now = self.now
        window_start = now - self.window.max_age
        if signal == "metrics":
            metrics_request = decoding.decode(ExportMetricsServiceRequest, body, media_type)
            found = self._metrics(target, metrics_request, outcome)
        elif signal == "traces":
            traces_request = decoding.decode(ExportTraceServiceRequest, body, media_type)
            found = self._traces(target, traces_request, outcome, window_start, digest)
        else:
            logs_request = decoding.decode(ExportLogsServiceRequest, body, media_type)
            logs_batch = logs.extract(logs_request, window_start, now)
            outcome.rejected += logs_batch.rejected
            found = logs_batch.batches
        messages = self._messages(target, signal, digest, found, outcome, received_at or now)
        if messages:
            stored = self.storage.enqueue_many(messages)
            outcome.messages = sum(stored)
            outcome.duplicates = len(stored) - outcome.messages
        return outcome

    def env_of(self, target: Target, batch: InstanceBatch) -> str:
        if target.header_env is not None:
            return target.header_env
        if batch.env is not None and is_valid_env(batch.env):
            return batch.env
        return target.default_env

    # -- metrics ---------------------------------------------------------------------------

    def _metrics(
        self, target: Target, request: ExportMetricsServiceRequest, outcome: Outcome
    ) -> dict[str, InstanceBatch]:
        found = metrics.extract(request, self.now)
        outcome.notes.extend(found.notes[:5])
        outcome.rejected += found.rejected
        by_instance: dict[str, list[metrics.HttpPoint]] = {}
        for point in found.points:
            by_instance.setdefault(point.instance, []).append(point)
        previous: dict[tuple[str, str], tuple[Histogram, int]] = {}
        for instance, batch in found.batches.items():
            points = by_instance.get(instance, [])
            series = [
                SeriesPoint(point.series, 0, point.time_nano, point.histogram.to_json())
                for point in points
                if point.series is not None
            ]
            if instance in found.routed_instances:
                series.append(METRICS_MODE)
            if not series:
                continue
            app = AppKey(target.client_id, self.env_of(target, batch))
            stored = self.storage.swap_series(app, instance, series, self.now)
            mode = stored.get(MODE_KEY)
            routed = instance in found.routed_instances
            if routed and (mode is None or mode.value == "held"):
                # the first metrics of an instance whose span counts were held: they count it all
                refs = [
                    ref
                    for ref, _ in self.storage.series_with_prefix(held.PREFIX, app=app, instance_id=instance)
                ]
                if refs:
                    self.storage.enqueue_many([], forget_series=refs)
            # metrics after its span counts were released: their first points are the baseline
            baseline = routed and mode is not None and mode.value == "spans"
            for point in points:
                if point.series is None:
                    if baseline:  # a delta point of the first export after span counting
                        point.histogram.count = 0
                    continue
                before = stored.get(point.series)
                if before is not None:
                    histogram = Histogram.from_json(before.value)
                    if histogram is not None:
                        previous[(instance, point.series)] = (histogram, before.time_nano)
                elif baseline:
                    previous[(instance, point.series)] = (point.histogram, point.time_nano)
        metrics.apply(found, previous)
        return found.batches

    # -- traces ----------------------------------------------------------------------------

    def _traces(
        self,
        target: Target,
        request: ExportTraceServiceRequest,
        outcome: Outcome,
        window_start: float,
        digest: str,
    ) -> dict[str, InstanceBatch]:
        found = traces.extract(request)
        counted: set[str] = set()
        holding: set[str] = set()
        candidates = {server.instance for server in found.server_spans if not server.apitally}
        for instance in sorted(candidates):
            app = AppKey(target.client_id, self.env_of(target, found.batches[instance]))
            mode = self.storage.swap_series(app, instance, [HELD_MODE], self.now).get(MODE_KEY)
            if mode is None or mode.value == "held":
                holding.add(instance)
            elif mode.value == "spans":
                counted.add(instance)
        traces.apply(found, counted | holding, window_start, self.now)
        outcome.rejected += found.rejected
        for instance in sorted(holding):
            batch = found.batches[instance]
            points = held.held_points(batch, digest, self.now)
            if points:
                self.storage.swap_series(
                    AppKey(target.client_id, self.env_of(target, batch)), instance, points, self.now
                )
        return found.batches

    # -- messages ----------------------------------------------------------------------------

    def _messages(
        self,
        target: Target,
        signal: Signal,
        digest: str,
        found: dict[str, InstanceBatch],
        outcome: Outcome,
        received_at: float,
    ) -> list[RawMessage]:
        messages: list[RawMessage] = []
        for instance, batch in found.items():
            app = AppKey(target.client_id, self.env_of(target, batch))
            startup_body = batch.startup or batch.resource_startup
            if startup_body is not None:
                startup = dict(startup_body)
                # a resource's startup once per instance (the queue keeps one message per uuid)
                startup["message_uuid"] = (
                    batches.message_uuid(signal, digest, instance, "startup")
                    if batch.startup is not None
                    else batches.message_uuid(
                        instance, "resource-startup", json.dumps(startup, sort_keys=True)
                    )
                )
                errors = validate_startup(startup, allow_extra=self.allow_extra)
                if errors:
                    outcome.rejected += 1
                    outcome.notes.append(f"startup record refused: {errors[0].msg}")
                else:
                    messages.append(self._json_message(app, "startup", startup, received_at, 1))
            heartbeat = signal == "metrics"
            for sync in batches.sync_messages(batch, digest, signal):
                if not heartbeat and not (
                    sync["requests"]
                    or sync["validation_errors"]
                    or sync["server_errors"]
                    or sync["consumers"]
                ):
                    continue
                kept = self._valid_sync(sync, outcome)
                if kept is not None:
                    count = folding.item_count(kept)
                    outcome.items += count
                    messages.append(self._json_message(app, "sync", kept, received_at, count))
            if batch.log_attachments:
                messages.append(self._attachment_message(app, signal, digest, instance, batch, received_at))
            if batch.log_lines:
                messages.extend(
                    self._log_messages(app, signal, digest, instance, batch.log_lines, outcome, received_at)
                )
        return messages

    def _json_message(
        self,
        app: AppKey,
        kind: Literal["startup", "sync"],
        body: dict[str, Any],
        received_at: float,
        items: int,
    ) -> RawMessage:
        data = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
        return RawMessage(
            app,
            kind,
            body["message_uuid"],
            body["instance_uuid"],
            received_at,
            folding.encode_json_body(data),
            "zlib",
            items,
        )

    def _attachment_message(
        self,
        app: AppKey,
        signal: Signal,
        digest: str,
        instance: str,
        batch: InstanceBatch,
        received_at: float,
    ) -> RawMessage:
        """The app log records of requests, as lines that add them to the requests' items."""
        text = "".join(
            json.dumps({"attach": request, "logs": records}, separators=(",", ":"), ensure_ascii=False) + "\n"
            for request, records in batch.log_attachments.items()
        )
        return RawMessage(
            app,
            "log",
            batches.message_uuid(signal, digest, instance, "attach"),
            None,
            received_at,
            gzip.compress(text.encode(), compresslevel=1),
            "gzip",
            len(batch.log_attachments),
        )

    def _valid_sync(self, sync: dict[str, Any], outcome: Outcome) -> dict[str, Any] | None:
        """The sync with the items the protocol's validator refuses taken out (each counted as
        rejected); None when what is left is refused as a whole (e.g. its time is out of range)."""
        for _ in range(3):
            errors = validate_sync(sync, allow_extra=self.allow_extra, window=self.window)
            if not errors:
                return sync
            bad: dict[str, set[int]] = {}
            for error in errors:
                loc = error.loc
                if len(loc) >= 2 and loc[0] in (
                    "requests",
                    "validation_errors",
                    "server_errors",
                    "consumers",
                ):
                    bad.setdefault(str(loc[0]), set()).add(int(loc[1]))
                else:
                    outcome.rejected += folding.item_count(sync) or 1
                    outcome.notes.append(f"data refused: {'.'.join(map(str, loc))}: {error.msg}")
                    return None
            for key, indexes in bad.items():
                outcome.rejected += len(indexes)
                first = next(error for error in errors if error.loc[0] == key)
                outcome.notes.append(f"{key} item refused: {'.'.join(map(str, first.loc))}: {first.msg}")
                sync[key] = [item for index, item in enumerate(sync[key]) if index not in indexes]
        return None

    def _log_messages(
        self,
        app: AppKey,
        signal: Signal,
        digest: str,
        instance: str,
        lines: Sequence[dict[str, Any]],
        outcome: Outcome,
        received_at: float,
    ) -> list[RawMessage]:
        errors = validate_log_lines(list(enumerate(lines)), allow_extra=self.allow_extra, window=self.window)
        refused = {int(error.loc[1]) for error in errors if len(error.loc) >= 2}
        if refused:
            outcome.rejected += len(refused)
            outcome.notes.append(
                f"request-log item refused: {'.'.join(map(str, errors[0].loc))}: {errors[0].msg}"
            )
        kept = [line for index, line in enumerate(lines) if index not in refused]
        messages = []
        for start in range(0, len(kept), MAX_LOG_LINES_PER_MESSAGE):
            chunk = kept[start : start + MAX_LOG_LINES_PER_MESSAGE]
            text = "".join(
                json.dumps(line, separators=(",", ":"), ensure_ascii=False) + "\n" for line in chunk
            )
            messages.append(
                RawMessage(
                    app,
                    "log",
                    batches.message_uuid(signal, digest, instance, "log", str(start)),
                    None,
                    received_at,
                    gzip.compress(text.encode(), compresslevel=1),
                    "gzip",
                    len(chunk),
                )
            )
        return messages


def clock_window(retention_seconds: float, clock: Any = time.time) -> TimeWindow:
    return TimeWindow(clock(), retention_seconds)
