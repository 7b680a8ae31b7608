"""``opentelemetry-instrument`` command-line flags for apitally-otel.

``opentelemetry-instrument`` turns every ``OTEL_*`` name of the modules registered under the
``opentelemetry_environment_variables`` entry point into a flag, so
``opentelemetry-instrument --apitally_client_id <uuid> uvicorn app:app`` sets
``OTEL_APITALLY_CLIENT_ID``. apitally-otel reads each of these when the ``APITALLY_*`` variable of
the same name is not set.
"""

OTEL_APITALLY_CLIENT_ID = "OTEL_APITALLY_CLIENT_ID"
"""Alias of ``APITALLY_CLIENT_ID`` (``--apitally_client_id``)."""

OTEL_APITALLY_ENV = "OTEL_APITALLY_ENV"
"""Alias of ``APITALLY_ENV`` (``--apitally_env``)."""

OTEL_APITALLY_HUB_BASE_URL = "OTEL_APITALLY_HUB_BASE_URL"
"""Alias of ``APITALLY_HUB_BASE_URL`` (``--apitally_hub_base_url``)."""

OTEL_APITALLY_DISABLED = "OTEL_APITALLY_DISABLED"
"""Alias of ``APITALLY_DISABLED`` (``--apitally_disabled``)."""

OTEL_APITALLY_SYNC_INTERVAL = "OTEL_APITALLY_SYNC_INTERVAL"
"""Alias of ``APITALLY_SYNC_INTERVAL`` (``--apitally_sync_interval``)."""

OTEL_APITALLY_SHUTDOWN_TIMEOUT = "OTEL_APITALLY_SHUTDOWN_TIMEOUT"
"""Alias of ``APITALLY_SHUTDOWN_TIMEOUT`` (``--apitally_shutdown_timeout``)."""

OTEL_APITALLY_PROXY = "OTEL_APITALLY_PROXY"
"""Alias of ``APITALLY_PROXY`` (``--apitally_proxy``)."""

OTEL_APITALLY_OTLP_METRICS = "OTEL_APITALLY_OTLP_METRICS"
"""Alias of ``APITALLY_OTLP_METRICS`` (``--apitally_otlp_metrics``)."""

OTEL_APITALLY_HUB_TIMEOUT = "OTEL_APITALLY_HUB_TIMEOUT"
"""Alias of ``APITALLY_HUB_TIMEOUT`` (``--apitally_hub_timeout``)."""
