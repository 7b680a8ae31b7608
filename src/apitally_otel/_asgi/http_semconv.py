"""The HTTP semantic conventions of a SERVER span, exactly as contrib's ASGI middleware applies them.

Contrib's ``OpenTelemetryMiddleware`` (opentelemetry-instrumentation-asgi) is the reference: the
span name, every request attribute in each ``OTEL_SEMCONV_STABILITY_OPT_IN`` mode (default/old,
``http``, ``http/dup``), header capture, the status attributes and the span status are the same
as its. They are built differently: in one pass over the request headers, bytes compared without
decoding, no metric attributes, the method and URL helpers only when they can change something.
Contrib's own helpers are used wherever they are cheap (or rarely needed), so that its rules
(which methods are known, which query parameters are redacted, what is a synthetic user agent)
stay the installed version's.

The OpenTelemetry variables are read once, when ``instrument_app`` is called
(:meth:`ServerSpanSettings.from_env`), not at import and not per request.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from opentelemetry.instrumentation._semconv import (
    _get_schema_url,
    _OpenTelemetrySemanticConventionStability,
    _OpenTelemetryStabilitySignalType,
    _report_new,
    _report_old,
    _StabilityMode,
)
from opentelemetry.instrumentation.asgi import collect_custom_headers_attributes, set_status_code
from opentelemetry.sdk.trace import Span as SdkSpan
from opentelemetry.trace import Span
from opentelemetry.trace.status import Status, StatusCode
from opentelemetry.util.http import (
    OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SANITIZE_FIELDS,
    OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST,
    OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_RESPONSE,
    PARAMS_TO_REDACT,
    ExcludeList,
    SanitizeValue,
    detect_synthetic_user_agent,
    get_custom_headers,
    normalise_request_header_name,
    normalise_response_header_name,
    parse_excluded_urls,
    redact_url,
    sanitize_method,
)

from apitally_otel._asgi.attributes import put_attribute
from apitally_otel._config import excluded_urls

_DEFAULT_SERVER = ("0.0.0.0", 80)  # what contrib assumes when the scope has no "server"
_MAX_CACHED = 64  # distinct methods / user agents remembered (more are computed each time)
_UNSET = Status(StatusCode.UNSET)
_ERROR = Status(StatusCode.ERROR)


def decode_header(value: bytes) -> str:
    """A header value as contrib decodes it: UTF-8, else the raw bytes' escapes."""
    try:
        return value.decode("utf-8")
    except ValueError:
        return value.decode("unicode_escape")


@dataclass(frozen=True)
class ServerSpanSettings:
    """The OpenTelemetry settings of the SERVER span, resolved once."""

    mode: _StabilityMode = _StabilityMode.DEFAULT
    excluded_urls: ExcludeList | None = None
    capture_request_headers: list[str] = field(default_factory=list)
    capture_response_headers: list[str] = field(default_factory=list)
    sanitize_fields: list[str] = field(default_factory=list)

    @property
    def schema_url(self) -> str:
        return _get_schema_url(self.mode)

    @classmethod
    def from_env(cls, framework: str = "STARLETTE") -> ServerSpanSettings:
        """``OTEL_SEMCONV_STABILITY_OPT_IN`` (process-wide, as every contrib instrumentation sees
        it), ``OTEL_PYTHON_<FRAMEWORK>_EXCLUDED_URLS`` else ``OTEL_PYTHON_STARLETTE_EXCLUDED_URLS``
        else ``OTEL_PYTHON_EXCLUDED_URLS``, and ``OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_*``."""
        _OpenTelemetrySemanticConventionStability._initialize()  # type: ignore[no-untyped-call]
        mode = _OpenTelemetrySemanticConventionStability._get_opentelemetry_stability_opt_in_mode(
            _OpenTelemetryStabilitySignalType.HTTP
        )
        excluded = excluded_urls(framework)
        return cls(
            mode=mode,
            excluded_urls=parse_excluded_urls(excluded) if excluded.strip() else None,
            capture_request_headers=get_custom_headers(
                OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST
            ),
            capture_response_headers=get_custom_headers(
                OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_RESPONSE
            ),
            sanitize_fields=get_custom_headers(OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SANITIZE_FIELDS),
        )


class HttpServerSemconv:
    """Span name, attributes and status of HTTP SERVER spans for one semconv mode."""

    def __init__(self, settings: ServerSpanSettings) -> None:
        self.mode = settings.mode
        self.old = _report_old(settings.mode)
        self.new = _report_new(settings.mode)
        self.excluded_urls = settings.excluded_urls
        self.request_headers = settings.capture_request_headers or None
        self.response_headers = settings.capture_response_headers or None
        self.sanitize = SanitizeValue(settings.sanitize_fields)
        self.status_keys = (("http.status_code",) if self.old else ()) + (
            ("http.response.status_code",) if self.new else ()
        )
        # method -> (normalized, span name prefix). sanitize_method reads the environment on each
        # call in contrib; here its answer is remembered (OTEL_PYTHON_INSTRUMENTATION_HTTP_CAPTURE_ALL_METHODS
        # is read for the first request of each method).
        self._methods: dict[str, tuple[str, str]] = {}
        self._agents: dict[bytes, tuple[str, str | None]] = {}  # User-Agent -> (decoded, synthetic type)
        self._hosts: dict[bytes, str] = {}  # Host header -> decoded
        self._connections: dict[tuple[Any, ...], tuple[str, dict[str, Any]]] = {}

    def _method(self, method: str) -> tuple[str, str]:
        names = self._methods.get(method)
        if names is None:
            normalized = sanitize_method(method).strip()
            for_name = sanitize_method(method.strip())
            names = (normalized, "HTTP" if for_name == "_OTHER" else for_name)
            if len(self._methods) < _MAX_CACHED:
                self._methods[method] = names
        return names

    def _agent(self, user_agent: bytes) -> tuple[str, str | None]:
        """The User-Agent decoded, and its synthetic type: a handful of distinct values, remembered."""
        agent = decode_header(user_agent)
        found = (agent, detect_synthetic_user_agent(agent))
        if len(self._agents) < _MAX_CACHED:
            self._agents[user_agent] = found
        return found

    def _host(self, value: bytes) -> str:
        host = decode_header(value)
        if len(self._hosts) < _MAX_CACHED:
            self._hosts[value] = host
        return host

    def request(self, scope: Mapping[str, Any]) -> tuple[str, dict[str, Any]] | None:
        """(span name, start attributes) of an HTTP request, or None when its URL is excluded.

        The attributes and their order are those of contrib's ``collect_request_attributes``."""
        host: str | None = None
        more_hosts: list[str] | None = None
        user_agent: bytes | None = None
        for name, value in scope.get("headers") or ():
            # ASGI servers give lower-case header names (Starlette's Headers relies on it too).
            if name == b"host":
                decoded = self._hosts.get(value) or self._host(value)
                if host is None:
                    host = decoded
                elif more_hosts is None:
                    more_hosts = [host, decoded]
                else:
                    more_hosts.append(decoded)
            elif name == b"user-agent" and user_agent is None:
                user_agent = value
        server = scope.get("server") or _DEFAULT_SERVER
        if type(server) is not tuple:
            server = tuple(server)
        scheme = scope.get("scheme")
        key = (scheme, server, scope.get("http_version"))
        connection = self._connections.get(key)
        if connection is None:
            connection = self._connection(*key)
        server_host, prefix = connection
        path = scope.get("path", "")
        url = ("http" if scheme is None else scheme) + "://" + (server_host if host is None else host) + path
        if self.excluded_urls is not None and self.excluded_urls.url_disabled(url):
            return None
        old, new = self.old, self.new
        query: Any = scope.get("query_string")
        if query:
            if isinstance(query, bytes):
                # contrib decodes strictly (and fails the request on invalid UTF-8); never raise here
                query = query.decode("utf8", "replace")
            url += "?" + unquote(query)
        result = prefix.copy()
        if path:
            if old:
                result["http.target"] = path
            if new:
                result["url.path"] = path
                if query:
                    result["url.query"] = query
        if old:
            result["http.url"] = _redacted(url)
        method = scope.get("method", "")
        span_method = ""
        if method:
            normalized, span_method = self._method(method)
            original = method.strip()
            if new and original != normalized and original:
                result["http.request.method_original"] = original
            if normalized:
                if old:
                    result["http.method"] = normalized
                if new:
                    result["http.request.method"] = normalized
        else:
            span_method = self._method("")[1]
        if host is not None and old:
            result["http.server_name"] = host if more_hosts is None else ",".join(more_hosts)
        if user_agent is not None:
            agent, synthetic = self._agents.get(user_agent) or self._agent(user_agent)
            if agent:
                if old:
                    result["http.user_agent"] = agent
                if new:
                    result["user_agent.original"] = agent
            if synthetic:
                result["user_agent.synthetic.type"] = synthetic
        client = scope.get("client")
        if client is not None:
            self._client(result, client)
        span_path = path.strip()
        if span_method and span_path:
            return f"{span_method} {span_path}", result
        return span_path or span_method, result

    def _connection(self, scheme: Any, server: tuple[Any, ...], flavor: Any) -> tuple[str, dict[str, Any]]:
        """The server's host as contrib writes it, and the attributes that depend on the connection
        only (scheme, server, HTTP version): computed once per distinct connection, in contrib's order."""
        port = server[1]
        str_port = str(port)
        server_host = server[0] + (":" + str_port if str_port != "80" else "")
        old, new = self.old, self.new
        result: dict[str, Any] = {}
        if scheme:
            if old:
                result["http.scheme"] = scheme
            if new:
                result["url.scheme"] = scheme
        if server_host:
            if old:
                result["http.host"] = server_host
            if new:
                result["server.address"] = server_host
        if port:
            try:
                int_port = int(port)
            except (TypeError, ValueError):
                pass
            else:
                if old:
                    result["net.host.port"] = int_port
                if new:
                    result["server.port"] = int_port
        if flavor:
            if old:
                result["http.flavor"] = flavor
            if new:
                result["network.protocol.version"] = flavor
        if len(self._connections) < _MAX_CACHED:
            self._connections[(scheme, server, flavor)] = (server_host, result)
        return server_host, result

    def _client(self, result: dict[str, Any], client: Any) -> None:
        ip, client_port = client[0], client[1]
        if ip:
            if self.old:
                result["net.peer.ip"] = ip
            if self.new:
                result["client.address"] = ip
        if client_port:
            try:
                int_port = int(client_port)
            except (TypeError, ValueError):
                return
            if self.old:
                result["net.peer.port"] = int_port
            if self.new:
                result["client.port"] = int_port

    def request_header_attributes(self, scope: Any) -> dict[str, list[str]]:
        assert self.request_headers is not None
        return collect_custom_headers_attributes(
            scope, self.sanitize, self.request_headers, normalise_request_header_name
        )

    def response_header_attributes(self, message: Any) -> dict[str, list[str]]:
        assert self.response_headers is not None
        return collect_custom_headers_attributes(
            message, self.sanitize, self.response_headers, normalise_response_header_name
        )

    def set_status(self, span: Span, status: Any) -> None:
        """The response status on the span, as contrib's ``set_status_code`` puts it."""
        if type(status) is not int or status < 0:
            set_status_code(span, status, None, self.mode)  # type: ignore[no-untyped-call]  # not an int
            return
        if not span.is_recording():
            return
        for key in self.status_keys:
            put_attribute(span, key, status)
        # http_status_to_status_code(status, server_span=True): 1xx-4xx are not errors of the server
        if 100 <= status <= 499:
            if not isinstance(span, SdkSpan):  # the SDK ignores an UNSET status (1.39 and later)
                span.set_status(_UNSET)
        else:
            if self.new:
                put_attribute(span, "error.type", str(status))
            span.set_status(_ERROR)


def _redacted(url: str) -> str:
    """``redact_url(url)``, without parsing the URL twice when nothing in it can be redacted."""
    if "@" in url:
        return redact_url(url)  # credentials in the authority
    query_at = url.find("?")
    if query_at < 0:
        return url
    query = url[query_at:]
    # parse_qs decodes %-escapes: only a literal name or an escape can produce a redacted one.
    if "%" in query or any(name in query for name in PARAMS_TO_REDACT):
        return redact_url(url)
    return url
