"""Request logging options (hub-protocol §5.1): what is captured for each request, and what never is.

Disabled by default. ``RequestLoggingConfig.from_env()`` reads the same options from
``APITALLY_REQUEST_LOGGING_*`` environment variables, for zero-code use::

    export APITALLY_REQUEST_LOGGING_ENABLED=true
    export APITALLY_REQUEST_LOGGING_LOG_REQUEST_BODY=true
    export APITALLY_REQUEST_LOGGING_EXCLUDE_PATHS='^/internal/,/admin$'   # comma-separated regexes
    export APITALLY_REQUEST_LOGGING_MASK_HEADERS='x-tenant-secret'        # added to the defaults

User patterns are always **added** to the default masks and exclusions, never replace them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields

from starlette.requests import Request

from apitally_otel._config import prefixed_options

_PREFIX = "APITALLY_REQUEST_LOGGING_"
_CALLBACKS = ("mask_request_body", "mask_response_body", "exclude_callback")


@dataclass(frozen=True)
class ResponseInfo:
    """What ``exclude_callback`` and ``mask_response_body`` get to see of the response."""

    status_code: int
    headers: list[tuple[str, str]]
    body: bytes | None
    size: int | None
    duration: float


@dataclass(frozen=True)
class RequestLoggingConfig:
    enabled: bool = False
    log_query_params: bool = True
    log_request_headers: bool = False
    log_request_body: bool = False
    log_response_headers: bool = True
    log_response_body: bool = False
    log_exception: bool = True
    capture_logs: bool = False
    capture_traces: bool = False
    mask_query_params: Sequence[str] = ()
    mask_headers: Sequence[str] = ()
    mask_body_fields: Sequence[str] = ()
    exclude_paths: Sequence[str] = ()
    mask_request_body: Callable[[Request], bytes | None] | None = field(default=None, compare=False)
    mask_response_body: Callable[[Request, ResponseInfo], bytes | None] | None = field(
        default=None, compare=False
    )
    exclude_callback: Callable[[Request, ResponseInfo], bool] | None = field(default=None, compare=False)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> RequestLoggingConfig:
        """The options set as ``APITALLY_REQUEST_LOGGING_<OPTION>`` (or ``OTEL_APITALLY_...``);
        ``environ`` instead of the process environment if given. Callbacks cannot come from it."""
        names = [(f.name, f.type == "bool") for f in fields(cls) if f.name not in _CALLBACKS]
        return cls(**prefixed_options(_PREFIX, names, environ))  # type: ignore[arg-type]
