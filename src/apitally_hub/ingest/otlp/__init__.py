"""OTLP ingest: OTLP/HTTP export requests (traces, metrics, logs) turned into the classic
protocol's messages (startup, sync, request-log lines), which then take the same queue and folding
as ``/v2`` messages. See docs/otlp.md for what is derived from what."""
