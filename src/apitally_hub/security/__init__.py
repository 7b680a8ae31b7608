"""Who may talk to the hub: read tokens (:mod:`.tokens`), the read gate (:mod:`.access`) and the
Host check and loopback rule (:mod:`.hosts`). Ingest keeps the protocol's own addressing (the
client id in the path, plus the ``--client-id`` allow-list)."""
