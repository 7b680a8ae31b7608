"""``/apps/{client_id}/{env}/alerts``: the app env's active alerts, rules, silences and recent
history, its channels (secrets masked) and health check, and its uptime status; the numbers come
from the same store reads as the API's ``alerts``, ``alert-rules``, ``channels``, ``silences`` and
``alerts/history`` (the views of :mod:`apitally_hub.web.alerts_api`). For admins, the controls
that change them: the forms of :mod:`.alert_forms`, and this page's health-check form."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from apitally_hub.alerting.model import labels_of
from apitally_hub.query.service import QueryService
from apitally_hub.storage.records import AppKey
from apitally_hub.web.alerts_api import channel_view, instance_view, rule_view, silence_view
from apitally_hub.web.context import HubContext
from apitally_hub.web.dashboard.pages.common import chrome
from apitally_hub.web.dashboard.site import Dashboard, env_switch
from apitally_hub.web.dashboard.views import View

DONE = {
    "rule-saved": "Rule saved.",
    "rule-enabled": "Rule enabled.",
    "rule-disabled": "Rule disabled.",
    "rule-deleted": "Rule deleted.",
    "channel-saved": "Channel saved.",
    "channel-deleted": "Channel deleted.",
    "test-sent": "Test notification queued.",
    "silence-created": "Silence created.",
    "silence-ended": "Silence ended.",
    "health-check-saved": "Health check saved.",
    "health-check-off": "Health check turned off.",
}
"""What the page says after a change (``?done=``)."""


async def alerts(dash: Dashboard, request: Request) -> Response:
    view = dash.view(request)
    if (redirect := env_switch(request, view, "alerts")) is not None:
        return redirect
    return await render_alerts(dash, request, view)


async def render_alerts(
    dash: Dashboard,
    request: Request,
    view: View,
    *,
    health_values: dict[str, Any] | None = None,
    health_errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    assert view.app is not None
    app, context = view.app, dash.context

    def data(q: QueryService) -> dict[str, Any]:
        page = alert_page_data(context, app)
        check = page["health_check"]
        values = health_values
        if values is None:
            values = {
                "url": check["url"] if check else "",
                "enabled": check["enabled"] if check else True,
                "accepted_status_codes": " ".join(check["accepted_status_codes"]) if check else "",
            }
        return {**chrome(q, view), **page, "health_values": values}

    return await dash.render(
        request,
        "alerts.html",
        data,
        view=view,
        active="alerts",
        page_title="Alerts",
        show_controls=False,
        status_code=status_code,
        done=DONE.get(request.query_params.get("done", "")),
        health_errors=health_errors or {},
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
    check = store.health_check(app)
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
        "channels": [channel_view(c) for c in store.channels(app)],
        "health_check": None if check is None else {"url": check.url, "source": check.source, **check.config},
    }


def routes(dash: Dashboard) -> list[Route]:
    return [dash.page("/apps/{client_id}/{env}/alerts", alerts, name="alerts")]
