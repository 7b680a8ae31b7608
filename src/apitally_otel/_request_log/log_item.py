"""Builds one request-log NDJSON line from a captured item: exclusions, masking, encoding.

Runs on the request logger's thread. Masking is applied here, before the line is written to disk
or sent anywhere. User callbacks are guarded: one that raises masks the body (``<masked>``) or
keeps the item (exclusion), and is reported once.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import logging
import re
import uuid
from typing import Any
from urllib.parse import quote

from starlette.requests import Request

from apitally_otel._error_details import server_error_details
from apitally_otel._request_log import masking
from apitally_otel._request_log.log_capture import RawLogItem
from apitally_otel.request_logging import RequestLoggingConfig, ResponseInfo

_logger = logging.getLogger(__name__)

_URL_ATTRIBUTES = frozenset({"http.url", "http.target", "url.full"})
_QUERY_ATTRIBUTES = frozenset({"url.query"})
_HEADER_ATTRIBUTE_PREFIXES = ("http.request.header.", "http.response.header.")
_PATH_SAFE = "/%:@!$&'()*+,;=-._~"
TOO_LARGE = base64.b64encode(b"<body too large>").decode()
MASKED_BODY = b"<masked>"
ROUTE_KEY = "apitally_otel.route"
"""In the scope of the ``Request`` request-logging callbacks get: the route template, or None."""
CONSUMER_KEY = "apitally_otel.consumer"
"""In the scope of the ``Request`` request-logging callbacks get: the consumer's identifier, or None."""


class ItemBuilder:
    def __init__(self, config: RequestLoggingConfig) -> None:
        self.config = config
        self.exclude_paths = masking.compile_patterns(masking.DEFAULT_EXCLUDE_PATHS, config.exclude_paths)
        self.exclude_user_agents = masking.compile_patterns(masking.DEFAULT_EXCLUDE_USER_AGENTS)
        self.mask_headers = masking.compile_patterns(masking.DEFAULT_MASK_HEADERS, config.mask_headers)
        self.mask_query = masking.compile_patterns(
            masking.DEFAULT_MASK_QUERY_PARAMS, config.mask_query_params
        )
        self.mask_body = masking.compile_patterns(masking.DEFAULT_MASK_BODY_FIELDS, config.mask_body_fields)
        self._warned: set[str] = set()

    def excluded_path(self, path: str) -> bool:
        return self.exclude_paths.search(path) is not None

    def build(self, item: RawLogItem) -> bytes | None:
        """The NDJSON line (with its newline), or None when the request is excluded."""
        scope = item.scope
        request_headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope.get("headers", ())]
        user_agent = next((v for k, v in request_headers if k.lower() == "user-agent"), "")
        if user_agent and self.exclude_user_agents.search(user_agent):
            return None
        response_info = response_info_of(item)
        response_headers = response_info.headers
        # What callbacks may need besides the request itself (the classic client's dict-shaped
        # ones, see apitally_otel._classic): the route template and consumer in the item's own
        # scope copy, and the body where Starlette keeps a body it has read.
        scope[ROUTE_KEY] = item.path
        scope[CONSUMER_KEY] = item.consumer
        request = Request(scope)
        if item.request_body is not None:
            request._body = item.request_body
        if self.config.exclude_callback is not None and self._call(
            "exclude_callback", self.config.exclude_callback, request, response_info, default=False
        ):
            return None

        req: dict[str, Any] = {
            "timestamp": item.timestamp,
            "method": item.method,
            "path": item.path,
            "url": self._url(scope, request_headers),
            "headers": masking.mask_headers(request_headers, self.mask_headers)
            if self.config.log_request_headers
            else None,
            "size": item.request_size,
            "consumer": item.consumer,
            "client_ip": client_ip_of(scope),
            "attributes": item.attributes or None,
            "body": self._body(item.request_body, item.request_body_too_large, "mask_request_body", request),
        }
        res: dict[str, Any] = {
            "status_code": item.status_code,
            "response_time": item.response_time,
            "headers": masking.mask_headers(response_headers, self.mask_headers)
            if self.config.log_response_headers
            else None,
            "size": item.response_size,
            "body": self._body(
                item.response_body, item.response_body_too_large, "mask_response_body", request, response_info
            ),
        }
        line: dict[str, Any] = {
            "uuid": str(uuid.uuid4()),
            "request": _compact(req),
            "response": _compact(res),
        }
        if item.exception is not None:
            type_, message, traceback = server_error_details(item.exception)
            exception = {"type": type_, "message": message, "traceback": traceback}
            # On this thread, so waiting a moment for Sentry to capture the exception costs the app nothing.
            sentry_event_id = item.sentry.wait() if item.sentry is not None else None
            if sentry_event_id is not None:
                exception["sentry_event_id"] = sentry_event_id
            line["exception"] = exception
        if item.logs:
            line["logs"] = item.logs
        if item.spans:
            line["spans"] = [self._masked_span(span) for span in item.spans]
        if item.trace_id:
            line["trace_id"] = f"{item.trace_id:032x}"
        return json.dumps(line, ensure_ascii=False, separators=(",", ":"), default=str).encode() + b"\n"

    def _masked_span(self, span: dict[str, Any]) -> dict[str, Any]:
        """Span attributes carry URLs and may carry headers: the same masks apply to them."""
        attributes = {}
        for key, value in span.get("attributes", {}).items():
            if isinstance(value, str) and key in _URL_ATTRIBUTES and "?" in value:
                base, _, query = value.partition("?")
                value = base + "?" + masking.mask_query(query, self.mask_query)
            elif isinstance(value, str) and key in _QUERY_ATTRIBUTES:
                value = masking.mask_query(value, self.mask_query)
            elif key.startswith(_HEADER_ATTRIBUTE_PREFIXES) and self.mask_headers.search(
                key.rsplit(".", 1)[-1]
            ):
                value = masking.MASKED
            attributes[key] = value
        return {**span, "attributes": attributes}

    def _url(self, scope: dict[str, Any], headers: list[tuple[str, str]]) -> str:
        scheme = scope.get("scheme", "http")
        host = next((v for k, v in headers if k.lower() == "host"), None)
        if host is None:
            server = scope.get("server") or ("localhost", None)
            host = server[0] if server[1] in (None, 80, 443) else f"{server[0]}:{server[1]}"
        if _forwarded_https(headers):
            scheme = "https"
        path, root_path = scope.get("path", ""), scope.get("root_path", "")
        if root_path and not path.startswith(root_path):  # servers that keep root_path out of path
            path = root_path + path
        url = f"{scheme}://{host}{quote(path, safe=_PATH_SAFE)}"
        query = scope.get("query_string", b"").decode("latin-1")
        if query and self.config.log_query_params:
            url += "?" + masking.mask_query(query, self.mask_query)
        return url

    def _body(self, body: bytes | None, too_large: bool, callback_name: str, *args: Any) -> str | None:
        if too_large:
            return TOO_LARGE
        if body is None:
            return None
        callback = getattr(self.config, callback_name)
        if callback is not None:
            masked = self._call(callback_name, callback, *args, default=None)
            body = bytes(masked) if isinstance(masked, (bytes, bytearray)) else MASKED_BODY
        body = masking.mask_json_body(bytes(body), self.mask_body)
        return base64.b64encode(body).decode()

    def _call(self, name: str, callback: Any, *args: Any, default: Any) -> Any:
        try:
            return callback(*args)
        except Exception as exc:  # a user callback: its failure must not lose the item
            if name not in self._warned:
                self._warned.add(name)
                _logger.warning(
                    "apitally-otel: request logging %s raised %s: %s", name, type(exc).__name__, exc
                )
            return default


def response_info_of(item: RawLogItem) -> ResponseInfo:
    """What the user callbacks see of a captured response."""
    return ResponseInfo(
        item.status_code or 0,
        [(k.decode("latin-1"), v.decode("latin-1")) for k, v in item.response_headers],
        item.response_body,
        item.response_size,
        item.response_time or 0.0,
    )


def client_ip_of(scope: dict[str, Any]) -> str | None:
    """The client's address as the ASGI server reports it (after its proxy-header handling), if an IP.

    Test clients and Unix sockets report other names ("testclient"); those are left out.
    """
    client = scope.get("client")
    if not client:
        return None
    try:
        return str(ipaddress.ip_address(str(client[0])))
    except (ValueError, IndexError, TypeError):
        return None


def _forwarded_https(headers: list[tuple[str, str]]) -> bool:
    for name, value in headers:
        lowered = name.lower()
        if lowered == "x-forwarded-proto" and value.split(",")[0].strip().lower() == "https":
            return True
        if lowered == "forwarded" and re.search(r"(^|[;,\s])proto=\"?https\"?", value, re.IGNORECASE):
            return True
        if lowered == "x-forwarded-ssl" and value.strip().lower() == "on":
            return True
    return False


def _compact(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None and v != "" and v != []}
