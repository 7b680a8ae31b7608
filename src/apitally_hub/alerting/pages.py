"""What the dashboard's alert page of an app env shows (``/apps/{client_id}/{env}/alerts``, drawn
by :mod:`apitally_hub.dashboard.pages.alerts`): its active alerts, rules, silences and recent
history, and its uptime status. Read-only (changes go through the JSON API or the CLI); the
numbers come from the same store reads as the API's ``alerts``, ``alert-rules``, ``silences`` and
``alerts/history``. Synchronous: call it on a worker thread."""

from __future__ import annotations

from typing import Any

from apitally_hub.alerting.api import instance_view, rule_view, silence_view
from apitally_hub.alerting.model import labels_of
from apitally_hub.context import HubContext
from apitally_hub.storage.base import AppKey


def alert_page_data(context: HubContext, app: AppKey) -> dict[str, Any]:
    store, now = context.store.alerts, context.clock()
    rules = {r.id: r for r in store.rules(app)}
    instances = store.app_instances(app)
    silences = store.silences(app)
    active = {s.rule_id or "*" for s in silences if s.starts_at <= now < s.ends_at}
    muted = set(rules) if "*" in active else active
    names = {r.id: r.name for r in rules.values()}
    return {
        "alerts": [instance_view(i, rules, muted) for i in instances if i.state != "normal"],
        "rules": [rule_view(r, [i for i in instances if i.rule_id == r.id]) for r in rules.values()],
        "silences": [{**silence_view(s, now), "rule_name": names.get(s.rule_id or "")} for s in silences],
        "history": [
            {
                "at": h.at,
                "rule": names.get(h.rule_id, h.rule_id),
                "labels": labels_of(h.labels_key),
                "from": h.from_state,
                "to": h.to_state,
                "value": h.value,
                "note": h.note,
            }
            for h in store.history(app, limit=100)
        ],
        "uptime": context.queries.uptime_status(app),
    }


__all__ = ["alert_page_data"]
