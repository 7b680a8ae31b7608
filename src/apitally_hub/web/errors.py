"""How the hub's errors are answered: ``{"detail": ...}`` JSON (FastAPI style) for a
:class:`~apitally_hub.errors.HubError` or Starlette's ``HTTPException``, and 503 with
``Retry-After`` while the store is unavailable."""

from __future__ import annotations

import logging

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from apitally_hub.errors import HubError
from apitally_hub.storage.records import StoreUnavailable

_logger = logging.getLogger(__name__)

STORE_RETRY_AFTER = 2
"""Seconds a client is asked to wait when the store is unreachable (clients retry 503)."""


async def hub_error_handler(request: Request, exc: Exception) -> Response:
    if not isinstance(exc, HubError):  # pragma: no cover - registered for HubError only
        raise exc
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)


async def http_exception_handler(request: Request, exc: Exception) -> Response:
    if not isinstance(exc, HTTPException):  # pragma: no cover - registered for HTTPException only
        raise exc
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)


async def store_unavailable_handler(request: Request, exc: Exception) -> Response:
    """503 with ``Retry-After``: nothing of the request is committed, so the client sends it again."""
    if not isinstance(exc, StoreUnavailable):  # pragma: no cover - registered for StoreUnavailable only
        raise exc
    _logger.warning("Answering %s with 503: the store is unavailable (%s)", request.url.path, exc)
    return JSONResponse(
        {"detail": "The hub's store is unavailable; retry later"},
        status_code=503,
        headers={"Retry-After": str(STORE_RETRY_AFTER)},
    )
