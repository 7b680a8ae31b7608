"""MkDocs hook: the configuration reference (``client/configuration.md``) checked against the code.

The page's table is written by hand, for reading; this hook makes ``mkdocs build --strict`` fail
(a warning) as soon as it drifts from the client's one resolver:

- every ``APITALLY_*`` variable the client reads (the constants of the public module
  ``apitally_otel.environment_variables``, through which the resolver reads every variable) has a
  row, and every variable in the table exists;
- every keyword argument of ``instrument_app`` has a row, and every argument in the table exists;
- every option of ``RequestLoggingConfig`` but the callbacks has its
  ``APITALLY_REQUEST_LOGGING_<OPTION>`` variable (what ``RequestLoggingConfig.from_env`` reads);
- each default in the table is the resolver's ``DEFAULT_*`` constant, or the argument's default.

The code is read statically with griffe, as mkdocstrings reads it: nothing is imported. The
resolver is found by what it defines (``resolve_settings``), not by its private module's path.
"""

from __future__ import annotations

import ast
import logging
import re
from typing import Any

import griffe

PAGE = "client/configuration.md"
PACKAGE = "apitally_otel"
DEFAULTS = {
    "APITALLY_ENV": "DEFAULT_ENV",
    "APITALLY_HUB_BASE_URL": "DEFAULT_HUB_BASE_URL",
    "APITALLY_SYNC_INTERVAL": "DEFAULT_SYNC_INTERVAL",
    "APITALLY_MAX_CONSUMERS": "DEFAULT_MAX_CONSUMERS",
    "APITALLY_SHUTDOWN_TIMEOUT": "DEFAULT_SHUTDOWN_TIMEOUT",
    "APITALLY_HUB_TIMEOUT": "DEFAULT_HUB_TIMEOUT",
    "APITALLY_OTEL_EXCLUDE_SPANS": "DEFAULT_EXCLUDED_SPANS",
}
"""Each variable with a default, and the resolver's constant that holds it."""

log = logging.getLogger("mkdocs.hooks.configuration")


def _literal(value: Any) -> Any:
    return ast.literal_eval(str(value))


def _shown(value: Any) -> str:
    """A default as the table writes it: ``10 000``, ``60``, ``receive,send``, ``dev``."""
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, (int, float)):
        return f"{value:,g}".replace(",", " ") if value < 1e6 else f"{value:g}"
    if isinstance(value, (tuple, list)):
        return ",".join(str(part) for part in value)
    return str(value)


def _resolver(module: griffe.Module) -> griffe.Module | None:
    member = module.members.get("resolve_settings")
    if member is not None and not member.is_alias:
        return module
    for submodule in module.modules.values():
        found = _resolver(submodule)
        if found is not None:
            return found
    return None


def _rows(markdown: str) -> list[list[str]]:
    """The cells of the first table whose header starts with ``env var``."""
    rows: list[list[str]] = []
    inside = False
    for line in markdown.splitlines():
        if line.startswith("| env var |"):
            inside = True
            continue
        if inside:
            if not line.startswith("|"):
                break
            if re.fullmatch(r"\|[-:| ]+\|", line.strip()):
                continue  # the rule under the headers
            rows.append([cell.strip() for cell in line.strip().strip("|").split(" | ")])
    return rows


def problems(markdown: str, search_path: str = "src") -> list[str]:
    """What the table says that the code does not (empty when they agree)."""
    package = griffe.load(PACKAGE, search_paths=[search_path], resolve_aliases=False)
    found: list[str] = []
    variables = {name for name in package["environment_variables"].attributes if name.startswith("APITALLY_")}
    instrument_app = package["instrumentation"]["instrument_app"]
    arguments = {p.name: p for p in instrument_app.parameters if p.kind and p.kind.value == "keyword-only"}
    config = package["request_logging"]
    callbacks = set(_literal(config["CALLBACKS"].value))
    options = [
        name
        for name, member in config["RequestLoggingConfig"].attributes.items()
        if not name.startswith("_") and name not in callbacks and "instance-attribute" in member.labels
    ]
    for option in options:
        if f"APITALLY_REQUEST_LOGGING_{option.upper()}" not in variables:
            found.append(f"RequestLoggingConfig.{option} has no APITALLY_REQUEST_LOGGING_{option.upper()}")
    resolver = _resolver(package)
    if resolver is None:
        found.append(f"no module of {PACKAGE} defines resolve_settings (the resolver)")

    rows = _rows(markdown)
    if not rows:
        return [*found, "no table with an 'env var' column"]
    listed: set[str] = set()
    wildcards: list[str] = []
    listed_arguments: set[str] = set()
    for variable_cell, argument_cell, default_cell, *_ in rows:
        names = re.findall(r"`(APITALLY_[A-Z_]+\*?)`", variable_cell)
        row_arguments = re.findall(r"`([a-z_]+)`", argument_cell)
        listed_arguments.update(row_arguments)
        for name in names:
            if name.endswith("*"):
                wildcards.append(name[:-1])
                if not any(v.startswith(name[:-1]) for v in variables):
                    found.append(f"the table lists {name}, which matches no variable")
                continue
            listed.add(name)
            if name not in variables:
                found.append(f"the table lists {name}, which the client does not read")
            constant = DEFAULTS.get(name)
            if constant is not None and resolver is not None:
                if constant not in resolver.members:
                    found.append(f"{name}: the resolver has no {constant}")
                    continue
                expected = _shown(_literal(resolver[constant].value))
                if not re.search(rf"(?<![\w.]){re.escape(expected)}(?![\w.])", default_cell.replace("`", "")):
                    found.append(f"{name}: the table's default {default_cell!r} is not {expected!r}")
        literal = re.fullmatch(r"`(.+)`", default_cell)
        if not names and literal and len(row_arguments) == 1 and row_arguments[0] in arguments:
            default = arguments[row_arguments[0]].default
            if default is None or _literal(default) != _literal(literal.group(1)):
                found.append(f"{row_arguments[0]}: the table's default {literal.group(1)} is not {default}")
    for name in sorted(variables - listed):
        if not any(name.startswith(prefix) for prefix in wildcards):
            found.append(f"{name} is read by the client but missing from the table")
    for name in sorted(set(arguments) - listed_arguments):
        found.append(f"instrument_app({name}=...) is missing from the table")
    for name in sorted(listed_arguments - set(arguments)):
        found.append(f"the table lists the argument {name}, which instrument_app does not take")
    return found


def on_page_markdown(markdown: str, page: Any, **kwargs: Any) -> str:
    if page.file.src_uri == PAGE:
        for problem in problems(markdown):
            log.warning("%s does not match the code: %s", PAGE, problem)
    return markdown
