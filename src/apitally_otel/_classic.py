"""The classic ``apitally`` client's middleware API (0.25.x), over ``instrument_app``'s pipeline.

``app.add_middleware(ApitallyMiddleware, client_id=..., env=...)``, as the classic setup guide
shows it, with its consumer and request-logging arguments. Underneath it is the same lean
SERVER-span middleware, span processor, metric reader and lifecycle as
:func:`~apitally_otel.instrument_app` (:func:`~apitally_otel.instrumentation.build_pipeline`):

- Starlette builds the middleware stack lazily, and again whenever it is asked to: each build
  constructs a new :class:`ApitallyMiddleware`. The pipeline is set up once per app, keyed on the
  app's router (the innermost app of the stack, the same object in every build); later builds
  reuse it. An invalid configuration is logged once and the middleware passes requests through.
- Start-up (endpoints, OpenAPI) and the final sync ride on the app's lifespan, as with
  ``instrument_app``.
- Where a span is already current when a request reaches the middleware (the app is
  instrumented by ``FastAPIInstrumentor``, ``StarletteInstrumentor`` or contrib's middleware
  outside this one), only the capture runs, inside that span: no second SERVER span. (Contrib's
  middleware inside this one makes an INTERNAL span, as it does inside any span.)

The classic client's dict-shaped request-logging callbacks are adapted to ours: they are handed
the same ``request`` and ``response`` dicts, built from the Starlette ``Request`` and the
:class:`~apitally_otel.ResponseInfo` our callbacks get.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import time
import warnings
import weakref
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypedDict

import httpx
from opentelemetry import trace
from opentelemetry.trace import INVALID_SPAN
from starlette.requests import Request
from starlette.routing import Router
from starlette.types import ASGIApp, Receive, Scope, Send

from apitally_otel import auto
from apitally_otel._asgi.capture import Capture, CaptureMiddleware
from apitally_otel._asgi.http_semconv import ServerSpanSettings
from apitally_otel._asgi.server_span import ServerSpanMiddleware, quiet_fastapi_telemetry
from apitally_otel._config import is_disabled
from apitally_otel._consumers import Consumer
from apitally_otel._request_log.log_item import CONSUMER_KEY, ROUTE_KEY
from apitally_otel.instrumentation import Instrumentation, build_pipeline
from apitally_otel.request_logging import RequestLoggingConfig as _OurRequestLoggingConfig
from apitally_otel.request_logging import ResponseInfo

if TYPE_CHECKING:
    from typing_extensions import Unpack

_logger = logging.getLogger(__name__)

ApitallyConsumer = Consumer
"""The classic ``ApitallyConsumer(identifier, name=None, group=None)``: our :class:`Consumer`."""

ClassicRequestDict = dict[str, Any]
ClassicResponseDict = dict[str, Any]
MaskRequestBodyCallback = Callable[[ClassicRequestDict], "bytes | None"]
MaskResponseBodyCallback = Callable[[ClassicRequestDict, ClassicResponseDict], "bytes | None"]
ExcludeCallback = Callable[[ClassicRequestDict, ClassicResponseDict], bool]
ClassicConsumerCallback = Callable[[Request], Any]


class RequestLoggingKwargs(TypedDict, total=False):
    """The classic client's flat request-logging keyword arguments of ``ApitallyMiddleware``."""

    enable_request_logging: bool
    log_query_params: bool
    log_request_headers: bool
    log_request_body: bool
    log_response_headers: bool
    log_response_body: bool
    log_exception: bool
    capture_logs: bool
    capture_traces: bool
    mask_query_params: list[str]
    mask_headers: list[str]
    mask_body_fields: list[str]
    mask_request_body_callback: MaskRequestBodyCallback | None
    mask_response_body_callback: MaskResponseBodyCallback | None
    exclude_paths: list[str]
    exclude_callback: ExcludeCallback | None


_FLAT_KWARGS = frozenset(RequestLoggingKwargs.__annotations__)


class RequestLoggingConfig(_OurRequestLoggingConfig):
    """:class:`apitally_otel.RequestLoggingConfig`, built from the classic client's keywords.

    The classic callbacks (``mask_request_body_callback(request)``,
    ``mask_response_body_callback(request, response)``, ``exclude_callback(request, response)``)
    receive the classic ``request`` and ``response`` dicts.
    """

    def __init__(
        self,
        enabled: bool = False,
        log_query_params: bool = True,
        log_request_headers: bool = False,
        log_request_body: bool = False,
        log_response_headers: bool = True,
        log_response_body: bool = False,
        log_exception: bool = True,
        capture_logs: bool = False,
        capture_traces: bool = False,
        mask_query_params: Sequence[str] = (),
        mask_headers: Sequence[str] = (),
        mask_body_fields: Sequence[str] = (),
        mask_request_body_callback: MaskRequestBodyCallback | None = None,
        mask_response_body_callback: MaskResponseBodyCallback | None = None,
        exclude_paths: Sequence[str] = (),
        exclude_callback: ExcludeCallback | None = None,
    ) -> None:
        super().__init__(
            enabled=enabled,
            log_query_params=log_query_params,
            log_request_headers=log_request_headers,
            log_request_body=log_request_body,
            log_response_headers=log_response_headers,
            log_response_body=log_response_body,
            log_exception=log_exception,
            capture_logs=capture_logs,
            capture_traces=capture_traces,
            mask_query_params=tuple(mask_query_params or ()),
            mask_headers=tuple(mask_headers or ()),
            mask_body_fields=tuple(mask_body_fields or ()),
            exclude_paths=tuple(exclude_paths or ()),
            mask_request_body=_adapt_mask_request(mask_request_body_callback),
            mask_response_body=_adapt_mask_response(mask_response_body_callback),
            exclude_callback=_adapt_exclude(exclude_callback),
        )

    @classmethod
    def from_kwargs(cls, kwargs: RequestLoggingKwargs) -> RequestLoggingConfig:
        """From ``ApitallyMiddleware``'s flat keywords (``enable_request_logging`` is ``enabled``)."""
        options: dict[str, Any] = {k: v for k, v in kwargs.items() if k != "enable_request_logging"}
        return cls(enabled=bool(kwargs.get("enable_request_logging", False)), **options)


def classic_request_dict(request: Request) -> ClassicRequestDict:
    """The classic client's ``request`` dict, from the request a callback of ours is given."""
    scope = request.scope
    size_header = request.headers.get("content-length")
    return {
        "timestamp": time.time(),
        "method": request.method,
        "path": scope.get(ROUTE_KEY),
        "url": str(request.url),
        "headers": list(request.headers.items()),
        "size": int(size_header) if size_header is not None and size_header.isdigit() else None,
        "consumer": scope.get(CONSUMER_KEY),
        "body": getattr(request, "_body", None),  # set by the request logger when it captured it
    }


def classic_response_dict(response: ResponseInfo) -> ClassicResponseDict:
    """The classic client's ``response`` dict, from the :class:`ResponseInfo` a callback is given."""
    return {
        "status_code": response.status_code,
        "response_time": response.duration,
        "headers": list(response.headers),
        "size": response.size,
        "body": response.body,
    }


def _adapt_mask_request(callback: MaskRequestBodyCallback | None) -> Callable[[Request], bytes | None] | None:
    if callback is None:
        return None

    def mask_request_body(request: Request) -> bytes | None:
        return callback(classic_request_dict(request))

    return mask_request_body


def _adapt_mask_response(
    callback: MaskResponseBodyCallback | None,
) -> Callable[[Request, ResponseInfo], bytes | None] | None:
    if callback is None:
        return None

    def mask_response_body(request: Request, response: ResponseInfo) -> bytes | None:
        return callback(classic_request_dict(request), classic_response_dict(response))

    return mask_response_body


def _adapt_exclude(callback: ExcludeCallback | None) -> Callable[[Request, ResponseInfo], bool] | None:
    if callback is None:
        return None

    def exclude(request: Request, response: ResponseInfo) -> bool:
        return bool(callback(classic_request_dict(request), classic_response_dict(response)))

    return exclude


def _classic_consumer_callback(callback: ClassicConsumerCallback) -> ClassicConsumerCallback:
    """The classic order: ``request.state.apitally_consumer`` first, the callback only without it."""

    def consumer_callback(request: Request) -> Any:
        state = request.scope.get("state")
        if state and state.get("apitally_consumer"):
            return state["apitally_consumer"]
        return callback(request)

    return consumer_callback


def set_consumer(
    request: Request, identifier: str, name: str | None = None, group: str | None = None
) -> None:
    """The classic ``set_consumer(request, identifier, name=None, group=None)``: sets
    ``request.state.apitally_consumer``, which the middleware reads when the request is done."""
    request.state.apitally_consumer = ApitallyConsumer(identifier, name=name, group=group)


class _Setup:
    """What one app's middleware runs, whichever build of the stack holds it."""

    __slots__ = ("capture", "instrumentation", "settings")

    def __init__(self, built: tuple[Instrumentation, Capture] | None, settings: ServerSpanSettings) -> None:
        self.instrumentation = built[0] if built is not None else None
        self.capture = built[1] if built is not None else None
        self.settings = settings


_setups: dict[int, _Setup] = {}
"""By ``id()`` of the app's router (routers compare by value, so are unhashable), while it lives."""


def _setup_for(router: Any) -> _Setup | None:
    return _setups.get(id(router))


def _remember(router: Any, setup: _Setup) -> None:
    key = id(router)
    _setups[key] = setup
    # An object that takes no weak reference keeps its entry for the process's life.
    with contextlib.suppress(TypeError):
        weakref.finalize(router, _setups.pop, key, None)


def _router_of(app: ASGIApp) -> Any:
    """The innermost app of the stack (the router): the same object in every build of it."""
    current: Any = app
    for _ in range(100):  # middleware chains are short; a cycle must not hang the app
        if isinstance(current, Router):
            return current
        inner = getattr(current, "app", None)
        if inner is None or inspect.ismethod(inner):
            return current
        current = inner
    return current


def _is_fastapi_router(router: Any) -> bool:
    return any(c.__module__.startswith("fastapi") for c in type(router).__mro__)


class ApitallyMiddleware:
    """Monitoring for a Starlette or FastAPI app, with the classic ``apitally`` client's arguments.

    ``app.add_middleware(ApitallyMiddleware, client_id="<uuid>", env="prod")``, anywhere in the
    stack (added last, it wraps the other middleware). ``consumer_callback(request)`` returns a
    string, an :class:`ApitallyConsumer` or None (it may be async); ``request.state.apitally_consumer``
    and :func:`set_consumer` take precedence over it. Request logging: ``enable_request_logging=True``
    and the other flat keywords, or ``request_logging_config=RequestLoggingConfig(...)``
    (deprecated, as in the classic client). ``capture_client_disconnects`` is accepted and ignored.
    """

    def __init__(
        self,
        app: ASGIApp,
        client_id: str,
        env: str = "dev",
        app_version: str | None = None,
        openapi_url: str | None = "/openapi.json",
        consumer_callback: ClassicConsumerCallback | None = None,
        capture_client_disconnects: bool = False,
        proxy: str | httpx.Proxy | None = None,
        identify_consumer_callback: ClassicConsumerCallback | None = None,
        request_logging_config: _OurRequestLoggingConfig | None = None,
        **kwargs: Unpack[RequestLoggingKwargs],
    ) -> None:
        if identify_consumer_callback is not None:
            warnings.warn(
                "The 'identify_consumer_callback' parameter is deprecated, use 'consumer_callback' instead.",
                DeprecationWarning,
                stacklevel=2,
            )
        if request_logging_config is not None:
            warnings.warn(
                "The 'request_logging_config' parameter is deprecated, use keyword arguments instead.",
                DeprecationWarning,
                stacklevel=2,
            )
        self.app = app
        router = _router_of(app)
        setup = _setup_for(router)
        if setup is None:
            setup = self._set_up(
                router,
                client_id=client_id,
                env=env,
                app_version=app_version,
                openapi_url=openapi_url,
                consumer_callback=consumer_callback or identify_consumer_callback,
                capture_client_disconnects=capture_client_disconnects,
                proxy=proxy,
                request_logging_config=request_logging_config,
                kwargs=dict(kwargs),
            )
            _remember(router, setup)
        self.instrumentation = setup.instrumentation
        self._traced: ASGIApp = app
        self._capture_only: ASGIApp = app
        self._fastapi_quieted = True  # disabled: FastAPI's own telemetry is left alone
        if setup.instrumentation is not None and setup.capture is not None:
            self._traced = ServerSpanMiddleware(
                app,
                capture=setup.capture,
                tracer_provider=setup.instrumentation.tracer_provider,
                settings=setup.settings,
            )
            self._capture_only = CaptureMiddleware(app, capture=setup.capture)
            self._fastapi_quieted = False

    @staticmethod
    def _set_up(
        router: Any,
        *,
        client_id: str,
        env: str,
        app_version: str | None,
        openapi_url: str | None,
        consumer_callback: ClassicConsumerCallback | None,
        capture_client_disconnects: bool,
        proxy: str | httpx.Proxy | None,
        request_logging_config: _OurRequestLoggingConfig | None,
        kwargs: dict[str, Any],
    ) -> _Setup:
        settings = ServerSpanSettings.from_env("FASTAPI" if _is_fastapi_router(router) else "STARLETTE")
        if is_disabled(None):
            _logger.info("apitally-otel is disabled (APITALLY_DISABLED)")
            return _Setup(None, settings)
        if auto.active_reader() is not None:
            _logger.info(
                "apitally-otel: already set up by opentelemetry-instrument; ApitallyMiddleware passes through"
            )
            return _Setup(None, settings)
        unknown = sorted(set(kwargs) - _FLAT_KWARGS)
        if unknown:
            _logger.warning(
                "apitally-otel: ApitallyMiddleware ignores unknown keyword arguments: %s", ", ".join(unknown)
            )
        if capture_client_disconnects:
            _logger.warning(
                "apitally-otel: capture_client_disconnects is not supported and is ignored (no 499 "
                "status for requests whose client went away)"
            )
        if request_logging_config is None and kwargs:
            flat = {k: v for k, v in kwargs.items() if k in _FLAT_KWARGS}
            request_logging_config = RequestLoggingConfig.from_kwargs(flat)  # type: ignore[arg-type]
        callback = _classic_consumer_callback(consumer_callback) if consumer_callback is not None else None
        built = build_pipeline(
            client_id=client_id,
            env=env,
            consumer_callback=callback,
            app_version=app_version,
            openapi_url=openapi_url,
            request_logging=request_logging_config,
            proxy=_proxy_url(proxy),
        )
        return _Setup(built, settings)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self._fastapi_quieted and scope["type"] in ("lifespan", "http"):
            self._fastapi_quieted = True
            quiet_fastapi_telemetry(scope.get("app"))
        if scope["type"] == "http" and trace.get_current_span() is not INVALID_SPAN:
            # The request is traced outside of this middleware already (an instrumented app).
            await self._capture_only(scope, receive, send)
            return
        await self._traced(scope, receive, send)


def _proxy_url(proxy: str | httpx.Proxy | None) -> str | None:
    """The classic ``proxy=`` was a URL string or an ``httpx.Proxy``; ours is a URL string."""
    if proxy is None or isinstance(proxy, str):
        return proxy
    return str(proxy.url)
