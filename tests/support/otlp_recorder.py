"""A stand-in OTLP/HTTP receiver for the tests: records every ``POST /v1/*`` and answers 200.

``with OtlpRecorder() as recorder:`` serves on 127.0.0.1:<free port> from a thread; point a peer's
``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``APITALLY_OTLP_ENDPOINT``) at ``recorder.url``. Each request is
kept as it came (path, headers, raw body) with its body un-gzipped, and can be decoded with
``opentelemetry-proto``. apitally 1.x sends spool files that hold several serialized export requests
back to back: ``ParseFromString`` on such a body merges them (their repeated fields concatenate), which
is what inspection wants.
"""

from __future__ import annotations

import gzip
import json
import threading
import time
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from google.protobuf.json_format import MessageToDict, MessageToJson, Parse
from google.protobuf.message import Message
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

SIGNALS: dict[str, type[Message]] = {
    "traces": ExportTraceServiceRequest,
    "metrics": ExportMetricsServiceRequest,
    "logs": ExportLogsServiceRequest,
}


@dataclass(frozen=True)
class RecordedRequest:
    """One ``POST`` as received: ``body`` is the raw bytes, ``data`` the bytes after Content-Encoding."""

    path: str
    headers: Mapping[str, str]  # names lower-cased
    body: bytes
    data: bytes

    @property
    def signal(self) -> str | None:
        """``traces``, ``metrics`` or ``logs`` for ``/v1/<signal>``; None otherwise."""
        name = self.path.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
        return name if self.path.startswith("/v1/") and name in SIGNALS else None

    def decode(self) -> Message:
        """The export request (every message the body holds, merged)."""
        signal = self.signal
        if signal is None:
            raise ValueError(f"not an OTLP signal path: {self.path}")
        message = SIGNALS[signal]()
        if self.headers.get("content-type", "").startswith("application/json"):
            Parse(self.data.decode(), message)
        else:
            message.ParseFromString(self.data)
        return message

    def to_dict(self) -> dict[str, Any]:
        result: dict[str, Any] = MessageToDict(self.decode())
        return result


def _read_chunked(stream: Any) -> bytes:
    chunks: list[bytes] = []
    while True:
        size = int(stream.readline().split(b";", 1)[0].strip() or b"0", 16)
        if size == 0:
            while stream.readline() not in (b"\r\n", b"\n", b""):  # trailers
                pass
            return b"".join(chunks)
        chunks.append(stream.read(size))
        stream.readline()  # the CRLF after each chunk


def _decompress(body: bytes, encoding: str) -> bytes:
    encoding = encoding.strip().lower()
    if encoding == "gzip":
        return gzip.decompress(body)
    if encoding == "deflate":
        return zlib.decompress(body)
    return body


class OtlpRecorder:
    """Records OTLP/HTTP exports. ``response_headers`` go on every answer (e.g. apitally's
    ``Apitally-Export-Interval``); ``status_code`` is what every POST gets."""

    def __init__(self, *, status_code: int = 200, response_headers: Mapping[str, str] | None = None) -> None:
        self.status_code = status_code
        self.response_headers = dict(response_headers or {})
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="otlp-recorder", daemon=True)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as the exporters' sessions expect

            def do_POST(self) -> None:
                if "chunked" in self.headers.get("transfer-encoding", "").lower():
                    body = _read_chunked(self.rfile)  # the OpenTelemetry JS exporters stream
                else:
                    length = int(self.headers.get("content-length") or 0)
                    body = self.rfile.read(length) if length else b""
                headers = {k.lower(): v for k, v in self.headers.items()}
                try:
                    data = _decompress(body, headers.get("content-encoding", ""))
                except (OSError, zlib.error):
                    data = b""
                recorder._record(RecordedRequest(self.path, headers, body, data))
                status = recorder.status_code if self.path.startswith("/v1/") else 404
                self.send_response(status)
                for name, value in recorder.response_headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

        return Handler

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)

    def __enter__(self) -> OtlpRecorder:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)

    # -- what was received ------------------------------------------------------------------------
    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def of_signal(self, signal: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.signal == signal]

    def decoded(self, signal: str) -> list[Any]:
        return [r.decode() for r in self.of_signal(signal)]

    def wait_until(self, predicate: Callable[[OtlpRecorder], bool], timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate(self):
            if time.monotonic() > deadline:
                got = ", ".join(f"{r.path}" for r in self.requests) or "nothing"
                raise AssertionError(f"the recorder did not get what was expected in {timeout} s (got {got})")
            time.sleep(0.05)

    def wait_for(self, signal: str, count: int = 1, timeout: float = 20.0) -> list[RecordedRequest]:
        self.wait_until(lambda r: len(r.of_signal(signal)) >= count, timeout)
        return self.of_signal(signal)

    # -- inspection helpers -----------------------------------------------------------------------
    def metric_names(self) -> set[str]:
        names: set[str] = set()
        for message in self.decoded("metrics"):
            for rm in message.resource_metrics:
                for sm in rm.scope_metrics:
                    names.update(m.name for m in sm.metrics)
        return names

    def spans(self) -> list[Any]:
        return [
            span
            for message in self.decoded("traces")
            for rs in message.resource_spans
            for ss in rs.scope_spans
            for span in ss.spans
        ]

    def log_records(self) -> list[Any]:
        return [
            record
            for message in self.decoded("logs")
            for rl in message.resource_logs
            for sl in rl.scope_logs
            for record in sl.log_records
        ]

    def dump(self, directory: str | Path) -> list[Path]:
        """Writes ``<n>-<signal>.json`` (the decoded request) and ``<n>-<signal>.headers.json`` per
        request into ``directory``; returns the files written."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        written = []
        for n, request in enumerate(self.requests, 1):
            name = request.signal or request.path.strip("/").replace("/", "_") or "root"
            head = out / f"{n:03d}-{name}.headers.json"
            meta = {"path": request.path, "headers": dict(request.headers), "raw_bytes": len(request.body)}
            head.write_text(json.dumps(meta, indent=2) + "\n")
            written.append(head)
            if request.signal is not None:
                body = out / f"{n:03d}-{name}.json"
                body.write_text(MessageToJson(request.decode()) + "\n")
                written.append(body)
        return written
