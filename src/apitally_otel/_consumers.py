"""Consumer identity: normalisation of identifiers, names and groups (hub-protocol §4.4)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

MAX_IDENTIFIER_LENGTH = 128
MAX_NAME_LENGTH = 64

ATTR_IDENTIFIER = "apitally.consumer.identifier"
ATTR_NAME = "apitally.consumer.name"
ATTR_GROUP = "apitally.consumer.group"


@dataclass(frozen=True, slots=True)
class Consumer:
    """Who made a request. ``name`` and ``group`` are optional labels shown by the hub."""

    identifier: str
    name: str | None = None
    group: str | None = None


def _clean(value: Any, limit: int) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        if isinstance(value, (bytes, bytearray)):
            value = bytes(value).decode("utf-8", "replace")
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)
        else:
            return None
    value = value.strip()[:limit].strip()
    return value or None


def make_consumer(identifier: Any, name: Any = None, group: Any = None) -> Consumer | None:
    """A :class:`Consumer` from loosely typed values, or None when there is no usable identifier.

    Strings are stripped and cut (identifier 128, name and group 64 characters); numbers and bytes
    are converted; anything else counts as absent.
    """
    if isinstance(identifier, Consumer):
        return make_consumer(identifier.identifier, identifier.name, identifier.group)
    ident = _clean(identifier, MAX_IDENTIFIER_LENGTH)
    if ident is None:
        return None
    return Consumer(ident, _clean(name, MAX_NAME_LENGTH), _clean(group, MAX_NAME_LENGTH))


def consumer_from_value(value: Any) -> Consumer | None:
    """Accepts what user code hands us: a string, a Consumer, or an object/dict with identifier/name/group."""
    if value is None or isinstance(value, (str, int, Consumer)):
        return make_consumer(value)
    if isinstance(value, dict):
        return make_consumer(value.get("identifier"), value.get("name"), value.get("group"))
    ident = getattr(value, "identifier", None)
    if ident is not None:
        return make_consumer(ident, getattr(value, "name", None), getattr(value, "group", None))
    return None


def consumer_from_attributes(attributes: Any) -> Consumer | None:
    if not attributes:
        return None
    ident = attributes.get(ATTR_IDENTIFIER)
    if ident is None:
        return None
    return make_consumer(ident, attributes.get(ATTR_NAME), attributes.get(ATTR_GROUP))
