"""RequestLogger on its own: nothing lost under load, bounds counted, files within limits, 402."""

from __future__ import annotations

import gzip
import json
import logging
import os
import threading
import time
import uuid

import httpx
import pytest

from apitally_otel._config import resolve_settings
from apitally_otel._request_log.logger import RequestLogger
from apitally_otel.request_logging import RequestLoggingConfig
from tests.support.log_items import item

SETTINGS = resolve_settings(str(uuid.uuid4()), "test", "http://hub.invalid")
CONFIG = RequestLoggingConfig(enabled=True, log_request_body=True, log_response_body=True)


class LogHub:
    def __init__(self, *statuses: tuple[int, dict[str, str]]) -> None:
        self.statuses = list(statuses)
        self.files: dict[str, bytes] = {}
        self.calls = 0
        self.lock = threading.Lock()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        with self.lock:
            self.calls += 1
            status, headers = self.statuses.pop(0) if self.statuses else (202, {})
            if status < 300:
                self.files[request.url.params["uuid"]] = request.content
            return httpx.Response(status, headers=headers)

    def lines(self) -> list[dict[str, object]]:
        with self.lock:
            return [
                json.loads(line)
                for body in self.files.values()
                for line in gzip.decompress(body).splitlines()
            ]


def make(hub: LogHub, **kwargs: object) -> RequestLogger:
    return RequestLogger(CONFIG, SETTINGS, upload_interval=0.2, transport=httpx.MockTransport(hub), **kwargs)  # type: ignore[arg-type]


def test_sustained_load_loses_nothing_and_files_stay_under_1mb() -> None:
    hub = LogHub()
    logger = make(hub)
    for n in range(20_000):
        logger.submit(item(n, body_size=n % 3000))
    assert logger.flush(30)
    lines = hub.lines()
    assert len(lines) == 20_000 and logger.total_dropped == 0
    assert sorted(int(line["request"]["url"].rsplit("/", 1)[1]) for line in lines) == list(range(20_000))  # type: ignore[index, union-attr]
    assert len(hub.files) >= 2 and all(len(body) <= 1_000_000 for body in hub.files.values())
    directory = logger._dir
    logger.shutdown()
    assert directory is None or not os.path.exists(directory)


def test_bounds_drop_and_say_so(caplog: pytest.LogCaptureFixture) -> None:
    hub = LogHub()
    logger = make(hub, max_queue_items=100)
    with caplog.at_level(logging.WARNING):
        logger._thread = threading.Thread()  # hold the writer: nothing drains the queue yet
        for n in range(150):
            logger.submit(item(n))
        assert logger.total_dropped == 50
        logger._thread = None
        logger.submit(item(999))  # starts the writer; the queue is still full: dropped too
        assert logger.flush(10)
    assert len(hub.lines()) == 100 and logger.total_dropped == 51
    assert sum("51 request log item(s) dropped" in r.getMessage() for r in caplog.records) == 1
    logger.shutdown()


@pytest.mark.parametrize(("headers", "suspended_for"), [({"Retry-After": "120"}, 120), ({}, 3600)])
def test_402_suspends_and_drops_queued(
    caplog: pytest.LogCaptureFixture, headers: dict[str, str], suspended_for: int
) -> None:
    now = [1000.0]
    hub = LogHub((402, headers))
    logger = RequestLogger(
        CONFIG, SETTINGS, upload_interval=0.1, transport=httpx.MockTransport(hub), clock=lambda: now[0]
    )
    for n in range(10):
        logger.submit(item(n))
    with caplog.at_level(logging.WARNING):
        logger.flush(10)
    assert hub.files == {} and not logger.active
    assert logger.suspended_until == 1000.0 + suspended_for
    now[0] += suspended_for + 1
    assert logger.active
    logger.submit(item(99))
    assert logger.flush(10)
    assert [line["request"]["url"] for line in hub.lines()] == ["http://h/items/99"]  # type: ignore[index]
    logger.shutdown()


def test_retryable_failures_keep_files_and_the_uuid() -> None:
    hub = LogHub((503, {}), (503, {}))
    logger = make(hub)
    logger.submit(item(1))
    logger.flush(5)
    assert hub.files == {}
    deadline = time.monotonic() + 10
    while not hub.files and time.monotonic() < deadline:
        logger.flush(1)
    assert len(hub.lines()) == 1 and hub.calls == 3
    logger.shutdown()


def test_capture_logs_handler_is_removed_at_shutdown() -> None:
    root = logging.getLogger()
    before = list(root.handlers)
    logger = RequestLogger(RequestLoggingConfig(enabled=True, capture_logs=True), SETTINGS)
    assert len(root.handlers) == len(before) + 1
    logger.shutdown()
    assert root.handlers == before
