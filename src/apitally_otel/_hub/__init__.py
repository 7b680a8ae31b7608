"""Talking to the hub (hub-protocol): what its messages say, and their delivery.

The messages: :mod:`.encoding` (metric data to sync and startup messages), :mod:`.startup` (the
app's paths, OpenAPI and versions), :mod:`.resources` (process usage), :mod:`.instance` (a stable
``instance_uuid`` per worker slot). The delivery: :mod:`.client` (the background sender),
:mod:`.http` and :mod:`.net` (HTTP under one deadline per request), :mod:`.status` (what the
hub's answers mean).
"""
