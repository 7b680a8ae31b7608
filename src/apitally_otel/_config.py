"""Configuration: resolved once, at construction (keyword argument, then env var, then default)."""

from __future__ import annotations

import logging
import os
import re
import uuid
from dataclasses import dataclass

from opentelemetry.sdk.environment_variables import OTEL_METRIC_EXPORT_INTERVAL

from apitally_otel import environment_variables as env_vars

_logger = logging.getLogger(__name__)

DEFAULT_HUB_BASE_URL = "https://hub.apitally.io"
DEFAULT_ENV = "dev"
DEFAULT_SYNC_INTERVAL = 60.0
DEFAULT_MAX_CONSUMERS = 10_000
_ENV_PATTERN = re.compile(r"^[\w-]{1,32}$", re.ASCII)
_TRUE = {"1", "true", "yes", "on"}


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


def is_disabled(disabled: bool | None = None) -> bool:
    if disabled is not None:
        return disabled
    return (env(env_vars.APITALLY_DISABLED) or "").strip().lower() in _TRUE


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
        sync_interval=_resolve_interval(sync_interval),
        max_consumers=_resolve_positive_int(
            max_consumers, env_vars.APITALLY_MAX_CONSUMERS, DEFAULT_MAX_CONSUMERS
        ),
    )


def resolve_sync_interval(sync_interval: float | None = None) -> float:
    return _resolve_interval(sync_interval)


def _resolve_interval(value: float | None) -> float:
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
