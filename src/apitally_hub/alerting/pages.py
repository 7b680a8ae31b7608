"""The dashboard's alert pages, self-contained until the dashboard package lands: one page per
app env at ``/apps/{client_id}/{env}/alerts`` with its active alerts, rules, silences and recent
history (Jinja2, autoescaped, read-only; changes go through the JSON API or the CLI). Behind the
hub's access gate like every non-public path (a bearer token, or the dashboard's session once it
extends the authenticator). The numbers
come from the same store reads as the API's ``alerts``, ``alert-rules``, ``silences`` and
``alerts/history``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from apitally_hub.alerting.api import instance_view, rule_view, silence_view
from apitally_hub.alerting.model import labels_of
from apitally_hub.context import HubContext
from apitally_hub.query.api import app_param

TEMPLATES = Path(__file__).parent / "templates"


def _when(epoch: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(epoch)) if epoch else "-"


class AlertPages:
    def __init__(self, context: HubContext) -> None:
        import jinja2

        self.context = context
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True, undefined=jinja2.StrictUndefined
        )
        self.env.filters["when"] = _when

    def routes(self) -> list[Route]:
        return [Route("/apps/{client_id}/{env}/alerts", self.alerts, methods=["GET"])]

    async def alerts(self, request: Request) -> Response:
        app = app_param(request)
        store, now = self.context.store.alerts, self.context.clock()

        def work() -> dict[str, Any]:
            rules = {r.id: r for r in store.rules(app)}
            instances = store.app_instances(app)
            silences = store.silences(app)
            active = {s.rule_id or "*" for s in silences if s.starts_at <= now < s.ends_at}
            muted = set(rules) if "*" in active else active
            names = {r.id: r.name for r in rules.values()}
            return {
                "app": app,
                "now": now,
                "alerts": [instance_view(i, rules, muted) for i in instances if i.state != "normal"],
                "rules": [rule_view(r, [i for i in instances if i.rule_id == r.id]) for r in rules.values()],
                "silences": [
                    {**silence_view(s, now), "rule_name": names.get(s.rule_id or "")} for s in silences
                ],
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
                "uptime": self.context.queries.uptime_status(app),
            }

        data = await self.context.run(work)
        return HTMLResponse(self.env.get_template("alerts.html").render(**data))


__all__ = ["AlertPages"]
