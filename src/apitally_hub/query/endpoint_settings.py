"""Settings per endpoint, as the JSON API and the dashboard's endpoint pages set them: an Apdex
threshold of its own (None: the app env's, :mod:`.app_settings`) and whether the endpoint is
excluded — left out of the hub's tables, charts, totals and alert rules, its data kept (a page or
query of that one endpoint still shows it). One validation for both (:func:`parse_endpoint_fields`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from apitally_hub.protocol.checker import FieldError
from apitally_hub.query.app_settings import APDEX_MS_RANGE, InvalidSetting, parse_apdex_ms
from apitally_hub.storage.base import Storage
from apitally_hub.storage.records import AppKey, EndpointSetting

FIELDS = ("method", "path", "apdex_ms", "excluded")
MAX_PATH = 2048


class InvalidEndpointSetting(ValueError):
    """Fields an endpoint's settings cannot have; ``errors`` names each (``["body", <field>]``)."""

    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__("; ".join(f"{e.loc[-1]}: {e.msg}" for e in errors))
        self.errors = errors

    def by_field(self) -> dict[str, str]:
        return {str(e.loc[-1]): e.msg for e in self.errors}


def parse_endpoint_fields(body: Any) -> dict[str, Any]:
    """``{"method", "path", "apdex_ms"?, "excluded"?}`` checked: ``apdex_ms`` a whole number of
    milliseconds in :data:`~.app_settings.APDEX_MS_RANGE` (also as text, from a form), or null or
    ``""`` (the app env's); ``excluded`` a boolean. Fields left out are left as they are."""
    if not isinstance(body, Mapping):
        raise InvalidEndpointSetting([FieldError(("body",), "Should be a JSON object", "model_type")])
    errors = [
        FieldError(("body", str(key)), "Unknown field", "extra_forbidden")
        for key in body
        if key not in FIELDS
    ]
    fields: dict[str, Any] = {}
    method = body.get("method")
    if not isinstance(method, str) or not method.isascii() or not method.isalpha() or len(method) > 16:
        errors.append(FieldError(("body", "method"), "Should be an HTTP method such as GET", "string"))
    else:
        fields["method"] = method.upper()
    path = body.get("path")
    if (
        not isinstance(path, str)
        or not path.startswith("/")
        or len(path) > MAX_PATH
        or not path.isprintable()
    ):
        errors.append(FieldError(("body", "path"), "Should be an endpoint's path, starting with /", "string"))
    else:
        fields["path"] = path
    if "apdex_ms" in body:
        raw = body["apdex_ms"]
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            fields["apdex_ms"] = None
        elif isinstance(raw, bool) or not isinstance(raw, (int, str)):
            low, high = APDEX_MS_RANGE
            errors.append(
                FieldError(
                    ("body", "apdex_ms"),
                    f"Should be whole milliseconds from {low} to {high}, or null",
                    "int_type",
                )
            )
        else:
            try:
                fields["apdex_ms"] = parse_apdex_ms(str(raw))
            except InvalidSetting as exc:
                errors.append(FieldError(("body", "apdex_ms"), str(exc), "int_range"))
    if "excluded" in body:
        if not isinstance(body["excluded"], bool):
            errors.append(FieldError(("body", "excluded"), "Should be true or false", "bool_type"))
        else:
            fields["excluded"] = body["excluded"]
    if errors:
        raise InvalidEndpointSetting(errors)
    return fields


def settings_by_endpoint(storage: Storage, app: AppKey) -> dict[tuple[str, str], EndpointSetting]:
    return {(s.method, s.path): s for s in storage.endpoint_settings(app)}


def write_endpoint_setting(storage: Storage, app: AppKey, body: Any, *, now: float) -> EndpointSetting:
    """Validate ``body`` and store the endpoint's settings (fields left out keep their values);
    raises :class:`InvalidEndpointSetting`. Returns the endpoint's settings now."""
    fields = parse_endpoint_fields(body)
    key = (fields["method"], fields["path"])
    current = settings_by_endpoint(storage, app).get(key) or EndpointSetting(*key, None, False, now)
    setting = EndpointSetting(
        *key,
        fields.get("apdex_ms", current.apdex_ms),
        fields.get("excluded", current.excluded),
        now,
    )
    storage.put_endpoint_setting(app, setting)
    return setting


def setting_entry(setting: EndpointSetting) -> dict[str, Any]:
    return {
        "method": setting.method,
        "path": setting.path,
        "apdex_ms": setting.apdex_ms,
        "excluded": setting.excluded,
        "updated_at": setting.updated_at,
    }
