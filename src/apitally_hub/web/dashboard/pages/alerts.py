"""``/apps/{client_id}/{env}/alerts``: the app env's active alerts, rules, silences and recent
history, and its uptime status. Read-only (changes go through the JSON API or the CLI); the
numbers come from the same store reads as the API's ``alerts``, ``alert-rules``, ``silences`` and
``alerts/history`` (the views of :mod:`apitally_hub.web.alerts_api`)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from apitally_hub.alerting.model import labels_of
from apitally_hub.query.service import QueryService
from apitally_hub.storage.records import AppKey
from apitally_hub.web.alerts_api import instance_view, rule_view, silence_view
from apitally_hub.web.context import HubContext
from apitally_hub.web.dashboard.pages.common import chrome
from apitally_hub.web.dashboard.site import Dashboard, env_switch


async def alerts(dash: Dashboard, request: Request) -> Response:
    view = dash.view(request)
    if (redirect := env_switch(request, view, "alerts")) is not None:
        return redirect
    assert view.app is not None
    app, context = view.app, dash.context

    def data(q: QueryService) -> dict[str, Any]:
        return {**chrome(q, view), **alert_page_data(context, app)}

    return await dash.render(
        request, "alerts.html", data, view=view, active="alerts", page_title="Alerts", show_controls=False
    )


def alert_page_data(context: HubContext, app: AppKey) -> dict[str, Any]:
    """The page's data; synchronous (a worker thread calls it)."""
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


def routes(dash: Dashboard) -> list[Route]:
    return [dash.page("/apps/{client_id}/{env}/alerts", alerts, name="alerts")]
