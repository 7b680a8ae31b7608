"""Request logging options (hub-protocol §5.1): what is captured for each request, and what never is.

Disabled by default. ``RequestLoggingConfig.from_env()`` reads the same options from
``APITALLY_REQUEST_LOGGING_*`` environment variables, for zero-code use::

    export APITALLY_REQUEST_LOGGING_ENABLED=true
    export APITALLY_REQUEST_LOGGING_LOG_REQUEST_BODY=true
    export APITALLY_REQUEST_LOGGING_EXCLUDE_PATHS='^/internal/,/admin$'   # comma-separated regexes
    export APITALLY_REQUEST_LOGGING_MASK_HEADERS='x-tenant-secret'        # added to the defaults
    export APITALLY_REQUEST_LOGGING_SAMPLE_RATE=0.1                       # log one request in ten

User patterns are always **added** to the default masks and exclusions, never replace them.

Sampling (``sample_rate``, ``sample_on_request``, ``sample_on_response``) decides which requests
are logged; every request is still counted in the metrics. See
:mod:`apitally_otel._request_log.sampling`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields

from starlette.requests import Request

from apitally_otel._config import OptionKind, prefixed_options

_PREFIX = "APITALLY_REQUEST_LOGGING_"
CALLBACKS = (
    "mask_request_body",
    "mask_response_body",
    "exclude_callback",
    "sample_on_request",
    "sample_on_response",
)


def _kind(annotation: object) -> OptionKind:
    # Annotations are strings here (``from __future__ import annotations``).
    return "bool" if annotation == "bool" else "float" if annotation == "float" else "list"


@dataclass(frozen=True)
class ResponseInfo:
    """What ``exclude_callback``, ``mask_response_body`` and ``sample_on_response`` see of the response."""

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
    sample_rate: float = 1.0
    """The share of requests logged, 0 to 1, decided per trace id (see
    :mod:`apitally_otel._request_log.sampling`)."""
    sample_on_request: Callable[[Request], bool | None] | None = field(default=None, compare=False)
    """``True`` logs the request, ``False`` drops it at once (nothing is captured), ``None`` lets
    ``sample_rate`` decide."""
    sample_on_response: Callable[[Request, ResponseInfo], bool | None] | None = field(
        default=None, compare=False
    )
    """Has the last word, once the response is known: ``True`` keeps, ``False`` drops, ``None``
    keeps the decision made at the request. With it, every request not dropped by
    ``sample_on_request`` is captured in full until its response is known."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> RequestLoggingConfig:
        """The options set as ``APITALLY_REQUEST_LOGGING_<OPTION>`` (or ``OTEL_APITALLY_...``);
        ``environ`` instead of the process environment if given. Callbacks cannot come from it."""
        names = [(f.name, _kind(f.type)) for f in fields(cls) if f.name not in CALLBACKS]
        return cls(**prefixed_options(_PREFIX, names, environ))  # type: ignore[arg-type]
