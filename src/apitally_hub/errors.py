"""The hub's error type and its JSON rendering (``{"detail": ...}``, FastAPI style)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from apitally_hub.protocol.checker import FieldError, Loc
from apitally_hub.storage.base import StoreUnavailable

_logger = logging.getLogger(__name__)

STORE_RETRY_AFTER = 2
"""Seconds a client is asked to wait when the store is unreachable (clients retry 503)."""


class HubError(Exception):
    """A request the hub refuses, with the status code and the ``detail`` to send back."""

    def __init__(self, status_code: int, detail: Any, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(status_code, detail)
        self.status_code = status_code
        self.detail = detail
        self.headers = dict(headers or {})


def unprocessable(errors: Sequence[FieldError]) -> HubError:
    return HubError(422, [error.as_dict() for error in errors])


def field_error(loc: Loc, msg: str, type_: str, status_code: int = 422) -> HubError:
    return HubError(status_code, [FieldError(loc, msg, type_).as_dict()])


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
