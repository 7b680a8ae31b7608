"""The delivery app where the ``[otlp]`` extra is not installed: importing the OTLP exporter fails
the way a missing distribution does (ModuleNotFoundError), whatever this environment has."""

from __future__ import annotations

import sys

sys.modules["opentelemetry.exporter.otlp"] = None  # type: ignore[assignment]

from tests.support.apps.delivery_app import app  # noqa: E402

__all__ = ["app"]
