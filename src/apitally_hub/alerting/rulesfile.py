"""Rules as code: ``apitally-otel hub --alerts-file rules.toml``, loaded when the hub starts.

The file declares channels, rules and health checks; the hub makes the store match it (entries
keep their ids across restarts, so a firing alert stays firing; entries the file no longer
lists are removed) and the API shows them read-only (``"source": "file"``). Top-level
``client_id``/``env`` apply to every entry that does not set its own; rules name their channels
by name; ``${VAR}`` in a string is replaced by that environment variable (keep secrets out of
the file)::

    client_id = "f2b1d6a4-3c1e-4d9a-9b7e-2a6f0c5e8d11"
    env = "prod"

    [[channels]]
    name = "ops"
    type = "webhook"
    url = "https://hooks.example.com/apitally"
    secret = "${OPS_WEBHOOK_SECRET}"

    [[rules]]
    name = "5xx"
    metric = "server_errors"
    condition = ">"
    threshold = 0
    window_minutes = 5
    channels = ["ops"]
    scope = { path_pattern = "/api/*", for_each = "endpoint" }

    [[health_checks]]
    url = "https://api.example.com/health"
"""

from __future__ import annotations

import os
import re
import sys
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from apitally_hub.alerting.validation import Invalid, parse_channel, parse_health_check, parse_rule
from apitally_hub.protocol.messages import is_valid_env, normalize_client_id
from apitally_hub.storage.alert_records import ChannelRecord, FileConfig, HealthCheckRecord, RuleRecord
from apitally_hub.storage.records import AppKey

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib  # type: ignore[import-not-found, unused-ignore]

_VAR_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class RulesFileError(ValueError):
    """The file cannot be used; the message names the file, the entry and the field."""


def _expand(value: Any, where: str) -> Any:
    if isinstance(value, str):

        def variable(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in os.environ:
                raise RulesFileError(f"{where}: environment variable {name} is not set")
            return os.environ[name]

        return _VAR_RE.sub(variable, value)
    if isinstance(value, list):
        return [_expand(v, where) for v in value]
    if isinstance(value, dict):
        return {k: _expand(v, where) for k, v in value.items()}
    return value


def _app(entry: Mapping[str, Any], defaults: Mapping[str, Any], where: str) -> AppKey:
    client_id = normalize_client_id(str(entry.get("client_id", defaults.get("client_id", ""))))
    env = str(entry.get("env", defaults.get("env", "")))
    if client_id is None:
        raise RulesFileError(f"{where}: client_id should be a UUID (set it on the entry or at the top)")
    if not is_valid_env(env):
        raise RulesFileError(f"{where}: env should match ^[A-Za-z0-9_-]{{1,32}}$")
    return AppKey(client_id, env)


def _fields(entry: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in entry.items() if k not in ("client_id", "env")}


def _invalid(path: Path, exc: Invalid) -> RulesFileError:
    problems = "; ".join(f"{'.'.join(map(str, e.loc))}: {e.msg}" for e in exc.errors)
    return RulesFileError(f"{path}: {problems}")


def load(path: Path, now: float) -> FileConfig:
    """Parse and validate ``path``; raises :class:`RulesFileError`."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise RulesFileError(f"{path}: cannot read it: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise RulesFileError(f"{path}: not valid TOML: {exc}") from None
    unknown = set(data) - {"client_id", "env", "channels", "rules", "health_checks"}
    if unknown:
        raise RulesFileError(f"{path}: unknown top-level key(s) {', '.join(sorted(unknown))}")
    channels: list[ChannelRecord] = []
    rules: list[RuleRecord] = []
    checks: list[HealthCheckRecord] = []
    names: dict[AppKey, set[str]] = {}
    try:
        for index, entry in enumerate(data.get("channels", [])):
            where = f"{path}: channels[{index}]"
            app = _app(entry, data, where)
            parsed = parse_channel(_expand(_fields(entry), where), base=(f"channels[{index}]",))
            if parsed["name"] in names.setdefault(app, set()):
                raise RulesFileError(f"{where}: a second channel named {parsed['name']!r}")
            names[app].add(parsed["name"])
            channels.append(
                ChannelRecord(
                    str(uuid.uuid4()), app, parsed["name"], parsed["type"], parsed["config"], "file", now, now
                )
            )
        seen_rules: set[tuple[AppKey, str]] = set()
        for index, entry in enumerate(data.get("rules", [])):
            where = f"{path}: rules[{index}]"
            app = _app(entry, data, where)
            parsed = parse_rule(_expand(_fields(entry), where), base=(f"rules[{index}]",))
            for name in parsed["spec"]["channels"]:
                if name not in names.get(app, set()):
                    raise RulesFileError(f"{where}: no channel named {name!r} for {app.client_id}/{app.env}")
            if (app, parsed["name"]) in seen_rules:
                raise RulesFileError(f"{where}: a second rule named {parsed['name']!r}")
            seen_rules.add((app, parsed["name"]))
            rules.append(
                RuleRecord(
                    str(uuid.uuid4()),
                    app,
                    parsed["name"],
                    parsed["spec"],
                    parsed["enabled"],
                    "file",
                    now,
                    now,
                )
            )
        for index, entry in enumerate(data.get("health_checks", [])):
            where = f"{path}: health_checks[{index}]"
            app = _app(entry, data, where)
            parsed = parse_health_check(_expand(_fields(entry), where), base=(f"health_checks[{index}]",))
            if any(c.app == app for c in checks):
                raise RulesFileError(f"{where}: a second health check for {app.client_id}/{app.env}")
            checks.append(HealthCheckRecord(app, parsed["url"], parsed["config"], "file", now))
    except Invalid as exc:
        raise _invalid(path, exc) from None
    except (TypeError, AttributeError):
        raise RulesFileError(
            f"{path}: channels, rules and health_checks should be arrays of tables"
        ) from None
    return FileConfig(channels, rules, checks)
