"""A consumer's name and group as the dashboard sets them: one validation for the JSON API and the
dashboard's form (:func:`parse_consumer_fields`), and setting or resetting them
(:meth:`~apitally_hub.storage.base.Storage.set_consumer_overrides`).

A name or group set here wins over the client's until it is changed or reset here; an empty or
null field sets none (the client's value holds).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from apitally_hub.protocol.checker import FieldError
from apitally_hub.protocol.messages import MAX_NAME
from apitally_hub.storage.base import Storage
from apitally_hub.storage.records import AppKey, ConsumerInfo

FIELDS = ("name", "group")


class InvalidConsumer(ValueError):
    """Fields a consumer cannot have; ``errors`` names each (``loc`` ``["body", <field>]``)."""

    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__("; ".join(f"{e.loc[-1]}: {e.msg}" for e in errors))
        self.errors = errors

    def by_field(self) -> dict[str, str]:
        """Field name -> message (the dashboard's form shows each next to its field)."""
        return {str(e.loc[-1]): e.msg for e in self.errors}


def parse_consumer_fields(body: Any) -> dict[str, str | None]:
    """``{"name": …, "group": …}`` checked: each a string of at most :data:`MAX_NAME` printable
    characters (no control characters), stripped; empty, null or left out: None (none set).
    Raises :class:`InvalidConsumer`."""
    if not isinstance(body, Mapping):
        raise InvalidConsumer([FieldError(("body",), "Should be a JSON object", "model_type")])
    errors = [
        FieldError(("body", str(key)), "Unknown field", "extra_forbidden")
        for key in body
        if key not in FIELDS
    ]
    fields: dict[str, str | None] = {}
    for key in FIELDS:
        value = body.get(key)
        if value is None:
            fields[key] = None
        elif not isinstance(value, str):
            errors.append(FieldError(("body", key), "Should be a string or null", "string_type"))
        elif len(value.strip()) > MAX_NAME or not value.strip().isprintable():
            errors.append(
                FieldError(
                    ("body", key),
                    f"Should be printable text of at most {MAX_NAME} characters, without control characters",
                    "string",
                )
            )
        else:
            fields[key] = value.strip() or None
    if errors:
        raise InvalidConsumer(errors)
    return fields


def set_consumer(
    storage: Storage, app: AppKey, identifier: str, body: Any, *, now: float
) -> ConsumerInfo | None:
    """Validate ``body`` and store the consumer's name and group; None: no such consumer."""
    fields = parse_consumer_fields(body)
    return storage.set_consumer_overrides(
        app, identifier, name=fields["name"], group=fields["group"], now=now
    )


def reset_consumer(storage: Storage, app: AppKey, identifier: str, *, now: float) -> ConsumerInfo | None:
    """Back to the client's name and group; None: no such consumer."""
    return storage.set_consumer_overrides(app, identifier, name=None, group=None, now=now)


def consumer_entry(info: ConsumerInfo) -> dict[str, Any]:
    """The consumer's names as the JSON API answers a write."""
    return {
        "identifier": info.identifier,
        "name": info.name,
        "group": info.group,
        "client_name": info.client_name,
        "client_group": info.client_group,
        "dashboard_name": info.dashboard_name,
        "dashboard_group": info.dashboard_group,
    }
