"""Request logging (hub-protocol §5): which requests are logged, what is captured of each, and the
upload of the masked items.

:mod:`.sampling` decides when a request starts; :mod:`.log_capture` collects raw facts on the
request path, with log records from :mod:`.log_sinks`; on its own thread, :mod:`.logger` builds
each item (:mod:`.log_item`, applying :mod:`.masking`), writes gzip NDJSON files and uploads them.
"""
