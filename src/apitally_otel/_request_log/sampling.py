"""Which requests are request-logged: the sample rate, an incoming sampled trace, user callbacks.

Metrics count every request; this only decides which ones get a log item. The decision is made
when the request starts (:meth:`LogSampler.on_request`, from ``Capture.start``), so that a dropped
request captures nothing — no copy of the scope, no body chunks, no log records, no spans. In
order:

1. ``sample_on_request(request)``: True keeps, False drops for good, None goes on;
2. ``sample_rate``: kept when the low 64 bits of the trace id are below ``round(rate * 2**64)`` —
   the rule of OpenTelemetry's ``TraceIdRatioBased`` sampler, so an app that samples its traces at
   the same rate logs exactly the requests whose traces it keeps (each kept item has its spans). A
   request without a trace id (not traced: an excluded URL, suppressed instrumentation) draws at
   random;
3. else an incoming trace context marked sampled keeps the request, as a parent-based sampler
   would: the SERVER span's remote parent is sampled (W3C ``traceparent`` flags ``01``, or what
   your propagators read), or — for a span the app's own sampler did not record — the request's
   ``traceparent`` header says ``01`` for this trace id.

``sample_on_response(request, response)`` then has the last word: True keeps, False drops, None
keeps the decision. With it, a request that steps 2-3 drop must still be captured in full — the
request body as it streams in, the response headers and body, log records, spans — since its
response may yet keep it; when the answer is no, the capture is discarded, never queued or
written. So a response callback makes each request cost, on the request path, what a logged one
costs; the request logger's thread still only works for the kept ones.

A callback that raises (or returns an awaitable) keeps the decision made without it, and is
reported once.
"""

from __future__ import annotations

import enum
import inspect
import logging
import random
from collections.abc import Callable
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace.sampling import TraceIdRatioBased
from starlette.requests import Request
from starlette.types import Scope

from apitally_otel._config import resolve_sample_rate
from apitally_otel._request_log.log_capture import RawLogItem
from apitally_otel._request_log.log_item import response_info_of
from apitally_otel.request_logging import RequestLoggingConfig

_logger = logging.getLogger(__name__)

_LOW_64_BITS = TraceIdRatioBased.TRACE_ID_LIMIT
_NO_PARENT_ATTRIBUTE = object()


class Decision(enum.Enum):
    KEEP = "keep"
    DROP = "drop"  # nothing is captured
    UNLESS_RESPONSE = "unless-response"  # captured; kept only if sample_on_response says so


KEEP, DROP, UNLESS_RESPONSE = Decision.KEEP, Decision.DROP, Decision.UNLESS_RESPONSE


class LogSampler:
    def __init__(self, config: RequestLoggingConfig, excluded_path: Callable[[str], bool]) -> None:
        self.rate = resolve_sample_rate(config.sample_rate)
        self._bound = TraceIdRatioBased.get_bound_for_rate(self.rate)
        self._excluded_path = excluded_path
        self.request_callback = config.sample_on_request
        self.response_callback = config.sample_on_response
        # Neither callback: a request the rate drops is not even checked against the exclusions.
        self._plain = self.request_callback is None and self.response_callback is None
        self._warned: set[str] = set()

    def on_request(self, scope: Scope, span: trace.Span) -> Decision:
        """The decision at the start of the request, whose SERVER span (or invalid span) is ``span``."""
        if self._plain:
            if self.rate < 1.0 and not self._by_trace(scope, span):
                return DROP
            return DROP if self._excluded_path(scope["path"]) else KEEP
        if self._excluded_path(scope["path"]):
            return DROP
        if self.request_callback is not None:
            answer = self._ask("sample_on_request", self.request_callback, Request(scope))
            if answer is not None:
                return KEEP if answer else DROP
        if self.rate >= 1.0 or self._by_trace(scope, span):
            return KEEP
        return UNLESS_RESPONSE if self.response_callback is not None else DROP

    def on_response(self, scope: Scope, item: RawLogItem, sampled: bool) -> bool:
        """Whether a captured request is logged, once its response is known."""
        if self.response_callback is None:
            return sampled
        response = response_info_of(item)
        answer = self._ask("sample_on_response", self.response_callback, Request(scope), response)
        return sampled if answer is None else answer

    def _by_trace(self, scope: Scope, span: trace.Span) -> bool:
        trace_id = span.get_span_context().trace_id
        if not trace_id:
            return random.random() < self.rate
        if trace_id & _LOW_64_BITS < self._bound:
            return True
        return _parent_sampled(scope, span, trace_id)

    def _ask(self, name: str, callback: Callable[..., Any], *args: Any) -> bool | None:
        try:
            answer = callback(*args)
        except Exception as exc:  # a user callback: the decision made without it stands
            self._warn_once(name, f"raised {type(exc).__name__}: {str(exc)[:200]}")
            return None
        if inspect.isawaitable(answer):
            close = getattr(answer, "close", None)
            if close is not None:
                close()  # no "never awaited" warning
            self._warn_once(name, "returned an awaitable (it must be a plain function)")
            return None
        return None if answer is None else bool(answer)

    def _warn_once(self, name: str, what: str) -> None:
        if name not in self._warned:
            self._warned.add(name)
            _logger.warning("apitally-otel: request logging %s %s; using the default decision", name, what)


def _parent_sampled(scope: Scope, span: trace.Span, trace_id: int) -> bool:
    parent: Any = getattr(span, "parent", _NO_PARENT_ATTRIBUTE)
    if parent is not _NO_PARENT_ATTRIBUTE:  # an SDK span: its parent as the propagators read it
        return parent is not None and bool(parent.is_remote) and bool(parent.trace_flags.sampled)
    # Not recorded (the app's sampler dropped it): only the W3C header can tell.
    for name, value in scope.get("headers", ()):
        if name == b"traceparent":
            return _traceparent_sampled(value, trace_id)
    return False


def _traceparent_sampled(value: bytes, trace_id: int) -> bool:
    """Whether a ``traceparent`` (``00-<trace id>-<parent id>-<flags>``) is sampled, for this trace."""
    parts = value.strip().split(b"-")
    if len(parts) < 4 or len(parts[1]) != 32 or len(parts[3]) < 2:
        return False
    try:
        return int(parts[1], 16) == trace_id and int(parts[3][:2], 16) & 1 == 1
    except ValueError:
        return False
