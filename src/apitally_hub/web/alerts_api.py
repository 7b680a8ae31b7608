"""The alerting JSON API under ``/api/{client_id}/{env}/``.

=====================================  ==============================================================
``GET|POST channels``                  list; create ``{"name", "type", ...}`` -> 201 ``{"id"}``
``GET|PUT|PATCH|DELETE channels/{id}`` one channel (secrets are never shown, see :mod:`.masking`)
``POST channels/{id}/test``            send a test notification -> 202 ``{"notification_ids"}``
``GET|POST alert-rules``               list (with their alerts' states); create -> 201 ``{"id"}``
``GET|PUT|PATCH|DELETE alert-rules/{id}``  one rule (deleting a firing rule sends resolved notices)
``POST alert-rules/{id}/test``         a test notification to the rule's channels
``GET alerts``                         alert instances and their state (``?state=firing``)
``GET alerts/history``                 state changes, newest first (``?rule_id``, ``limit``, ``cursor``)
``GET notifications[/{id}]``           the outbox: deliveries, attempts, errors (``?status``)
``GET|POST silences``, ``DELETE silences/{id}``  time-bounded mutes of a rule or the whole app env
``GET|PUT|DELETE health-check``        the app env's optional health check
=====================================  ==============================================================

Bodies are JSON objects of at most 64 KiB (``Content-Type: application/json``); anything
invalid — including a lone UTF-16 surrogate escape such as ``"\\ud800"`` — is a 422 whose
``detail`` names each field (``{"loc": ["body", "threshold"], "msg": ..., "type": ...}``) and
changes nothing (the checks and the changes are :mod:`.alerts_actions`, shared with the dashboard's
forms). Entries from the ``--alerts-file`` are read-only here (409). A silence lasts at
most 90 days, however it is given (``minutes`` or ``ends_at``). Channel URLs, header values and
secrets are masked in answers; sending a masked value back keeps the stored one. Client ids
outside the ``--client-id`` allow-list are 404.

Who may call it: like every ``/api/`` route, these need the hub's bearer token (or a dashboard
session with its CSRF header) when one is configured, and writes need an admin's
(:mod:`apitally_hub.security.access` gates them before they run); without a token the hub binds
only to loopback.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, cast

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from apitally_hub.alerting.model import labels_of
from apitally_hub.alerting.validation import (
    Invalid,
    rule_document,
)
from apitally_hub.errors import HubError, field_error
from apitally_hub.query.cursors import encode_cursor
from apitally_hub.query.params import int_param, text_param
from apitally_hub.storage.alert_records import (
    ChannelRecord,
    InstanceRecord,
    OutboxRecord,
    OutboxStatus,
    RuleRecord,
    SilenceRecord,
)
from apitally_hub.storage.records import AppKey
from apitally_hub.web import alerts_actions as actions
from apitally_hub.web.context import HubContext
from apitally_hub.web.masking import masked_config
from apitally_hub.web.query_api import allowed_app

_logger = logging.getLogger(__name__)

MAX_BODY = 64 * 1024
STATES = ("normal", "pending", "firing")
OUTBOX_STATUSES = ("pending", "sent", "failed", "dropped")


async def json_body(request: Request) -> Any:
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise HubError(413, f"Body larger than {MAX_BODY} bytes")
        chunks.append(chunk)
    try:
        value = json.loads(b"".join(chunks) or b"null")
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise field_error(("body",), "Should be a JSON object", "json_invalid") from None
    try:  # "\ud800" is valid JSON but no Unicode text: nothing could store or send it
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except (UnicodeEncodeError, RecursionError):
        raise field_error(
            ("body",), "Text contains a lone UTF-16 surrogate escape (\\ud800-\\udfff)", "string_unicode"
        ) from None
    return value


def channel_view(c: ChannelRecord) -> dict[str, Any]:
    return {
        "id": c.id,
        "name": c.name,
        "type": c.type,
        "source": c.source,
        "created_at": c.created_at,
        "updated_at": c.updated_at,
        **masked_config(c.config),
    }


def rule_view(r: RuleRecord, instances: list[InstanceRecord]) -> dict[str, Any]:
    counts = {state: sum(1 for i in instances if i.state == state) for state in ("pending", "firing")}
    return {
        "id": r.id,
        "source": r.source,
        "created_at": r.created_at,
        "updated_at": r.updated_at,
        **rule_document(r.name, r.enabled, r.spec),
        "alerts": counts,
    }


def instance_view(i: InstanceRecord, rules: dict[str, RuleRecord], silenced: set[str]) -> dict[str, Any]:
    rule = rules.get(i.rule_id)
    return {
        "rule_id": i.rule_id,
        "rule_name": rule.name if rule else None,
        "metric": rule.spec["metric"] if rule else None,
        "condition": rule.spec["condition"] if rule else None,
        "threshold": rule.spec["threshold"] if rule else None,
        "labels": labels_of(i.labels_key),
        "state": i.state,
        "value": i.value,
        "alert_id": i.episode,
        "pending_since": i.pending_since,
        "firing_since": i.firing_since if i.state == "firing" else None,
        "resolved_at": i.resolved_at,
        "last_evaluated_at": i.last_eval_at,
        "changed_at": i.changed_at,
        "notified": i.notified,
        "silenced": i.rule_id in silenced,
    }


def notification_view(n: OutboxRecord) -> dict[str, Any]:
    return {
        "id": n.id,
        "channel_id": n.channel_id,
        "rule_id": n.rule_id,
        "event": n.event,
        "status": n.status,
        "attempts": n.attempts,
        "created_at": n.created_at,
        "next_attempt_at": n.next_attempt_at if n.status == "pending" else None,
        "sent_at": n.sent_at,
        "last_error": n.last_error,
        "payload": json.loads(n.payload),
    }


def silence_view(s: SilenceRecord, now: float) -> dict[str, Any]:
    return {
        "id": s.id,
        "rule_id": s.rule_id,
        "starts_at": s.starts_at,
        "ends_at": s.ends_at,
        "comment": s.comment,
        "created_at": s.created_at,
        "active": s.starts_at <= now < s.ends_at,
    }


def history_cursor(cursor: str | None) -> tuple[float, str] | None:
    if cursor is None:
        return None
    try:
        value = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        value = None
    if (
        not isinstance(value, dict)
        or not isinstance(value.get("t"), int | float)
        or not isinstance(value.get("id"), str)
    ):
        raise field_error(("query", "cursor"), "cursor is not one this list handed out", "cursor")
    return float(value["t"]), value["id"]


Handler = Callable[[Request, AppKey], Awaitable[Response]]


class AlertEndpoints:
    def __init__(self, context: HubContext) -> None:
        self.context = context

    def routes(self) -> list[Route]:
        base = "/api/{client_id}/{env}"
        table: list[tuple[str, list[str], Handler]] = [
            (f"{base}/channels", ["GET"], self.list_channels),
            (f"{base}/channels", ["POST"], self.create_channel),
            (f"{base}/channels/{{id}}", ["GET"], self.get_channel),
            (f"{base}/channels/{{id}}", ["PUT", "PATCH"], self.update_channel),
            (f"{base}/channels/{{id}}", ["DELETE"], self.delete_channel),
            (f"{base}/channels/{{id}}/test", ["POST"], self.test_channel),
            (f"{base}/alert-rules", ["GET"], self.list_rules),
            (f"{base}/alert-rules", ["POST"], self.create_rule),
            (f"{base}/alert-rules/{{id}}", ["GET"], self.get_rule),
            (f"{base}/alert-rules/{{id}}", ["PUT", "PATCH"], self.update_rule),
            (f"{base}/alert-rules/{{id}}", ["DELETE"], self.delete_rule),
            (f"{base}/alert-rules/{{id}}/test", ["POST"], self.test_rule),
            (f"{base}/alerts", ["GET"], self.list_alerts),
            (f"{base}/alerts/history", ["GET"], self.history),
            (f"{base}/notifications", ["GET"], self.list_notifications),
            (f"{base}/notifications/{{id}}", ["GET"], self.get_notification),
            (f"{base}/silences", ["GET"], self.list_silences),
            (f"{base}/silences", ["POST"], self.create_silence),
            (f"{base}/silences/{{id}}", ["DELETE"], self.delete_silence),
            (f"{base}/health-check", ["GET"], self.get_health_check),
            (f"{base}/health-check", ["PUT"], self.put_health_check),
            (f"{base}/health-check", ["DELETE"], self.delete_health_check),
        ]
        endpoint = self._endpoint
        return [
            Route(path, endpoint(handler), methods=methods, name=f"alerting:{path}")
            for path, methods, handler in table
        ]

    def _endpoint(self, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            try:
                return await handler(request, allowed_app(request, self.context))
            except Invalid as exc:
                status = exc.status_code if isinstance(exc, actions.Conflict) else 422
                raise HubError(status, [error.as_dict() for error in exc.errors]) from None

        return endpoint

    async def _run(self, work: Callable[[], Any]) -> Any:
        return await self.context.run(work)

    # -- channels -----------------------------------------------------------------------------

    async def list_channels(self, request: Request, app: AppKey) -> Response:
        channels = await self._run(lambda: self.context.store.alerts.channels(app))
        return JSONResponse({"channels": [channel_view(c) for c in channels]})

    async def create_channel(self, request: Request, app: AppKey) -> Response:
        body = await json_body(request)
        channel = await self._run(lambda: actions.save_channel(self.context, app, body))
        return JSONResponse({"id": channel.id, **channel_view(channel)}, status_code=201)

    async def get_channel(self, request: Request, app: AppKey) -> Response:
        return JSONResponse(channel_view(await self._run(lambda: self._channel(request, app))))

    def _channel(self, request: Request, app: AppKey) -> ChannelRecord:
        return actions.channel_of(self.context, app, request.path_params["id"])

    async def update_channel(self, request: Request, app: AppKey) -> Response:
        current = await self._run(lambda: self._channel(request, app))
        actions.writable(current.source, "channel")
        body = await json_body(request)
        if request.method == "PATCH" and isinstance(body, dict):
            body = {"name": current.name, "type": current.type, **masked_config(current.config), **body}
        channel = await self._run(lambda: actions.save_channel(self.context, app, body, current))
        return JSONResponse({"id": channel.id, **channel_view(channel)})

    async def delete_channel(self, request: Request, app: AppKey) -> Response:
        await self._run(lambda: actions.delete_channel(self.context, app, request.path_params["id"]))
        return Response(status_code=204)

    async def test_channel(self, request: Request, app: AppKey) -> Response:
        ids = await self._run(lambda: actions.test_channel(self.context, app, request.path_params["id"]))
        return JSONResponse({"notification_ids": ids}, status_code=202)

    # -- rules --------------------------------------------------------------------------------

    def _rule(self, request: Request, app: AppKey) -> RuleRecord:
        return actions.rule_of(self.context, app, request.path_params["id"])

    async def _rule_answer(self, rule: RuleRecord, status: int) -> Response:
        instances = await self._run(lambda: self.context.store.alerts.instances(rule.id))
        return JSONResponse({"id": rule.id, **rule_view(rule, instances)}, status_code=status)

    async def list_rules(self, request: Request, app: AppKey) -> Response:
        store = self.context.store.alerts

        def work() -> list[dict[str, Any]]:
            instances = store.app_instances(app)
            return [rule_view(r, [i for i in instances if i.rule_id == r.id]) for r in store.rules(app)]

        return JSONResponse({"rules": await self._run(work)})

    async def create_rule(self, request: Request, app: AppKey) -> Response:
        body = await json_body(request)
        return await self._rule_answer(
            await self._run(lambda: actions.save_rule(self.context, app, body)), 201
        )

    async def get_rule(self, request: Request, app: AppKey) -> Response:
        rule = await self._run(lambda: self._rule(request, app))
        instances = await self._run(lambda: self.context.store.alerts.instances(rule.id))
        return JSONResponse(rule_view(rule, instances))

    async def update_rule(self, request: Request, app: AppKey) -> Response:
        current = await self._run(lambda: self._rule(request, app))
        actions.writable(current.source, "rule")
        body = await json_body(request)
        if request.method == "PATCH" and isinstance(body, dict):
            body = {**rule_document(current.name, current.enabled, current.spec), **body}
        rule = await self._run(lambda: actions.save_rule(self.context, app, body, current))
        return await self._rule_answer(rule, 200)

    async def delete_rule(self, request: Request, app: AppKey) -> Response:
        await self._run(lambda: actions.delete_rule(self.context, app, request.path_params["id"]))
        return Response(status_code=204)

    async def test_rule(self, request: Request, app: AppKey) -> Response:
        ids = await self._run(lambda: actions.test_rule(self.context, app, request.path_params["id"]))
        return JSONResponse({"notification_ids": ids}, status_code=202)

    # -- alerts and history -------------------------------------------------------------------

    async def list_alerts(self, request: Request, app: AppKey) -> Response:
        states = [s for s in (text_param(request, "state") or "").split(",") if s]
        for state in states:
            if state not in STATES:
                raise field_error(("query", "state"), f"Should be among {', '.join(STATES)}", "enum")
        store, now = self.context.store.alerts, self.context.clock()

        def work() -> dict[str, Any]:
            rules = {r.id: r for r in store.rules(app)}
            silenced = {s.rule_id or "*" for s in store.silences(app, active_at=now)}
            muted = set(rules) if "*" in silenced else silenced
            instances = store.app_instances(app, states or None)
            order = {"firing": 0, "pending": 1, "normal": 2}
            instances.sort(key=lambda i: (order.get(i.state, 3), -(i.changed_at or 0)))
            return {"now": now, "alerts": [instance_view(i, rules, muted) for i in instances]}

        return JSONResponse(await self._run(work))

    async def history(self, request: Request, app: AppKey) -> Response:
        limit = int_param(request, "limit", 100, 1, 1000)
        rule_id = text_param(request, "rule_id")
        before = history_cursor(text_param(request, "cursor"))
        store = self.context.store.alerts

        def work() -> dict[str, Any]:
            entries = store.history(app, limit=limit + 1, rule_id=rule_id, before=before)
            shown = entries[:limit]
            names = {r.id: r.name for r in store.rules(app)}
            next_cursor = (
                encode_cursor({"t": shown[-1].at, "id": shown[-1].id}) if len(entries) > limit else None
            )
            return {
                "history": [
                    {
                        "id": e.id,
                        "rule_id": e.rule_id,
                        "rule_name": names.get(e.rule_id),
                        "labels": labels_of(e.labels_key),
                        "at": e.at,
                        "from": e.from_state,
                        "to": e.to_state,
                        "value": e.value,
                        "note": e.note,
                    }
                    for e in shown
                ],
                "next_cursor": next_cursor,
            }

        return JSONResponse(await self._run(work))

    async def list_notifications(self, request: Request, app: AppKey) -> Response:
        status = text_param(request, "status")
        if status is not None and status not in OUTBOX_STATUSES:
            raise field_error(("query", "status"), f"Should be one of {', '.join(OUTBOX_STATUSES)}", "enum")
        limit = int_param(request, "limit", 100, 1, 1000)
        wanted = cast("OutboxStatus | None", status)
        rows = await self._run(
            lambda: self.context.store.alerts.notifications(app, limit=limit, status=wanted)
        )
        return JSONResponse({"notifications": [notification_view(n) for n in rows]})

    async def get_notification(self, request: Request, app: AppKey) -> Response:
        found = await self._run(lambda: self.context.store.alerts.notification(request.path_params["id"]))
        if found is None or found.app != app:
            raise HubError(404, "No such notification")
        return JSONResponse(notification_view(found))

    # -- silences -----------------------------------------------------------------------------

    async def list_silences(self, request: Request, app: AppKey) -> Response:
        now = self.context.clock()
        rows = await self._run(lambda: self.context.store.alerts.silences(app))
        return JSONResponse({"silences": [silence_view(s, now) for s in rows]})

    async def create_silence(self, request: Request, app: AppKey) -> Response:
        body = await json_body(request)
        record = await self._run(lambda: actions.create_silence(self.context, app, body))
        return JSONResponse({"id": record.id, **silence_view(record, self.context.clock())}, status_code=201)

    async def delete_silence(self, request: Request, app: AppKey) -> Response:
        await self._run(lambda: actions.end_silence(self.context, app, request.path_params["id"]))
        return Response(status_code=204)

    # -- health check -------------------------------------------------------------------------

    async def get_health_check(self, request: Request, app: AppKey) -> Response:
        check = await self._run(lambda: self.context.store.alerts.health_check(app))
        if check is None:
            raise HubError(404, "No health check configured for this app env")
        return JSONResponse(
            {
                "url": check.url,
                **check.config,
                "source": check.source,
                "status": check.status,
                "checked_at": check.checked_at,
                "status_code": check.status_code,
                "latency_ms": check.latency_ms,
                "error": check.error,
                "since": check.changed_at,
            }
        )

    async def put_health_check(self, request: Request, app: AppKey) -> Response:
        body = await json_body(request)
        await self._run(lambda: actions.put_health_check(self.context, app, body))
        return await self.get_health_check(request, app)

    async def delete_health_check(self, request: Request, app: AppKey) -> Response:
        await self._run(lambda: actions.delete_health_check(self.context, app))
        return Response(status_code=204)
