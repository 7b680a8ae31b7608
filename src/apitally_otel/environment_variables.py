"""Environment variables read by apitally-otel.

Every option can be given as a keyword argument instead; a keyword argument always wins over the
environment, which wins over the default.
"""

APITALLY_CLIENT_ID = "APITALLY_CLIENT_ID"
"""
.. envvar:: APITALLY_CLIENT_ID

The client id (a UUID) of the app on the hub. ``export APITALLY_CLIENT_ID=6d3a...``. Required.
"""

APITALLY_ENV = "APITALLY_ENV"
"""
.. envvar:: APITALLY_ENV

The environment name, 1-32 characters of letters, digits, ``-`` and ``_``. ``export APITALLY_ENV=prod``.
Default: ``dev``.
"""

APITALLY_HUB_BASE_URL = "APITALLY_HUB_BASE_URL"
"""
.. envvar:: APITALLY_HUB_BASE_URL

Base URL of the hub. ``export APITALLY_HUB_BASE_URL=http://127.0.0.1:8250`` for the local hub.
Default: ``https://hub.apitally.io``.
"""

APITALLY_DISABLED = "APITALLY_DISABLED"
"""
.. envvar:: APITALLY_DISABLED

``true`` turns apitally-otel into a no-op. ``export APITALLY_DISABLED=true``.
"""

APITALLY_SYNC_INTERVAL = "APITALLY_SYNC_INTERVAL"
"""
.. envvar:: APITALLY_SYNC_INTERVAL

Seconds between two syncs with the hub. ``export APITALLY_SYNC_INTERVAL=60``. Falls back to
``OTEL_METRIC_EXPORT_INTERVAL`` (milliseconds), then 60 s.
"""

APITALLY_APP_VERSION = "APITALLY_APP_VERSION"
"""
.. envvar:: APITALLY_APP_VERSION

The version of the monitored app, reported in the startup message. ``export APITALLY_APP_VERSION=1.2.3``.
"""

APITALLY_MAX_CONSUMERS = "APITALLY_MAX_CONSUMERS"
"""
.. envvar:: APITALLY_MAX_CONSUMERS

The most distinct consumers counted per sync interval; further ones are counted without a consumer.
``export APITALLY_MAX_CONSUMERS=10000``. Default: 10 000.
"""

APITALLY_SHUTDOWN_TIMEOUT = "APITALLY_SHUTDOWN_TIMEOUT"
"""
.. envvar:: APITALLY_SHUTDOWN_TIMEOUT

Seconds the final collection and delivery may take when the app shuts down (lifespan shutdown,
SIGTERM under uvicorn/gunicorn, interpreter exit), in all. ``export APITALLY_SHUTDOWN_TIMEOUT=5``.
Default: 5.
"""

APITALLY_PROXY = "APITALLY_PROXY"
"""
.. envvar:: APITALLY_PROXY

Proxy URL for the connection to the hub, e.g. ``export APITALLY_PROXY=http://proxy.internal:3128``.
Without it, the standard ``HTTPS_PROXY``, ``HTTP_PROXY``, ``ALL_PROXY`` and ``NO_PROXY`` apply.
Certificates are always verified; ``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` name a custom CA bundle.
"""

APITALLY_OTLP_METRICS = "APITALLY_OTLP_METRICS"
"""
.. envvar:: APITALLY_OTLP_METRICS

``true`` also sends the derived request metrics (``http.server.request.duration`` and the body-size
histograms, per route, status and ``apitally.consumer.identifier``) to an OTLP/HTTP endpoint configured
by the standard ``OTEL_EXPORTER_OTLP_*`` variables. ``export APITALLY_OTLP_METRICS=true``.
"""
