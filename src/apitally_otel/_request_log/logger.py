"""RequestLogger: turns captured requests into gzip NDJSON files and uploads them (hub-protocol §5).

Which requests get an item is decided when each starts, by the logger's
:class:`~apitally_otel._request_log.sampling.LogSampler`. Off the request path: the capture middleware appends
raw items to a bounded in-memory queue; one background thread applies exclusions and masking
(before anything is written anywhere), writes NDJSON lines into gzip files of at most 1 MB in a
private temp directory (mode 0700), bounded in count and bytes on disk, and uploads finished files
to ``{hub}/log?uuid=`` — at most 10 per cycle, each file's uuid stable across retries, through the
same HTTP client as the hub client (:mod:`apitally_otel._hub.http`: one deadline per upload, at most
64 kB of an answer read). A 402 with ``Retry-After`` suspends logging for that long and drops what
is queued. A failed upload keeps its file for the next cycle (one warning per outage). Whatever a
bound drops is counted and reported in one warning per cycle.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import tempfile
import threading
import time
import uuid
import zlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import httpx
from opentelemetry.instrumentation.utils import suppress_instrumentation

from apitally_otel._config import DEFAULT_HUB_TIMEOUT, HubSettings
from apitally_otel._hub.http import HubConnection, HubUnreachable
from apitally_otel._hub.status import Outcome, classify, parse_retry_after
from apitally_otel._request_log import log_sinks
from apitally_otel._request_log.log_capture import RawLogItem
from apitally_otel._request_log.log_item import ItemBuilder
from apitally_otel._request_log.sampling import LogSampler
from apitally_otel.request_logging import RequestLoggingConfig

_logger = logging.getLogger(__name__)

MAX_FILE_BYTES = 1_000_000
MAX_QUEUE_ITEMS = 100_000
MAX_QUEUE_BYTES = 64 * 1024 * 1024
MAX_FILES = 50
MAX_DISK_BYTES = 50 * 1024 * 1024
MAX_UPLOADS_PER_CYCLE = 10
DEFAULT_SUSPEND = 3600.0
_GZIP_TRAILER = 8


@dataclass
class _File:
    uuid: str
    path: str
    size: int


class _GzipWriter:
    """An NDJSON gzip stream on disk that knows its compressed size exactly (sync-flushed)."""

    def __init__(self, directory: str) -> None:
        self.uuid = str(uuid.uuid4())
        self.path = os.path.join(directory, f"{self.uuid}.ndjson.gz")
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        self._compressor = zlib.compressobj(6, zlib.DEFLATED, 31)
        self.size = 0
        self.lines = 0

    def fits(self, line: bytes) -> bool:
        # Deflate never grows data by more than a few bytes per 16 kB block, so this bound is safe.
        worst = len(line) + 5 * (len(line) // 16_384 + 1) + 16
        return self.size + worst + _GZIP_TRAILER <= MAX_FILE_BYTES

    def write(self, line: bytes) -> None:
        data = self._compressor.compress(line) + self._compressor.flush(zlib.Z_SYNC_FLUSH)
        os.write(self._fd, data)
        self.size += len(data)
        self.lines += 1

    def close(self) -> _File:
        data = self._compressor.flush(zlib.Z_FINISH)
        os.write(self._fd, data)
        os.close(self._fd)
        return _File(self.uuid, self.path, self.size + len(data))

    def discard(self) -> None:
        os.close(self._fd)
        os.unlink(self.path)


class RequestLogger:
    def __init__(
        self,
        config: RequestLoggingConfig,
        settings: HubSettings,
        *,
        upload_interval: float = 60.0,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], float] = time.time,
        max_queue_items: int = MAX_QUEUE_ITEMS,
        max_files: int = MAX_FILES,
        max_disk_bytes: int = MAX_DISK_BYTES,
        proxy: str | None = None,
        request_timeout: float = DEFAULT_HUB_TIMEOUT,
    ) -> None:
        self._proxy = proxy
        self._connection = HubConnection(
            settings.hub_url, timeout=request_timeout, proxy=proxy, transport=transport
        )
        self._failing = False  # the current outage was warned about
        self.config = config
        self.settings = settings
        self.upload_interval = upload_interval
        self._clock = clock
        self.max_queue_items = max_queue_items
        self.max_files = max_files
        self.max_disk_bytes = max_disk_bytes
        self.builder = ItemBuilder(config)  # compiles the patterns: a bad user regex fails here
        self.sampler = LogSampler(config, self.builder.excluded_path)
        self._queue: deque[RawLogItem] = deque()
        self._queued_bytes = 0
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._flush_requested = threading.Event()
        self._flushed = threading.Event()
        self._files: deque[_File] = deque()
        self._writer: _GzipWriter | None = None
        self._dir: str | None = None
        self._thread: threading.Thread | None = None
        self._closing = False
        self.suspended_until = 0.0
        self.dropped = 0  # since the last warning
        self.total_dropped = 0
        self.written = 0
        self.uploaded_files = 0
        self._last_upload = clock()
        atexit.register(self.shutdown)  # final upload and temp files removed at interpreter exit
        # Opt-in capture of the app's log records (stdlib, and Loguru once the app has started):
        # shared sinks that only look at records emitted inside a logged request, released at shutdown.
        self._captures_logs = config.capture_logs
        if config.capture_logs:
            log_sinks.acquire()

    @property
    def request_timeout(self) -> float:
        """The deadline of one upload, in seconds."""
        return self._connection.timeout

    @property
    def active(self) -> bool:
        return not self._closing and self._clock() >= self.suspended_until

    def on_app_started(self) -> None:
        """The app has started (its modules imported, its lifespan startup done): Loguru's sink."""
        if self._captures_logs:
            log_sinks.attach_loguru()

    # -- request path ----------------------------------------------------------------------
    def submit(self, item: RawLogItem) -> None:
        size = item.approximate_size()
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="apitally-otel-request-log", daemon=True
                )
                self._thread.start()
            if len(self._queue) >= self.max_queue_items or self._queued_bytes + size > MAX_QUEUE_BYTES:
                self._drop()
                return
            self._queue.append(item)
            self._queued_bytes += size
        if len(self._queue) >= 1000:
            self._wake.set()

    # -- lifecycle ---------------------------------------------------------------------------
    def flush(self, timeout: float = 5.0) -> bool:
        """Write what is queued and upload every finished file, within ``timeout`` seconds."""
        if self._thread is None or not self._thread.is_alive():
            return True
        self._flushed.clear()
        self._flush_requested.set()
        self._wake.set()
        return self._flushed.wait(timeout)

    def shutdown(self, timeout: float = 5.0) -> None:
        """Final write and upload within ``timeout``, then the temp directory is removed. Idempotent."""
        if self._closing:
            return
        atexit.unregister(self.shutdown)
        self.flush(timeout)
        self._closing = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(1.0)
        self._cleanup()

    def _cleanup(self) -> None:
        if self._captures_logs:
            self._captures_logs = False
            log_sinks.release()
        if self._writer is not None:
            self._writer.discard()
            self._writer = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
        self._files.clear()

    # -- the background thread ---------------------------------------------------------------
    def _run(self) -> None:
        with suppress_instrumentation():  # our uploads are not app traffic
            try:
                self._loop()
            finally:
                self._connection.close()

    def _loop(self) -> None:
        while not self._closing:
            self._wake.wait(0.5)
            self._wake.clear()
            try:
                self._write_queued()
                flush = self._flush_requested.is_set()
                if flush or self._clock() - self._last_upload >= self.upload_interval:
                    self._finish_file()
                    self._upload(everything=flush)
                    self._last_upload = self._clock()
                    self._report_drops()
                if flush:
                    self._flush_requested.clear()
                    self._flushed.set()
            except Exception:  # the thread must survive anything; log and go on
                _logger.exception("apitally-otel: request log writer failed")

    def _write_queued(self) -> None:
        while True:
            with self._lock:
                if not self._queue:
                    return
                item = self._queue.popleft()
                self._queued_bytes -= item.approximate_size()
            line = self.builder.build(item)
            if line is None:
                continue  # excluded
            writer = self._current_writer()
            if writer is None:
                self._drop()
                continue
            if not writer.fits(line):
                self._finish_file()
                writer = self._current_writer()
                if writer is None or not writer.fits(line):
                    self._drop()
                    continue
            writer.write(line)
            self.written += 1

    def _current_writer(self) -> _GzipWriter | None:
        if self._writer is None:
            if len(self._files) >= self.max_files or sum(f.size for f in self._files) >= self.max_disk_bytes:
                return None  # disk bounds reached: the hub is unreachable for a while
            if self._dir is None:
                self._dir = tempfile.mkdtemp(prefix="apitally-otel-log-")  # mode 0700
            self._writer = _GzipWriter(self._dir)
        return self._writer

    def _finish_file(self) -> None:
        if self._writer is None:
            return
        if self._writer.lines == 0:
            self._writer.discard()
        else:
            self._files.append(self._writer.close())
        self._writer = None

    def _upload(self, everything: bool) -> None:
        budget = len(self._files) if everything else MAX_UPLOADS_PER_CYCLE
        while self._files and budget > 0 and not self._closing:
            budget -= 1
            file = self._files[0]
            with open(file.path, "rb") as handle:
                body = handle.read()
            try:
                answer = self._connection.post("/log", body, params={"uuid": file.uuid})
            except HubUnreachable as exc:
                self._upload_failed(str(exc))
                return
            if self._closing:
                return  # shutdown did not wait for this upload: its files are being removed
            if answer.status_code == 402:
                self._suspend(answer.retry_after)
                return
            outcome = classify(answer.status_code)
            if outcome is Outcome.RETRY:
                self._upload_failed(f"HTTP {answer.status_code}: {answer.quoted()}")
                return
            if self._failing:
                self._failing = False
                _logger.info("apitally-otel: request log uploads work again")
            self._files.popleft()
            os.unlink(file.path)
            if outcome is Outcome.SENT:
                self.uploaded_files += 1
            else:
                _logger.warning(
                    "apitally-otel: hub rejected a request log file (%s): %s",
                    answer.status_code,
                    answer.quoted(),
                )

    def _upload_failed(self, detail: str) -> None:
        log = _logger.debug if self._failing else _logger.warning
        self._failing = True
        log(
            "apitally-otel: request log upload failed (%s); keeping %d file(s) for retry",
            detail,
            len(self._files),
        )

    def _suspend(self, retry_after: str | None) -> None:
        seconds = parse_retry_after(retry_after, self._clock)
        if seconds is None:
            seconds = DEFAULT_SUSPEND
        self.suspended_until = self._clock() + seconds
        with self._lock:
            dropped_items = len(self._queue)
            self._queue.clear()
            self._queued_bytes = 0
        self.total_dropped += dropped_items
        dropped_files = len(self._files)
        for file in self._files:
            os.unlink(file.path)
        self._files.clear()
        _logger.warning(
            "apitally-otel: request log quota reached (402); logging suspended for %d s, dropped %d file(s) "
            "and %d queued request(s)",
            seconds,
            dropped_files,
            dropped_items,
        )

    def _drop(self, count: int = 1) -> None:
        self.dropped += count
        self.total_dropped += count

    def _report_drops(self) -> None:
        if self.dropped:
            dropped, self.dropped = self.dropped, 0
            _logger.warning(
                "apitally-otel: %d request log item(s) dropped (queue or disk bounds reached)", dropped
            )
