"""OTLP/HTTP request bodies (already decompressed) as the generated OTLP messages.

Binary protobuf is parsed by the ``protobuf`` runtime; several serialized messages concatenated in
one body (apitally 1.x sends them) parse as their merge, which for these messages is the
concatenation of their resource lists — exactly the batches one after the other. JSON follows the
OTLP/JSON rules (trace and span ids as hex, enums as integers or names, lowerCamelCase or
snake_case keys); several JSON documents one after the other are accepted too.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any, Literal, TypeVar

from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

Signal = Literal["traces", "metrics", "logs"]
MediaType = Literal["protobuf", "json"]
_Request = TypeVar(
    "_Request", ExportTraceServiceRequest, ExportMetricsServiceRequest, ExportLogsServiceRequest
)


_ID_KEYS = frozenset({"traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id"})
MAX_JSON_DEPTH = 64


class OtlpDecodeError(ValueError):
    """The body is not a well-formed OTLP export request (answered 400)."""


def decode(request_type: type[_Request], body: bytes, media_type: MediaType) -> _Request:
    if media_type == "protobuf":
        return _decode_protobuf(request_type, body)
    return _decode_json(request_type, body)


def _decode_protobuf(request_type: type[_Request], body: bytes) -> _Request:
    try:
        return request_type.FromString(body)
    except (DecodeError, RecursionError, ValueError) as exc:
        raise OtlpDecodeError(f"The body is not a serialized {request_type.__name__}: {exc}") from None


def _decode_json(request_type: type[_Request], body: bytes) -> _Request:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise OtlpDecodeError("The body is not UTF-8 JSON") from None
    decoder = json.JSONDecoder()
    message = request_type()
    position, documents = 0, 0
    while True:
        while position < len(text) and text[position] in " \t\r\n":
            position += 1
        if position == len(text):
            break
        try:
            document, position = decoder.raw_decode(text, position)
        except (json.JSONDecodeError, RecursionError) as exc:
            raise OtlpDecodeError(f"The body is not JSON: {exc}") from None
        if not isinstance(document, dict):
            raise OtlpDecodeError(
                f"Expected a JSON object ({request_type.__name__}), got {type(document).__name__}"
            )
        _hex_ids_to_base64(document, 0)
        try:
            message.MergeFrom(json_format.ParseDict(document, request_type(), ignore_unknown_fields=True))
        except (json_format.ParseError, ValueError, TypeError, RecursionError) as exc:
            raise OtlpDecodeError(f"The body is not an OTLP/JSON {request_type.__name__}: {exc}") from None
        documents += 1
    if documents == 0:
        raise OtlpDecodeError("The body is empty")
    return message


def _hex_ids_to_base64(value: Any, depth: int) -> None:
    """OTLP/JSON writes trace and span ids as hex, where protobuf's JSON mapping expects base64."""
    if depth > MAX_JSON_DEPTH:
        raise OtlpDecodeError("The JSON body is nested too deeply")
    if isinstance(value, dict):
        for key, item in value.items():
            if key in _ID_KEYS and isinstance(item, str):
                try:
                    value[key] = base64.b64encode(bytes.fromhex(item)).decode() if item else ""
                except ValueError:
                    raise OtlpDecodeError(f"{key} should be hex: {item[:40]!r}") from None
            elif isinstance(item, (dict, list)):
                _hex_ids_to_base64(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, (dict, list)):
                _hex_ids_to_base64(item, depth + 1)


def encode_response(signal: Signal, media_type: MediaType, rejected: int, error_message: str) -> bytes:
    """The ``Export*ServiceResponse``: empty when all was accepted, else a partial success."""
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceResponse
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

    response: ExportTraceServiceResponse | ExportMetricsServiceResponse | ExportLogsServiceResponse
    if signal == "traces":
        response = ExportTraceServiceResponse()
        if rejected or error_message:
            response.partial_success.rejected_spans = rejected
            response.partial_success.error_message = error_message
    elif signal == "metrics":
        response = ExportMetricsServiceResponse()
        if rejected or error_message:
            response.partial_success.rejected_data_points = rejected
            response.partial_success.error_message = error_message
    else:
        response = ExportLogsServiceResponse()
        if rejected or error_message:
            response.partial_success.rejected_log_records = rejected
            response.partial_success.error_message = error_message
    if media_type == "protobuf":
        return response.SerializeToString()
    return json.dumps(json_format.MessageToDict(response), separators=(",", ":")).encode()


def hex_id(raw: bytes) -> str | None:
    """A trace or span id as lowercase hex; None when absent or all zero."""
    if not raw or not any(raw):
        return None
    return binascii.hexlify(raw).decode()
