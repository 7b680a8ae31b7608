"""ASGI capture: what we measure of each HTTP request inside its SERVER span, and the request's
state (its record, ``set_consumer``, ``capture_exception``) shared with user code and the span
processor.

:mod:`.capture` measures the request, in the frame of :mod:`.server_span` (our lean middleware,
which starts the span with the attributes of :mod:`.http_semconv`) or under contrib's middleware;
:mod:`.attributes` reads and writes the span's attributes cheaply, :mod:`.routes` finds the route
template, and :mod:`.context` holds the per-request record that :mod:`.handled` adds to.
"""
