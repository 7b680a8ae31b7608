"""What the startup message says about the app (hub-protocol §3): paths, OpenAPI, versions."""

from __future__ import annotations

import json
import logging
import platform
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from apitally_otel._asgi.routes import list_paths
from apitally_otel.version import __version__

_logger = logging.getLogger(__name__)

_VERSIONED_PACKAGES = ("starlette", "fastapi", "uvicorn", "gunicorn", "hypercorn", "opentelemetry-sdk")


def package_versions(app_version: str | None = None) -> dict[str, str]:
    versions = {"python": platform.python_version(), "apitally-otel": __version__}
    for name in _VERSIONED_PACKAGES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            continue
    if app_version:
        versions["app"] = str(app_version)[:64]
    return versions


def openapi_document(app: Any) -> str | None:
    """The app's OpenAPI document as a JSON string (FastAPI), or None."""
    openapi = getattr(app, "openapi", None)
    if not callable(openapi) or getattr(app, "openapi_url", None) is None:
        return None
    try:
        return json.dumps(openapi(), separators=(",", ":"))
    except Exception:  # a user model that breaks schema generation must not break monitoring
        _logger.warning("apitally-otel: could not build the OpenAPI document", exc_info=True)
        return None


def app_info(
    app: Any, app_version: str | None = None, *, openapi: bool = True
) -> tuple[list[dict[str, str]], str | None, dict[str, str]]:
    return list_paths(app), openapi_document(app) if openapi else None, package_versions(app_version)
