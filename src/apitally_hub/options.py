"""A configuration field declared once, with its command-line option beside it.

The hub's configuration (:class:`~apitally_hub.config.HubConfig` and the sections it holds, such
as :class:`~apitally_hub.alerting.config.AlertingConfig`) are frozen dataclasses. A field that the
command line may set is made with :func:`option`, which keeps its flag, help and parser in the
field's metadata; :func:`apitally_hub.config.add_arguments` builds the ``hub`` subcommand's
options from them and :func:`apitally_hub.config.load_config` reads them back. Adding an option
is adding a field.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import MISSING, dataclass, field
from typing import Any

FLAG = "apitally_hub.flag"
"""The metadata key of a field's :class:`Flag`."""
SECTION = "apitally_hub.section"
"""The metadata key of a field that holds a nested configuration dataclass (its type)."""


@dataclass(frozen=True)
class Flag:
    """How the command line sets one field."""

    name: str
    """The long option, e.g. ``--body-timeout``."""
    help: str
    type: Callable[[str], Any] | None = None
    metavar: str | None = None
    group: str | None = None
    """The ``--help`` section the option is listed in (None: the subcommand's own)."""
    action: str | None = None
    """``store_true`` for switches, ``append`` for repeatable options (the field gets a tuple)."""
    choices: tuple[str, ...] | None = None


def option(
    default: Any = MISSING,
    *,
    flag: str,
    help: str,
    type: Callable[[str], Any] | None = None,
    metavar: str | None = None,
    group: str | None = None,
    action: str | None = None,
    choices: tuple[str, ...] | None = None,
) -> Any:
    """A dataclass field with a default that the command line can override (``flag``)."""
    spec = Flag(flag, help, type, metavar, group, action, choices)
    return field(default=default, metadata={FLAG: spec})


def section(kind: type[Any]) -> Any:
    """A dataclass field holding a nested configuration (``kind``, made with its defaults)."""
    return field(default_factory=kind, metadata={SECTION: kind})
