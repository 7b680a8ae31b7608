"""The in-process aggregate of one sync interval, with explicit cardinality bounds.

On the request path, ``add_*`` only extend a deque (atomic, no lock); the metric reader's thread
folds what is pending into the interval's series once per interval (:meth:`Aggregator.drain`) — and
parses validation-error bodies there, off the event loop. A request's fields go into the deque one
by one, not as a tuple: a tuple per request, alive until it is folded, is one more object for the
garbage collector on every request, so a busy app would run its young collections (and, as they
promote, its full ones) far more often than without us. Under heavy traffic a small background
thread folds the backlog every ``fold_at`` requests, so it stays small between syncs; only if that
thread cannot keep up (``max_pending`` requests, or 8 MB of pending bodies) does the request that
crosses the bound fold the backlog itself (backpressure rather than unbounded memory).

Nothing here grows without bound: distinct consumers per interval are capped (the rest
are counted without a consumer), distinct error details per interval are capped (the rest are
counted as dropped), and the memory of consumer names is a bounded LRU.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

from apitally_otel._consumers import Consumer
from apitally_otel._error_details import ValidationErrorKey, decode_body, parse_validation_errors
from apitally_otel._gil import gc_paused
from apitally_otel._sentry import SentryLink

_logger = logging.getLogger(__name__)

SeriesKey = tuple[str | None, str, str, int]  # consumer, method, route, status
ValidationKey = tuple[str | None, str, str, tuple[str, ...], str, str]  # + loc, msg, type
ServerErrorKey = tuple[str | None, str, str, str, str, str]  # + type, msg, traceback

DEFAULT_MAX_VALIDATION_ERRORS = 1_000
DEFAULT_MAX_SERVER_ERRORS = 100
DEFAULT_MAX_KNOWN_CONSUMERS = 100_000
DEFAULT_MAX_PENDING = 200_000
DEFAULT_FOLD_AT = 10_000
MAX_PENDING_BODY_BYTES = 8 * 1024 * 1024
# Validation bodies repeat (the same client mistake, again and again): the parse of the last few
# small ones is remembered, so each distinct body is parsed once.
_PARSED_BODIES = 256
_PARSED_BODY_MAX_BYTES = 4096
_SENTRY_LINKS_PER_ERROR = 4  # the latest few occurrences: the newest one Sentry captured is linked

_REQUEST, _VALIDATION_BODY, _VALIDATION_ERRORS, _SERVER_ERROR = range(4)
# In the pending deque a request is _REQUEST and 9 fields, a validation body _VALIDATION_BODY and 7;
# the rare records (server errors, parsed validation errors) are their kind and one tuple. Bounds on
# the deque are in requests: its length divided by this.
_REQUEST_ITEMS = 10


def _labels(consumer: Consumer) -> tuple[str, str | None, str | None]:
    return consumer.identifier, consumer.name, consumer.group


class Series:
    """Counts and histogram bins of one (consumer, method, route, status)."""

    __slots__ = (
        "count",
        "duration_max",
        "duration_min",
        "duration_sum",
        "request_size_bins",
        "request_size_sum",
        "response_size_bins",
        "response_size_sum",
        "time_bins",
    )

    def __init__(self) -> None:
        self.count = 0
        self.duration_sum = 0.0
        self.duration_min = float("inf")
        self.duration_max = 0.0
        self.time_bins: dict[int, int] = {}  # ms, floored to a multiple of 10
        self.request_size_sum = 0
        self.response_size_sum = 0
        self.request_size_bins: dict[int, int] = {}  # kB (bytes // 1000)
        self.response_size_bins: dict[int, int] = {}


@dataclass
class IntervalData:
    start_time: float
    end_time: float
    series: dict[SeriesKey, Series] = field(default_factory=dict)
    validation_errors: dict[ValidationKey, int] = field(default_factory=dict)
    server_errors: dict[ServerErrorKey, int] = field(default_factory=dict)
    consumers: list[Consumer] = field(default_factory=list)  # new or changed name/group
    sentry_links: dict[ServerErrorKey, list[SentryLink]] = field(default_factory=dict)
    sentry_event_ids: dict[ServerErrorKey, str] = field(default_factory=dict)  # once resolved

    def resolve_sentry_links(self) -> None:
        """Each server error's Sentry event id, from its newest occurrence Sentry captured.

        Sentry may capture an exception just after the request was counted (its middleware runs
        outside ours): a link still empty is waited for until its deadline (see ``_sentry``), so
        call this off the event loop, once the interval is drained.
        """
        for key, links in self.sentry_links.items():
            for link in reversed(links):
                event_id = link.wait()
                if event_id is not None:
                    self.sentry_event_ids[key] = event_id
                    break


class Aggregator:
    def __init__(
        self,
        *,
        max_consumers: int = 10_000,
        max_validation_errors: int = DEFAULT_MAX_VALIDATION_ERRORS,
        max_server_errors: int = DEFAULT_MAX_SERVER_ERRORS,
        max_known_consumers: int = DEFAULT_MAX_KNOWN_CONSUMERS,
        max_pending: int = DEFAULT_MAX_PENDING,
        fold_at: int = DEFAULT_FOLD_AT,
    ) -> None:
        self.max_consumers = max_consumers
        self.max_pending = max_pending
        self.fold_at = min(fold_at, max_pending)
        self._fold_wanted = threading.Event()
        self._folder: threading.Thread | None = None
        self._pending: deque[Any] = deque()  # records, flat: see add_request
        self._pending_body_bytes = 0
        self._parsed: dict[tuple[bytes, str | None], list[ValidationErrorKey]] = {}  # under the lock
        self.max_validation_errors = max_validation_errors
        self.max_server_errors = max_server_errors
        self.max_known_consumers = max_known_consumers
        self._lock = threading.Lock()
        self._data = IntervalData(time.time(), 0.0)
        self._interval_consumers: set[str] = set()
        # hash(identifier) -> hash((name, group)) of consumers whose labels were sent: a bounded LRU
        # of ints, so remembering 100 000 consumers costs ~10 MB whatever their identifiers' length.
        self._known: OrderedDict[int, int] = OrderedDict()
        self._changed: dict[str, Consumer] = {}
        self._overflowed_consumers = 0
        self._dropped_errors = 0
        self._warned_consumer_cap = False

    # -- the request path: append only ------------------------------------------------------
    def add_request(
        self,
        consumer: Consumer | None,
        method: str,
        route: str,
        status: int,
        duration: float,
        request_size: int | None,
        response_size: int | None,
    ) -> None:
        # One extend: appended at once (the folder never sees half a record), and no object that
        # outlives the request (the consumer's strings, not the Consumer, which may be new).
        if consumer is None:
            self._pending.extend(
                (_REQUEST, None, None, None, method, route, status, duration, request_size, response_size)
            )
        else:
            self._pending.extend(
                (
                    _REQUEST,
                    consumer.identifier,
                    consumer.name,
                    consumer.group,
                    method,
                    route,
                    status,
                    duration,
                    request_size,
                    response_size,
                )
            )
        if len(self._pending) >= self.fold_at * _REQUEST_ITEMS:
            self._backlog()

    def add_validation_body(
        self,
        consumer: Consumer | None,
        method: str,
        route: str,
        body: bytes,
        content_encoding: str | None = None,
    ) -> None:
        """A 422/400 JSON body as sent, decoded and parsed for validation errors when folded."""
        # Flat, as a request is (see add_request): one on every 422 of an app that sends many.
        identifier, name, group = (None, None, None) if consumer is None else _labels(consumer)
        self._pending.extend(
            (_VALIDATION_BODY, identifier, name, group, method, route, body, content_encoding)
        )
        self._pending_body_bytes += len(body)  # an estimate across threads is enough for a bound
        if self._pending_body_bytes >= MAX_PENDING_BODY_BYTES:
            self._fold_now()
        elif len(self._pending) >= self.fold_at * _REQUEST_ITEMS:
            self._backlog()

    def add_validation_errors(
        self,
        consumer: Consumer | None,
        method: str,
        route: str,
        errors: list[tuple[tuple[str, ...], str, str]],
    ) -> None:
        self._pending.extend((_VALIDATION_ERRORS, (consumer, method, route, errors)))

    def add_server_error(
        self,
        consumer: Consumer | None,
        method: str,
        route: str,
        type_: str,
        msg: str,
        traceback: str,
        sentry: SentryLink | None = None,
    ) -> None:
        self._pending.extend((_SERVER_ERROR, (consumer, method, route, type_, msg, traceback, sentry)))

    # -- folding (under the lock) -------------------------------------------------------------
    def _backlog(self) -> None:
        if len(self._pending) >= self.max_pending * _REQUEST_ITEMS:
            self._fold_now()  # the folder thread cannot keep up: fold here rather than grow
        elif not self._fold_wanted.is_set():
            self._fold_wanted.set()
            if self._folder is None or not self._folder.is_alive():
                self._folder = threading.Thread(
                    target=self._fold_loop, name="apitally-otel-fold", daemon=True
                )
                self._folder.start()

    def _fold_loop(self) -> None:
        while True:
            self._fold_wanted.wait()
            try:
                with gc_paused():
                    self._fold_now()
            except Exception:  # the folder must not die; the next drain folds what is left
                _logger.exception("apitally-otel: folding the request backlog failed")
            self._fold_wanted.clear()

    def _fold_now(self) -> None:
        with self._lock:
            self._fold_pending()

    def _fold_pending(self) -> None:
        pending = self._pending
        pop = pending.popleft  # appends from other threads meanwhile are kept, never lost
        fold = (None, None, self._fold_validation_errors, self._fold_server_error)
        series_of = self._data.series
        identifier_key = self._identifier_key
        self._pending_body_bytes = 0
        while True:
            try:
                kind = pop()
            except IndexError:
                return
            if kind == _VALIDATION_BODY:
                identifier, name, group = pop(), pop(), pop()
                key_id = None if identifier is None else identifier_key(identifier, name, group)
                self._fold_validation_body(key_id, pop(), pop(), pop(), pop())
                continue
            if kind != _REQUEST:
                fold[kind](*pop())  # type: ignore[misc]
                continue
            # A request, folded inline: one per request, millions an interval (no call per item).
            # Its fields were appended in one extend, so they are all there.
            identifier = pop()
            name = pop()
            group = pop()
            method = pop()
            route = pop()
            status = pop()
            duration = pop()
            request_size = pop()
            response_size = pop()
            if duration < 0.0:
                duration = 0.0
            key = (
                None if identifier is None else identifier_key(identifier, name, group),
                method,
                route,
                status,
            )
            series = series_of.get(key)
            if series is None:
                series = series_of[key] = Series()
            series.count += 1
            series.duration_sum += duration
            if duration < series.duration_min:
                series.duration_min = duration
            if duration > series.duration_max:
                series.duration_max = duration
            time_bin = int(duration / 0.01) * 10  # hub-protocol §4.1, to the letter
            bins = series.time_bins
            bins[time_bin] = bins.get(time_bin, 0) + 1
            if request_size is not None and request_size >= 0:
                series.request_size_sum += request_size
                kb = request_size // 1000
                bins = series.request_size_bins
                bins[kb] = bins.get(kb, 0) + 1
            if response_size is not None and response_size >= 0:
                series.response_size_sum += response_size
                kb = response_size // 1000
                bins = series.response_size_bins
                bins[kb] = bins.get(kb, 0) + 1

    def _fold_validation_body(
        self, identifier: str | None, method: str, route: str, body: bytes, content_encoding: str | None
    ) -> None:
        small = len(body) <= _PARSED_BODY_MAX_BYTES
        errors = self._parsed.get((body, content_encoding)) if small else None
        if errors is None:
            plain = decode_body(body, content_encoding)
            if plain is None:
                return  # an encoding we do not read, or more than the decompression cap
            errors = parse_validation_errors(plain)
            if small:
                if len(self._parsed) >= _PARSED_BODIES:
                    del self._parsed[next(iter(self._parsed))]  # the oldest
                self._parsed[(body, content_encoding)] = errors
        if errors:
            self._count_validation_errors(identifier, method, route, errors)

    def _fold_validation_errors(
        self,
        consumer: Consumer | None,
        method: str,
        route: str,
        errors: list[tuple[tuple[str, ...], str, str]],
    ) -> None:
        self._count_validation_errors(self._consumer_key(consumer), method, route, errors)

    def _count_validation_errors(
        self,
        identifier: str | None,
        method: str,
        route: str,
        errors: list[tuple[tuple[str, ...], str, str]],
    ) -> None:
        bucket = self._data.validation_errors
        for loc, msg, type_ in errors:
            key = (identifier, method, route, loc, msg, type_)
            if key in bucket:
                bucket[key] += 1
            elif len(bucket) < self.max_validation_errors:
                bucket[key] = 1
            else:
                self._dropped_errors += 1

    def _fold_server_error(
        self,
        consumer: Consumer | None,
        method: str,
        route: str,
        type_: str,
        msg: str,
        traceback: str,
        sentry: SentryLink | None,
    ) -> None:
        key = (self._consumer_key(consumer), method, route, type_, msg, traceback)
        bucket = self._data.server_errors
        if key in bucket:
            bucket[key] += 1
        elif len(bucket) < self.max_server_errors:
            bucket[key] = 1
        else:
            self._dropped_errors += 1
            return
        if sentry is not None:
            links = self._data.sentry_links.setdefault(key, [])
            links.append(sentry)
            if len(links) > _SENTRY_LINKS_PER_ERROR:
                del links[0]

    def _consumer_key(self, consumer: Consumer | None) -> str | None:
        """The identifier to count under (None past the per-interval cap); notes name/group changes."""
        if consumer is None:
            return None
        return self._identifier_key(consumer.identifier, consumer.name, consumer.group)

    def _identifier_key(self, identifier: str, name: str | None, group: str | None) -> str | None:
        if identifier not in self._interval_consumers:
            if len(self._interval_consumers) >= self.max_consumers:
                self._overflowed_consumers += 1
                return None
            self._interval_consumers.add(identifier)
        if name is not None or group is not None:
            key, labels = hash(identifier), hash((name, group))
            if self._known.get(key) != labels:
                self._known[key] = labels
                self._changed[identifier] = Consumer(identifier, name, group)
                if len(self._known) > self.max_known_consumers:
                    self._known.popitem(last=False)  # forgotten: resent if seen again
            self._known.move_to_end(key)
        return identifier

    def drain(self) -> IntervalData:
        """Swap out the current interval (O(1) under the lock) and return it."""
        with self._lock:
            self._fold_pending()
            now = time.time()
            data = self._data
            self._data = IntervalData(now, 0.0)
            data.end_time = now
            data.consumers = list(self._changed.values())
            self._changed = {}
            self._interval_consumers = set()
            overflowed, self._overflowed_consumers = self._overflowed_consumers, 0
            dropped, self._dropped_errors = self._dropped_errors, 0
        if overflowed:
            if not self._warned_consumer_cap:
                _logger.warning(
                    "apitally-otel: more than %d distinct consumers in one interval; %d requests from "
                    "further consumers were counted without a consumer (raise max_consumers to keep them)",
                    self.max_consumers,
                    overflowed,
                )
                self._warned_consumer_cap = True
            else:
                _logger.debug("apitally-otel: %d requests counted without consumer (cap)", overflowed)
        if dropped:
            _logger.warning(
                "apitally-otel: %d error details dropped this interval (distinct-error cap)", dropped
            )
        return data

    def reset_after_fork(self) -> None:
        """In a forked child: what was counted before the fork is the parent's to report.

        The lock may have been held by another thread of the parent at fork time, so it is
        replaced, not acquired.
        """
        self._lock = threading.Lock()
        self._fold_wanted = threading.Event()
        self._folder = None  # threads do not survive fork(): restarted when needed
        self._pending = deque()
        self._pending_body_bytes = 0
        self._data = IntervalData(time.time(), 0.0)
        self._interval_consumers = set()
        self._changed = {}
        self._overflowed_consumers = 0
        self._dropped_errors = 0
