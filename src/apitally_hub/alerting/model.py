"""What an alert rule is: metrics, conditions, scopes and label sets, as typed values.

A rule's stored spec (``RuleRecord.spec``) is the normalized JSON that :mod:`.validation`
produces; :func:`rule_from_record` turns it into a :class:`Rule`.

Metrics over the rule's window (the minutes overlapping ``[now - window, now]``):

- counts: ``requests``, ``client_errors`` (4xx), ``server_errors`` (5xx), ``validation_errors``
  (the 422 details) — no traffic is a real 0, never "no data";
- ratios: ``error_rate`` ((4xx + 5xx) / requests), ``response_time_p50``/``p95``/``p99`` (ms),
  ``apdex`` (with the rule's ``apdex_ms``) — undefined without requests (fewer than
  ``min_requests``): that is **no data**, handled by the rule's ``no_data`` policy;
- ``uptime``: 1 while the app env is up, 0 while it is down (no instance synced for its window, or
  its health check failing); no data before the env was ever seen. Typical rule: ``uptime < 1``.
"""

from __future__ import annotations

import fnmatch
import json
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from apitally_hub.storage.alert_records import RuleRecord
from apitally_hub.storage.records import AppKey

METRICS: tuple[str, ...] = (
    "requests",
    "client_errors",
    "server_errors",
    "error_rate",
    "validation_errors",
    "response_time_p50",
    "response_time_p95",
    "response_time_p99",
    "apdex",
    "uptime",
)
COUNT_METRICS = frozenset({"requests", "client_errors", "server_errors", "validation_errors"})
"""Metrics for which "no traffic" is the value 0."""

CONDITIONS: Mapping[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
}

NoData = Literal["keep", "ok", "alerting"]
NO_DATA_POLICIES: tuple[str, ...] = ("keep", "ok", "alerting")
"""``keep``: the state stays as it is (a pending timer neither advances to firing nor resets, a
firing alert keeps firing) — the default, so a rule on a sparse endpoint does not flap;
``ok``: no data counts as the condition not holding (a firing alert resolves);
``alerting``: no data counts as the condition holding."""

ForEach = Literal["endpoint", "consumer"]

State = Literal["normal", "pending", "firing"]


@dataclass(frozen=True)
class Endpoint:
    method: str | None
    """Upper case; None matches every method."""
    path: str
    """A route template, e.g. ``/items/{item_id}``."""


@dataclass(frozen=True)
class Scope:
    """Which traffic a rule looks at: all of it by default; narrowed by endpoints (exact, or a
    glob ``path_pattern`` with an optional ``method``) and/or a consumer or consumer group."""

    endpoints: tuple[Endpoint, ...] = ()
    path_pattern: str | None = None
    method: str | None = None
    consumer: str | None = None
    consumer_group: str | None = None
    for_each: ForEach | None = None

    @property
    def narrows_endpoints(self) -> bool:
        return bool(self.endpoints) or self.path_pattern is not None or self.method is not None

    def matches(self, method: str, path: str) -> bool:
        """Whether traffic to ``method path`` is in scope (consumer filters apply in the query)."""
        if not self.narrows_endpoints:
            return True
        if any(e.path == path and (e.method is None or e.method == method) for e in self.endpoints):
            return True
        if self.path_pattern is None and self.method is None:
            return False
        if self.method is not None and self.method != method:
            return False
        return self.path_pattern is None or fnmatch.fnmatchcase(path, self.path_pattern)

    def as_dict(self) -> dict[str, Any]:
        result: dict[str, Any] = {}
        if self.endpoints:
            result["endpoints"] = [{"method": e.method, "path": e.path} for e in self.endpoints]
        for key in ("path_pattern", "method", "consumer", "consumer_group", "for_each"):
            if getattr(self, key) is not None:
                result[key] = getattr(self, key)
        return result


@dataclass(frozen=True)
class Rule:
    id: str
    app: AppKey
    name: str
    metric: str
    condition: str
    threshold: float
    window_minutes: float
    for_minutes: float
    keep_firing_minutes: float
    repeat_minutes: float
    """Reminders while firing, every this many minutes (0: none)."""
    no_data: NoData
    min_requests: int
    """Ratio metrics need at least this many requests in the window to have a value."""
    apdex_ms: int
    scope: Scope
    channels: tuple[str, ...]
    enabled: bool
    description: str

    def holds(self, value: float) -> bool:
        return CONDITIONS[self.condition](value, self.threshold)

    @property
    def summary(self) -> str:
        return f"{self.metric} {self.condition} {format_number(self.threshold)}"


def format_number(value: float | None) -> str:
    if value is None:
        return "no data"
    return str(int(value)) if float(value).is_integer() else f"{value:.4g}"


def labels_key(labels: Mapping[str, str]) -> str:
    return json.dumps(dict(labels), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def labels_of(key: str) -> dict[str, str]:
    value = json.loads(key)
    return value if isinstance(value, dict) else {}


def label_names(for_each: ForEach | None) -> tuple[str, ...]:
    return {"endpoint": ("method", "path"), "consumer": ("consumer",), None: ()}[for_each]


def scope_from_spec(spec: Mapping[str, Any]) -> Scope:
    return Scope(
        endpoints=tuple(Endpoint(e.get("method"), e["path"]) for e in spec.get("endpoints", ())),
        path_pattern=spec.get("path_pattern"),
        method=spec.get("method"),
        consumer=spec.get("consumer"),
        consumer_group=spec.get("consumer_group"),
        for_each=spec.get("for_each"),
    )


def rule_from_record(record: RuleRecord) -> Rule:
    spec = record.spec
    return Rule(
        id=record.id,
        app=record.app,
        name=record.name,
        metric=spec["metric"],
        condition=spec["condition"],
        threshold=float(spec["threshold"]),
        window_minutes=float(spec["window_minutes"]),
        for_minutes=float(spec.get("for_minutes", 0)),
        keep_firing_minutes=float(spec.get("keep_firing_minutes", 0)),
        repeat_minutes=float(spec.get("repeat_minutes", 0)),
        no_data=spec.get("no_data", "keep"),
        min_requests=int(spec.get("min_requests", 1)),
        apdex_ms=int(spec.get("apdex_ms", 500)),
        scope=scope_from_spec(spec.get("scope", {})),
        channels=tuple(spec.get("channels", ())),
        enabled=record.enabled,
        description=spec.get("description", ""),
    )
