"""The hub's HTTP layer: the app factory (:mod:`.app`, which lists every route), its lifespan
(:mod:`.lifespan`), the request context the handlers share (:mod:`.context`), ingest (:mod:`.ingest`),
the JSON query API (:mod:`.query_api`), the alerting API (:mod:`.alerts_api`), error answers
(:mod:`.errors`) and the dashboard (:mod:`.dashboard`). It sits above the domain packages
(``alerting``, ``ingest``, ``query``), which never import it (docs/architecture.md).
"""
