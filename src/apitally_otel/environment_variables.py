"""Environment variables read by apitally-otel.

Most options can be given as a keyword argument of ``instrument_app`` instead; a keyword argument
always wins over the environment, which wins over the default. Each ``APITALLY_X`` can also be set
as ``OTEL_APITALLY_X`` (what ``opentelemetry-instrument --apitally_x`` sets).
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
The OTLP exporter comes with the ``[otlp]`` extra (``pip install 'apitally-otel[otlp]'``); without
it, ``true`` logs one error naming the extra and the hub sync goes on as usual.
"""

APITALLY_HUB_TIMEOUT = "APITALLY_HUB_TIMEOUT"
"""
.. envvar:: APITALLY_HUB_TIMEOUT

The deadline of one request to the hub, in seconds: name resolution, connecting, TLS, sending and
reading the answer together, however slowly the hub (or a proxy) trickles bytes. A request that
outlasts it is abandoned and retried later. ``export APITALLY_HUB_TIMEOUT=10``. Default: 10.
"""

APITALLY_OTEL_EXCLUDE_SPANS = "APITALLY_OTEL_EXCLUDE_SPANS"
"""
.. envvar:: APITALLY_OTEL_EXCLUDE_SPANS

Zero-code only: the internal spans of the contrib ASGI middleware left out, a comma-separated list
of ``receive`` and ``send``. ``export APITALLY_OTEL_EXCLUDE_SPANS=send`` keeps the receive spans;
an empty value keeps both. Default: ``receive,send``.
"""

APITALLY_REQUEST_LOGGING_ENABLED = "APITALLY_REQUEST_LOGGING_ENABLED"
"""
.. envvar:: APITALLY_REQUEST_LOGGING_ENABLED

``true`` turns request logging on (hub-protocol §5). ``export APITALLY_REQUEST_LOGGING_ENABLED=true``.
Default: ``false``. The other ``APITALLY_REQUEST_LOGGING_*`` variables take effect only with it.
"""

APITALLY_REQUEST_LOGGING_LOG_QUERY_PARAMS = "APITALLY_REQUEST_LOGGING_LOG_QUERY_PARAMS"
"""
.. envvar:: APITALLY_REQUEST_LOGGING_LOG_QUERY_PARAMS

Log the query string (masked). ``export APITALLY_REQUEST_LOGGING_LOG_QUERY_PARAMS=false``. Default: ``true``.
"""

APITALLY_REQUEST_LOGGING_LOG_REQUEST_HEADERS = "APITALLY_REQUEST_LOGGING_LOG_REQUEST_HEADERS"
"""
.. envvar:: APITALLY_REQUEST_LOGGING_LOG_REQUEST_HEADERS

Log request headers (masked). ``export APITALLY_REQUEST_LOGGING_LOG_REQUEST_HEADERS=true``.
Default: ``false``.
"""

APITALLY_REQUEST_LOGGING_LOG_REQUEST_BODY = "APITALLY_REQUEST_LOGGING_LOG_REQUEST_BODY"
"""
.. envvar:: APITALLY_REQUEST_LOGGING_LOG_REQUEST_BODY

Log request bodies of JSON and text requests, up to 50 000 bytes (masked).
``export APITALLY_REQUEST_LOGGING_LOG_REQUEST_BODY=true``. Default: ``false``.
"""

APITALLY_REQUEST_LOGGING_LOG_RESPONSE_HEADERS = "APITALLY_REQUEST_LOGGING_LOG_RESPONSE_HEADERS"
"""
.. envvar:: APITALLY_REQUEST_LOGGING_LOG_RESPONSE_HEADERS

Log response headers (masked). ``export APITALLY_REQUEST_LOGGING_LOG_RESPONSE_HEADERS=false``.
Default: ``true``.
"""

APITALLY_REQUEST_LOGGING_LOG_RESPONSE_BODY = "APITALLY_REQUEST_LOGGING_LOG_RESPONSE_BODY"
"""
.. envvar:: APITALLY_REQUEST_LOGGING_LOG_RESPONSE_BODY

Log response bodies of JSON and text responses, up to 50 000 bytes (masked).
``export APITALLY_REQUEST_LOGGING_LOG_RESPONSE_BODY=true``. Default: ``false``.
"""

APITALLY_REQUEST_LOGGING_LOG_EXCEPTION = "APITALLY_REQUEST_LOGGING_LOG_EXCEPTION"
"""
.. envvar:: APITALLY_REQUEST_LOGGING_LOG_EXCEPTION

Log the type, message and traceback of an exception that escaped the endpoint.
``export APITALLY_REQUEST_LOGGING_LOG_EXCEPTION=false``. Default: ``true``.
"""

APITALLY_REQUEST_LOGGING_CAPTURE_LOGS = "APITALLY_REQUEST_LOGGING_CAPTURE_LOGS"
"""
.. envvar:: APITALLY_REQUEST_LOGGING_CAPTURE_LOGS

Add the log records emitted while a request is handled (at most 1 000) to its log item: the
standard library's ``logging`` records, and Loguru's when the app uses Loguru.
``export APITALLY_REQUEST_LOGGING_CAPTURE_LOGS=true``. Default: ``false``.
"""

APITALLY_REQUEST_LOGGING_CAPTURE_TRACES = "APITALLY_REQUEST_LOGGING_CAPTURE_TRACES"
"""
.. envvar:: APITALLY_REQUEST_LOGGING_CAPTURE_TRACES

Add the request's spans and its trace id to its log item.
``export APITALLY_REQUEST_LOGGING_CAPTURE_TRACES=true``. Default: ``false``.
"""

APITALLY_REQUEST_LOGGING_MASK_QUERY_PARAMS = "APITALLY_REQUEST_LOGGING_MASK_QUERY_PARAMS"
"""
.. envvar:: APITALLY_REQUEST_LOGGING_MASK_QUERY_PARAMS

Comma-separated regexes of query parameter names to mask, added to the defaults.
``export APITALLY_REQUEST_LOGGING_MASK_QUERY_PARAMS='^sig$,session'``.
"""

APITALLY_REQUEST_LOGGING_MASK_HEADERS = "APITALLY_REQUEST_LOGGING_MASK_HEADERS"
"""
.. envvar:: APITALLY_REQUEST_LOGGING_MASK_HEADERS

Comma-separated regexes of header names to mask, added to the defaults.
``export APITALLY_REQUEST_LOGGING_MASK_HEADERS='x-tenant-secret'``.
"""

APITALLY_REQUEST_LOGGING_MASK_BODY_FIELDS = "APITALLY_REQUEST_LOGGING_MASK_BODY_FIELDS"
"""
.. envvar:: APITALLY_REQUEST_LOGGING_MASK_BODY_FIELDS

Comma-separated regexes of JSON body field names to mask, added to the defaults.
``export APITALLY_REQUEST_LOGGING_MASK_BODY_FIELDS='^iban$'``.
"""

APITALLY_REQUEST_LOGGING_EXCLUDE_PATHS = "APITALLY_REQUEST_LOGGING_EXCLUDE_PATHS"
"""
.. envvar:: APITALLY_REQUEST_LOGGING_EXCLUDE_PATHS

Comma-separated regexes of paths kept out of the request log (still counted), added to the
defaults. ``export APITALLY_REQUEST_LOGGING_EXCLUDE_PATHS='^/internal/,/admin$'``.
"""

APITALLY_REQUEST_LOGGING_SAMPLE_RATE = "APITALLY_REQUEST_LOGGING_SAMPLE_RATE"
"""
.. envvar:: APITALLY_REQUEST_LOGGING_SAMPLE_RATE

The share of requests logged, from 0 to 1, decided per trace id with the rule of OpenTelemetry's
``TraceIdRatioBased`` sampler (an app sampling its traces at the same rate logs the requests whose
traces it keeps); a request whose incoming trace context is sampled (``traceparent`` flags ``01``)
is always logged. Every request is still counted in the metrics.
``export APITALLY_REQUEST_LOGGING_SAMPLE_RATE=0.1``. Default: ``1`` (every request).
"""
