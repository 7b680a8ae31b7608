"""Bounds on what clients can make the hub hold: request bodies in flight (:mod:`.budget`), ingest
bytes per client (:mod:`.rate`), and connections (:mod:`.connections`)."""
