"""Configuration, resolved in one place: keyword argument, then ``APITALLY_X`` env var (or its
``OTEL_APITALLY_X`` alias), then default. No other module of the client reads the environment.

An invalid value logs a warning and falls back to the default, except for what cannot work at all
(client id, env, hub URL, proxy): :class:`ConfigError`, which disables apitally-otel with one line.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

import httpx
from opentelemetry.sdk.environment_variables import OTEL_METRIC_EXPORT_INTERVAL, OTEL_SDK_DISABLED

from apitally_otel import environment_variables as env_vars

_logger = logging.getLogger(__name__)

DEFAULT_HUB_BASE_URL = "https://hub.apitally.io"
DEFAULT_ENV = "dev"
DEFAULT_SYNC_INTERVAL = 60.0
DEFAULT_MAX_CONSUMERS = 10_000
DEFAULT_SHUTDOWN_TIMEOUT = 5.0
DEFAULT_HUB_TIMEOUT = 10.0  # hub-protocol §1: 10 s per HTTP request
DEFAULT_EXCLUDED_SPANS = ("receive", "send")
TRUE_STRINGS = frozenset({"1", "true", "yes", "on"})
FALSE_STRINGS = frozenset({"0", "false", "no", "off"})
_ENV_PATTERN = re.compile(r"^[\w-]{1,32}$", re.ASCII)
_PROXY_SCHEMES = ("http", "https", "socks5", "socks5h")


class ConfigError(ValueError):
    """The configuration cannot work; apitally-otel disables itself."""


@dataclass(frozen=True)
class HubSettings:
    client_id: str
    env: str
    hub_base_url: str
    sync_interval: float
    max_consumers: int

    @property
    def hub_url(self) -> str:
        return f"{self.hub_base_url}/v2/{self.client_id}/{self.env}"


def env(name: str) -> str | None:
    """``APITALLY_X``, else its ``OTEL_APITALLY_X`` alias (``opentelemetry-instrument --apitally_x``)."""
    value = os.environ.get(name)
    if value is None or value == "":
        value = os.environ.get("OTEL_" + name)
    return value or None


def parse_bool(raw: str | None) -> bool | None:
    """True/False for the strings in :data:`TRUE_STRINGS`/:data:`FALSE_STRINGS`, else None."""
    if raw is None:
        return None
    lowered = raw.strip().lower()
    if lowered in TRUE_STRINGS:
        return True
    return False if lowered in FALSE_STRINGS else None


def env_flag(name: str, default: bool = False) -> bool:
    raw = env(name)
    value = parse_bool(raw)
    if value is None:
        if raw is not None:
            _logger.warning(
                "apitally-otel: invalid %s=%r (expected true or false), using %s", name, raw, default
            )
        return default
    return value


def is_disabled(disabled: bool | None = None) -> bool:
    return disabled if disabled is not None else env_flag(env_vars.APITALLY_DISABLED)


def sdk_disabled() -> bool:
    """``OTEL_SDK_DISABLED=true``, with the SDK's own (case-insensitive ``true`` only) rule."""
    return os.environ.get(OTEL_SDK_DISABLED, "").strip().lower() == "true"


def otlp_metrics_enabled() -> bool:
    return env_flag(env_vars.APITALLY_OTLP_METRICS)


def resolve_app_version(value: str | None = None) -> str | None:
    return value if value is not None else env(env_vars.APITALLY_APP_VERSION)


def excluded_urls(framework: str) -> str:
    """The contrib instrumentations' untraced URLs for ``framework`` (``STARLETTE``, ``FASTAPI``):
    ``OTEL_PYTHON_<FRAMEWORK>_EXCLUDED_URLS``, else ``OTEL_PYTHON_STARLETTE_EXCLUDED_URLS``, else
    ``OTEL_PYTHON_EXCLUDED_URLS`` (a comma-separated list of regexes; empty when unset)."""
    for name in (f"OTEL_PYTHON_{framework}_EXCLUDED_URLS", "OTEL_PYTHON_STARLETTE_EXCLUDED_URLS"):
        if name in os.environ:
            return os.environ[name]
    return os.environ.get("OTEL_PYTHON_EXCLUDED_URLS", "")


def excluded_spans() -> list[str]:
    """The contrib middleware's internal spans left out: ``receive,send`` unless set (empty: none)."""
    name = env_vars.APITALLY_OTEL_EXCLUDE_SPANS
    raw = os.environ.get(name, os.environ.get("OTEL_" + name))
    parts = DEFAULT_EXCLUDED_SPANS if raw is None else [p.strip().lower() for p in raw.split(",")]
    return [part for part in parts if part in DEFAULT_EXCLUDED_SPANS]


OptionKind = Literal["bool", "list", "float"]


def prefixed_options(
    prefix: str, names: Iterable[tuple[str, OptionKind]], environ: Mapping[str, str] | None = None
) -> dict[str, bool | float | tuple[str, ...]]:
    """``{name: value}`` for each ``(name, kind)`` whose ``prefix + NAME`` is set (in ``environ``,
    else through :func:`env`): a boolean, a number, or a tuple of the comma-separated parts. An
    invalid boolean or number is logged and ignored (the option keeps its default)."""
    values: dict[str, bool | float | tuple[str, ...]] = {}
    for name, kind in names:
        key = prefix + name.upper()
        raw = environ.get(key) if environ is not None else env(key)
        if raw is None:
            continue
        if kind == "list":
            values[name] = tuple(part.strip() for part in raw.split(",") if part.strip())
        elif kind == "float":
            try:
                values[name] = float(raw)
            except ValueError:
                _logger.warning("apitally-otel: invalid %s=%r (expected a number), ignored", key, raw)
        elif (flag := parse_bool(raw)) is not None:
            values[name] = flag
        else:
            _logger.warning("apitally-otel: invalid %s=%r (expected true or false), ignored", key, raw)
    return values


def resolve_sample_rate(value: object) -> float:
    """A request-log sample rate: a number from 0 to 1. Anything else logs a warning and keeps
    every request (1.0)."""
    try:
        rate = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        rate = float("nan")
    if not 0.0 <= rate <= 1.0:  # NaN fails both comparisons
        _logger.warning(
            "apitally-otel: invalid request logging sample_rate %r (expected 0 to 1), logging every request",
            value,
        )
        return 1.0
    return rate


def resolve_settings(
    client_id: str | None = None,
    environment: str | None = None,
    hub_base_url: str | None = None,
    sync_interval: float | None = None,
    max_consumers: int | None = None,
) -> HubSettings:
    """Resolve and validate; raise :class:`ConfigError` with a message fit for one log line."""
    raw_client_id = client_id if client_id is not None else env(env_vars.APITALLY_CLIENT_ID)
    if not raw_client_id:
        raise ConfigError(f"no client id: pass client_id= or set {env_vars.APITALLY_CLIENT_ID}")
    try:
        canonical_id = str(uuid.UUID(str(raw_client_id).strip()))
    except ValueError:
        raise ConfigError(f"invalid client id {raw_client_id!r}: expected a UUID") from None

    raw_env = environment if environment is not None else (env(env_vars.APITALLY_ENV) or DEFAULT_ENV)
    if not isinstance(raw_env, str) or not _ENV_PATTERN.match(raw_env):
        raise ConfigError(f"invalid env {raw_env!r}: expected 1-32 characters of [A-Za-z0-9_-]")

    base = hub_base_url or env(env_vars.APITALLY_HUB_BASE_URL) or DEFAULT_HUB_BASE_URL
    base = base.strip().rstrip("/")
    if not re.match(r"^https?://[^/\s]+", base):
        raise ConfigError(f"invalid hub base URL {base!r}: expected http(s)://host[:port]")

    return HubSettings(
        client_id=canonical_id,
        env=raw_env,
        hub_base_url=base,
        sync_interval=resolve_sync_interval(sync_interval),
        max_consumers=_resolve_positive_int(
            max_consumers, env_vars.APITALLY_MAX_CONSUMERS, DEFAULT_MAX_CONSUMERS
        ),
    )


def resolve_sync_interval(value: float | None = None) -> float:
    if value is not None:
        if value > 0:
            return float(value)
        _logger.warning("Invalid sync interval %r, using %s s", value, DEFAULT_SYNC_INTERVAL)
        return DEFAULT_SYNC_INTERVAL
    for name, scale in ((env_vars.APITALLY_SYNC_INTERVAL, 1.0), (OTEL_METRIC_EXPORT_INTERVAL, 0.001)):
        raw = env(name) if name.startswith("APITALLY_") else os.environ.get(name)
        if raw:
            try:
                seconds = float(raw) * scale
            except ValueError:
                seconds = 0.0
            if seconds > 0:
                return seconds
            _logger.warning("Invalid %s=%r, using %s s", name, raw, DEFAULT_SYNC_INTERVAL)
            return DEFAULT_SYNC_INTERVAL
    return DEFAULT_SYNC_INTERVAL


def resolve_shutdown_timeout(value: float | None = None) -> float:
    return _resolve_seconds(value, env_vars.APITALLY_SHUTDOWN_TIMEOUT, DEFAULT_SHUTDOWN_TIMEOUT, "shutdown")


def resolve_hub_timeout(value: float | None = None) -> float:
    seconds = _resolve_seconds(value, env_vars.APITALLY_HUB_TIMEOUT, DEFAULT_HUB_TIMEOUT, "hub request")
    if seconds == 0:
        _logger.warning("apitally-otel: a hub timeout of 0 s cannot work, using %s s", DEFAULT_HUB_TIMEOUT)
        return DEFAULT_HUB_TIMEOUT
    return seconds


def resolve_proxy(value: str | None = None) -> str | None:
    """The proxy given (argument, ``APITALLY_PROXY``); None lets ``HTTPS_PROXY``/``NO_PROXY`` apply."""
    raw = value if value is not None else env(env_vars.APITALLY_PROXY)
    if not raw:
        return None
    try:
        url = httpx.URL(raw.strip())
    except httpx.InvalidURL:
        url = None
    if url is None or url.scheme not in _PROXY_SCHEMES or not url.host:
        raise ConfigError(f"invalid proxy {raw!r}: expected http(s)://host:port or socks5://host:port")
    if url.scheme.startswith("socks") and importlib.util.find_spec("socksio") is None:
        raise ConfigError(f"proxy {raw!r} needs SOCKS support: pip install 'httpx[socks]'")
    return raw.strip()


def _resolve_seconds(value: float | None, name: str, default: float, what: str) -> float:
    raw: object = value if value is not None else env(name)
    if raw is None or raw == "":
        return default
    try:
        seconds = float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        seconds = -1.0
    if not 0 <= seconds < float("inf"):
        _logger.warning("apitally-otel: invalid %s timeout %r, using %s s", what, raw, default)
        return default
    return seconds


def _resolve_positive_int(value: int | None, name: str, default: int) -> int:
    if value is None:
        raw = env(name)
        if not raw:
            return default
        try:
            value = int(raw)
        except ValueError:
            _logger.warning("Invalid %s=%r, using %d", name, raw, default)
            return default
    if value <= 0:
        _logger.warning("Invalid %s=%r, using %d", name, value, default)
        return default
    return value
