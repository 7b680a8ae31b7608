"""The hub's error type: a request it refuses, with the status code and the ``detail`` to send
back (rendered as ``{"detail": ...}``, FastAPI style, by :mod:`apitally_hub.web.errors`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from apitally_hub.protocol.checker import FieldError, Loc


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
