"""The Alerts page's forms (admins only; the access gate refuses a viewer's POST whatever a page
shows): create, edit, enable or disable, test and delete rules; create, edit, test and delete
channels; create and end silences; set, change and turn off the health check.

A form's text fields become the JSON API's body (:func:`rule_body`, :func:`channel_body`, ...:
numbers where they parse, the text as it is where they do not, so that the one validation reports
it) and go through the same functions as the API (:mod:`apitally_hub.web.alerts_actions`); their
field errors are shown next to the form's fields (:func:`form_errors`). Channel secrets are never
sent to a browser: an edit form shows the masked values of :mod:`apitally_hub.web.masking`, and
sending one back keeps the stored secret (an emptied secret field removes it). Entries of the
``--alerts-file`` are read-only (409), as in the API.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from apitally_hub.alerting.model import CONDITIONS, COUNT_METRICS, METRICS, NO_DATA_POLICIES
from apitally_hub.alerting.validation import CHANNEL_TYPES, SMTP_SECURITY, Invalid
from apitally_hub.errors import HubError
from apitally_hub.protocol.checker import FieldError
from apitally_hub.query.service import QueryService
from apitally_hub.storage.records import AppKey
from apitally_hub.web import alerts_actions as actions
from apitally_hub.web.dashboard.pages.alerts import render_alerts
from apitally_hub.web.dashboard.pages.common import chrome
from apitally_hub.web.dashboard.site import Dashboard, app_path
from apitally_hub.web.dashboard.views import View
from apitally_hub.web.masking import MASK, masked_config

RULE_TEXT = ("name", "description")
RULE_SCOPE = ("path_pattern", "method", "consumer", "consumer_group", "for_each")
RULE_NUMBERS = ("threshold", "window_minutes", "for_minutes", "keep_firing_minutes", "repeat_minutes")
RULE_INTEGERS = ("min_requests", "apdex_ms")
EMAIL_TEXT = ("smtp_host", "smtp_security", "username", "from_address")
_SPLIT = re.compile(r"[\s,;]+")
FIELD_ALIASES = {"ends_at": "minutes", "starts_at": "minutes"}
"""Fields the API knows that a form gives as another (a silence's length in minutes)."""


# -- form text -> the API's body ------------------------------------------------------------------


def _number(text: str, *, integer: bool = False) -> Any:
    """``"5"`` -> 5, ``"0.5"`` -> 0.5; text that is no number stays text (the validation says so)."""
    text = text.strip()
    try:
        return int(text)
    except ValueError:
        pass
    if integer:
        return text
    try:
        return float(text)
    except ValueError:
        return text


def _filled(form: Mapping[str, str], name: str) -> str | None:
    value = form.get(name, "").strip()
    return value or None


def rule_body(form: Mapping[str, str], channels: list[str]) -> dict[str, Any]:
    body: dict[str, Any] = {"metric": form.get("metric", ""), "condition": form.get("condition", "")}
    for name in RULE_TEXT:
        body[name] = form.get(name, "")
    for name in (*RULE_NUMBERS, *RULE_INTEGERS):
        if (value := _filled(form, name)) is not None:
            body[name] = _number(value, integer=name in RULE_INTEGERS)
    if (no_data := _filled(form, "no_data")) is not None:
        body["no_data"] = no_data
    scope = {name: value for name in RULE_SCOPE if (value := _filled(form, name)) is not None}
    if scope:
        body["scope"] = scope
    body["channels"] = channels
    body["enabled"] = "enabled" in form
    return body


def parse_headers(text: str) -> dict[str, str]:
    """``"Name: value"`` lines -> a dict (a line without ``:`` is a name with an empty value)."""
    headers: dict[str, str] = {}
    for line in text.splitlines():
        if line.strip():
            name, _, value = line.partition(":")
            headers[name.strip()] = value.strip()
    return headers


def channel_body(form: Mapping[str, str], *, editing: bool) -> dict[str, Any]:
    """The fields of the chosen type only (another type's fields would be unknown to it); a secret
    left masked is omitted (the stored one is kept), an emptied one sent empty (removed)."""
    type_ = form.get("type", "")
    body: dict[str, Any] = {"name": form.get("name", ""), "type": type_}
    secret_fields: tuple[str, ...] = ()
    if type_ in ("webhook", "slack", "teams"):
        body["url"] = form.get("url", "")
    if type_ == "webhook":
        secret_fields = ("secret",)
        if (headers := _filled(form, "headers")) is not None:
            body["headers"] = parse_headers(headers)
    if type_ == "email":
        secret_fields = ("password",)
        for name in EMAIL_TEXT:
            if (value := _filled(form, name)) is not None:
                body[name] = value
        if (port := _filled(form, "smtp_port")) is not None:
            body["smtp_port"] = _number(port, integer=True)
        if (timeout := _filled(form, "timeout_seconds")) is not None:
            body["timeout_seconds"] = _number(timeout)
        body["to"] = [a for a in _SPLIT.split(form.get("to", "")) if a]
    for name in secret_fields:
        value = form.get(name, "")
        if value != MASK and (value or editing):
            body[name] = value
    return body


def silence_body(form: Mapping[str, str]) -> dict[str, Any]:
    body: dict[str, Any] = {"comment": form.get("comment", "")}
    if (rule_id := _filled(form, "rule_id")) is not None:
        body["rule_id"] = rule_id
    minutes = _filled(form, "minutes")
    body["minutes"] = None if minutes is None else _number(minutes)
    return body


def health_check_body(form: Mapping[str, str]) -> dict[str, Any]:
    body: dict[str, Any] = {"url": form.get("url", ""), "enabled": "enabled" in form}
    if (codes := _filled(form, "accepted_status_codes")) is not None:
        body["accepted_status_codes"] = [c for c in _SPLIT.split(codes) if c]
    return body


def form_errors(errors: list[FieldError]) -> dict[str, str]:
    """Field errors -> the form field each belongs to (``("body", "scope", "for_each")`` ->
    ``for_each``, ``("body", "channels", 0)`` -> ``channels``) and its messages."""
    shown: dict[str, list[str]] = {}
    for error in errors:
        loc = [str(part) for part in error.loc[1:]]
        if loc[:1] == ["scope"]:
            loc = loc[1:] or ["scope"]
        field = FIELD_ALIASES.get(loc[0], loc[0]) if loc else "form"
        message = error.msg if len(loc) < 2 or field == "channels" else f"{loc[1]}: {error.msg}"
        shown.setdefault(field, []).append(message)
    return {field: "; ".join(messages) for field, messages in shown.items()}


# -- the API's documents -> form text --------------------------------------------------------------


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def rule_values(spec: Mapping[str, Any], name: str, enabled: bool) -> dict[str, Any]:
    scope = spec.get("scope", {})
    values: dict[str, Any] = {"name": name, "enabled": enabled, "channels": list(spec.get("channels", []))}
    for key in ("metric", "condition", "no_data", "description", *RULE_NUMBERS, *RULE_INTEGERS):
        values[key] = _text(spec.get(key))
    for key in RULE_SCOPE:
        values[key] = _text(scope.get(key))
    values["endpoints"] = scope.get("endpoints", [])
    return values


NEW_RULE = {
    **rule_values({"condition": ">", "metric": "server_errors", "window_minutes": 5}, "", True),
}


def channel_values(name: str, type_: str, config: Mapping[str, Any]) -> dict[str, Any]:
    shown = masked_config(config)
    values = {key: _text(value) for key, value in shown.items() if not isinstance(value, list | dict)}
    values.update(name=name, type=type_)
    values["to"] = ", ".join(shown.get("to", []))
    values["headers"] = "\n".join(f"{k}: {v}" for k, v in shown.get("headers", {}).items())
    for key in ("secret", "password"):
        values[key] = MASK if shown.get(f"{key}_set") else ""
    return values


# -- handlers ---------------------------------------------------------------------------------------


def _app(dash: Dashboard, request: Request) -> tuple[View, AppKey]:
    view = dash.view(request)
    assert view.app is not None
    return view, view.app


def _done(request: Request, app: AppKey, what: str) -> Response:
    return RedirectResponse(app_path(request, "alerts", app, done=what), status_code=303)


async def _render(
    dash: Dashboard,
    request: Request,
    view: View,
    template: str,
    title: str,
    *,
    status_code: int = 200,
    **values: Any,
) -> Response:
    def data(q: QueryService) -> dict[str, Any]:
        return chrome(q, view)

    return await dash.render(
        request,
        template,
        data,
        view=view,
        active="alerts",
        page_title=title,
        show_controls=False,
        status_code=status_code,
        **values,
    )


async def _rule_form(
    dash: Dashboard,
    request: Request,
    view: View,
    app: AppKey,
    values: Mapping[str, Any],
    errors: Mapping[str, str],
    *,
    rule_id: str | None = None,
    status_code: int = 200,
) -> Response:
    channels = await dash.context.run(lambda: dash.context.store.alerts.channels(app))
    return await _render(
        dash,
        request,
        view,
        "alert_rule_form.html",
        "Edit rule" if rule_id else "New rule",
        status_code=status_code,
        values=values,
        errors=errors,
        rule_id=rule_id,
        channels=[{"id": c.id, "name": c.name} for c in channels],
        metrics=METRICS,
        count_metrics=COUNT_METRICS,
        conditions=tuple(CONDITIONS),
        no_data_policies=NO_DATA_POLICIES,
    )


async def new_rule(dash: Dashboard, request: Request) -> Response:
    view, app = _app(dash, request)
    return await _rule_form(dash, request, view, app, NEW_RULE, {})


async def edit_rule(dash: Dashboard, request: Request) -> Response:
    view, app = _app(dash, request)
    rule = await dash.context.run(lambda: actions.rule_of(dash.context, app, request.path_params["id"]))
    actions.writable(rule.source, "rule")
    values = rule_values(rule.spec, rule.name, rule.enabled)
    return await _rule_form(dash, request, view, app, values, {}, rule_id=rule.id)


async def save_rule(dash: Dashboard, request: Request) -> Response:
    view, app = _app(dash, request)
    form: dict[str, str] = request.state.form
    channels = request.state.form_lists.get("channels", [])
    rule_id = request.path_params.get("id")
    context = dash.context
    body = rule_body(form, channels)

    def work() -> str:
        current = None if rule_id is None else actions.rule_of(context, app, rule_id)
        if current is not None:
            actions.writable(current.source, "rule")
            endpoints = current.spec.get("scope", {}).get("endpoints")
            if endpoints:  # the form does not edit a scope's endpoint list: it keeps it
                body["scope"] = {**body.get("scope", {}), "endpoints": endpoints}
        return actions.save_rule(context, app, body, current).name

    try:
        await context.run(work)
    except Invalid as exc:
        values = {**form, "channels": channels, "enabled": "enabled" in form}
        status = exc.status_code if isinstance(exc, actions.Conflict) else 422
        errors = form_errors(exc.errors)
        return await _rule_form(dash, request, view, app, values, errors, rule_id=rule_id, status_code=status)
    return _done(request, app, "rule-saved")


async def rule_action(dash: Dashboard, request: Request) -> Response:
    view, app = _app(dash, request)
    action, rule_id, context = request.state.form.get("action"), request.path_params["id"], dash.context
    if action in ("enable", "disable"):
        await context.run(lambda: actions.set_rule_enabled(context, app, rule_id, action == "enable"))
        return _done(request, app, f"rule-{action}d")
    if action == "test":
        await context.run(lambda: actions.test_rule(context, app, rule_id))
        return _done(request, app, "test-sent")
    if action == "delete":
        rule = await context.run(lambda: actions.rule_of(context, app, rule_id))
        actions.writable(rule.source, "rule")
        if request.state.form.get("confirm") != "yes":
            return await _confirm(dash, request, view, "rule", rule.name)
        await context.run(lambda: actions.delete_rule(context, app, rule_id))
        return _done(request, app, "rule-deleted")
    raise HubError(400, "Unknown action")


async def _confirm(dash: Dashboard, request: Request, view: View, kind: str, name: str) -> Response:
    return await _render(
        dash,
        request,
        view,
        "alert_confirm.html",
        f"Delete {kind}",
        kind=kind,
        name=name,
        action=request.url.path,
    )


async def _channel_form(
    dash: Dashboard,
    request: Request,
    view: View,
    values: Mapping[str, Any],
    errors: Mapping[str, str],
    *,
    channel_id: str | None = None,
    status_code: int = 200,
) -> Response:
    return await _render(
        dash,
        request,
        view,
        "alert_channel_form.html",
        "Edit channel" if channel_id else "New channel",
        status_code=status_code,
        values=values,
        errors=errors,
        channel_id=channel_id,
        channel_types=CHANNEL_TYPES,
        smtp_security=SMTP_SECURITY,
        mask=MASK,
    )


async def new_channel(dash: Dashboard, request: Request) -> Response:
    view, _ = _app(dash, request)
    return await _channel_form(dash, request, view, {"type": "webhook", "smtp_security": "starttls"}, {})


async def edit_channel(dash: Dashboard, request: Request) -> Response:
    view, app = _app(dash, request)
    channel = await dash.context.run(lambda: actions.channel_of(dash.context, app, request.path_params["id"]))
    actions.writable(channel.source, "channel")
    values = channel_values(channel.name, channel.type, channel.config)
    return await _channel_form(dash, request, view, values, {}, channel_id=channel.id)


async def save_channel(dash: Dashboard, request: Request) -> Response:
    view, app = _app(dash, request)
    form: dict[str, str] = request.state.form
    channel_id = request.path_params.get("id")
    context = dash.context
    body = channel_body(form, editing=channel_id is not None)

    def work() -> str:
        current = None if channel_id is None else actions.channel_of(context, app, channel_id)
        return actions.save_channel(context, app, body, current).name

    try:
        await context.run(work)
    except Invalid as exc:
        status = exc.status_code if isinstance(exc, actions.Conflict) else 422
        values = {k: v for k, v in form.items() if k != "csrf"}
        for key in ("secret", "password"):  # a secret typed in is never sent back to the browser
            values[key] = MASK if values.get(key) == MASK else ""
        return await _channel_form(
            dash, request, view, values, form_errors(exc.errors), channel_id=channel_id, status_code=status
        )
    return _done(request, app, "channel-saved")


async def channel_action(dash: Dashboard, request: Request) -> Response:
    view, app = _app(dash, request)
    action, channel_id, context = request.state.form.get("action"), request.path_params["id"], dash.context
    if action == "test":
        await context.run(lambda: actions.test_channel(context, app, channel_id))
        return _done(request, app, "test-sent")
    if action == "delete":
        channel = await context.run(lambda: actions.channel_of(context, app, channel_id))
        actions.writable(channel.source, "channel")
        if request.state.form.get("confirm") != "yes":
            return await _confirm(dash, request, view, "channel", channel.name)
        await context.run(lambda: actions.delete_channel(context, app, channel_id))
        return _done(request, app, "channel-deleted")
    raise HubError(400, "Unknown action")


async def _silence_form(
    dash: Dashboard,
    request: Request,
    view: View,
    app: AppKey,
    values: Mapping[str, Any],
    errors: Mapping[str, str],
    status_code: int = 200,
) -> Response:
    rules = await dash.context.run(lambda: dash.context.store.alerts.rules(app))
    return await _render(
        dash,
        request,
        view,
        "alert_silence_form.html",
        "New silence",
        status_code=status_code,
        values=values,
        errors=errors,
        rules=[{"id": r.id, "name": r.name} for r in rules],
    )


async def new_silence(dash: Dashboard, request: Request) -> Response:
    view, app = _app(dash, request)
    return await _silence_form(dash, request, view, app, {"minutes": "60", "rule_id": ""}, {})


async def create_silence(dash: Dashboard, request: Request) -> Response:
    view, app = _app(dash, request)
    form: dict[str, str] = request.state.form
    context = dash.context
    body = silence_body(form)
    try:
        await context.run(lambda: actions.create_silence(context, app, body))
    except Invalid as exc:
        return await _silence_form(dash, request, view, app, form, form_errors(exc.errors), status_code=422)
    return _done(request, app, "silence-created")


async def end_silence(dash: Dashboard, request: Request) -> Response:
    _, app = _app(dash, request)
    context, silence_id = dash.context, request.path_params["id"]
    await context.run(lambda: actions.end_silence(context, app, silence_id))
    return _done(request, app, "silence-ended")


async def health_check(dash: Dashboard, request: Request) -> Response:
    """The health-check form is on the Alerts page: its errors re-render that page."""
    view, app = _app(dash, request)
    form: dict[str, str] = request.state.form
    context = dash.context
    if form.get("action") == "off":
        await context.run(lambda: actions.delete_health_check(context, app))
        return _done(request, app, "health-check-off")
    body = health_check_body(form)
    try:
        await context.run(lambda: actions.put_health_check(context, app, body))
    except Invalid as exc:
        values = {"url": form.get("url", ""), "enabled": "enabled" in form}
        values["accepted_status_codes"] = form.get("accepted_status_codes", "")
        return await render_alerts(
            dash, request, view, health_values=values, health_errors=form_errors(exc.errors), status_code=422
        )
    return _done(request, app, "health-check-saved")


def routes(dash: Dashboard) -> list[Route]:
    base = "/apps/{client_id}/{env}/alerts"
    post = ("POST",)
    return [
        dash.page(f"{base}/rules/new", new_rule, name="alert_rule_new"),
        dash.page(f"{base}/rules/new", save_rule, name="alert_rule_create", methods=post),
        dash.page(f"{base}/rules/{{id}}", edit_rule, name="alert_rule"),
        dash.page(f"{base}/rules/{{id}}", save_rule, name="alert_rule_save", methods=post),
        dash.page(f"{base}/rules/{{id}}/action", rule_action, name="alert_rule_action", methods=post),
        dash.page(f"{base}/channels/new", new_channel, name="alert_channel_new"),
        dash.page(f"{base}/channels/new", save_channel, name="alert_channel_create", methods=post),
        dash.page(f"{base}/channels/{{id}}", edit_channel, name="alert_channel"),
        dash.page(f"{base}/channels/{{id}}", save_channel, name="alert_channel_save", methods=post),
        dash.page(
            f"{base}/channels/{{id}}/action", channel_action, name="alert_channel_action", methods=post
        ),
        dash.page(f"{base}/silences/new", new_silence, name="alert_silence_new"),
        dash.page(f"{base}/silences/new", create_silence, name="alert_silence_create", methods=post),
        dash.page(f"{base}/silences/{{id}}/end", end_silence, name="alert_silence_end", methods=post),
        dash.page(f"{base}/health-check", health_check, name="alert_health_check", methods=post),
    ]
