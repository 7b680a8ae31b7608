"""What a rule observes: its metric per label set over its window, fetched through the query
layer (:class:`~apitally_hub.query.service.QueryService`: the numbers alerts see are the numbers
the API, the dashboard and the report show)."""

from __future__ import annotations

from collections.abc import Mapping

from apitally_hub.alerting.model import COUNT_METRICS, Rule, label_names, labels_key
from apitally_hub.query.service import QueryService
from apitally_hub.query.timewindow import Window
from apitally_hub.storage.records import TrafficFilter

_TRAFFIC_FIELDS = {
    "requests": "requests",
    "client_errors": "client_errors",
    "server_errors": "server_errors",
    "error_rate": "error_rate",
    "response_time_p50": "p50_ms",
    "response_time_p95": "p95_ms",
    "response_time_p99": "p99_ms",
    "apdex": "apdex",
}


def _labels(rule: Rule, key: tuple[str, ...]) -> str:
    return labels_key(dict(zip(label_names(rule.scope.for_each), key, strict=True)))


def observe(
    queries: QueryService, rule: Rule, now: float, minute_seconds: float = 60.0
) -> dict[str, float | None]:
    """labels key -> value (None: no data) for the label sets seen in the window."""
    if rule.metric == "uptime":
        status = queries.uptime_status(rule.app)["status"]
        return {"{}": None if status == "unknown" else float(status == "up")}
    window = Window(now - rule.window_minutes * minute_seconds, now)
    scope = rule.scope
    flt = TrafficFilter(consumer=scope.consumer, consumer_group=scope.consumer_group)
    if len(scope.endpoints) == 1 and scope.path_pattern is None and scope.method is None:
        flt = TrafficFilter(  # narrow in the query; scope.matches still decides
            method=scope.endpoints[0].method,
            path=scope.endpoints[0].path,
            consumer=scope.consumer,
            consumer_group=scope.consumer_group,
        )
    match = scope.matches if scope.narrows_endpoints else None
    if rule.metric == "validation_errors":
        counts = queries.scoped_validation_errors(
            rule.app, window, flt=flt, match=match, by_endpoint=scope.for_each == "endpoint"
        )
        return {_labels(rule, key): float(n) for key, n in counts.items()}
    traffic = queries.scoped_traffic(
        rule.app, window, flt=flt, match=match, by=scope.for_each, apdex_ms=rule.apdex_ms
    )
    field = _TRAFFIC_FIELDS[rule.metric]
    values: dict[str, float | None] = {}
    for key, stats in traffic.items():
        value = stats[field]
        if rule.metric not in COUNT_METRICS and stats["requests"] < rule.min_requests:
            value = None
        values[_labels(rule, key)] = None if value is None else float(value)
    return values


def value_when_unseen(rule: Rule) -> float | None:
    """The value of a known label set that had no traffic in the window: 0 for counts, else no data."""
    return 0.0 if rule.metric in COUNT_METRICS else None


def in_scope(rule: Rule, labels: Mapping[str, str]) -> bool:
    """Whether a stored instance's labels still belong to the rule (its scope may have changed)."""
    if tuple(sorted(labels)) != tuple(sorted(label_names(rule.scope.for_each))):
        return False
    if rule.scope.for_each == "endpoint":
        return not rule.scope.narrows_endpoints or rule.scope.matches(labels["method"], labels["path"])
    return True
