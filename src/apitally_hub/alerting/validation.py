"""Strict validation of what the API and the rules file accept: channels, rules, silences and
health checks. Each ``parse_*`` returns the normalized document, or raises :class:`Invalid` with
every :class:`~apitally_hub.protocol.checker.FieldError` found (``loc`` names the field, e.g.
``("body", "scope", "for_each")``). Unknown fields are errors too (a typo must not be ignored).
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Iterable, Mapping
from typing import Any

from apitally_hub.alerting.model import CONDITIONS, COUNT_METRICS, METRICS, NO_DATA_POLICIES
from apitally_hub.alerting.urls import url_problem
from apitally_hub.protocol.checker import FieldError, Loc

CHANNEL_TYPES = ("webhook", "slack", "teams", "email")
SMTP_SECURITY = ("starttls", "tls", "none")
DEFAULT_SMTP_PORTS = {"starttls": 587, "tls": 465, "none": 25}
SECRET_FIELDS = ("secret", "password")
"""Channel settings never shown by the API (it says ``"secret_set": true`` instead)."""

MAX_NAME = 200
MAX_TEXT = 2000
MAX_ENDPOINTS = 100
MAX_RECIPIENTS = 20
MAX_WINDOW_MINUTES = 60
MAX_PERIOD_MINUTES = 7 * 24 * 60
MAX_SILENCE_MINUTES = 90 * 24 * 60
_EMAIL_RE = re.compile(r"[^@\s<>\"',;]+@[^@\s<>\"',;]+\.[^@\s<>\"',;]+")
_METHOD_RE = re.compile(r"[A-Za-z]{1,16}")
_STATUS_RE = re.compile(r"[1-5](?:xx|\d\d)")
_HEADER_RE = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}")
"""A header name: an RFC 7230 token."""
_HEADER_VALUE_RE = re.compile(r"[\x21-\x7e]([\x20-\x7e]*[\x21-\x7e])?")
"""A header value: visible ASCII, inner spaces (no CR, LF, other controls or non-ASCII bytes)."""
MAX_HEADERS = 20
FORBIDDEN_HEADERS = frozenset(
    {
        # the request's framing and routing belong to the HTTP client, not to a channel's settings
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "upgrade",
        "expect",
        # the hub's own headers (a receiver trusts them: they are signed or set by the hub)
        "x-apitally-signature",
        "x-apitally-timestamp",
        "x-apitally-notification-id",
    }
)
"""Headers a webhook channel may not set (compared case-insensitively)."""


def unprintable(value: str) -> bool:
    """Whether ``value`` holds a control character or a line or paragraph separator (which would
    split a line of a log, an email header or a chat message)."""
    return any(unicodedata.category(c) in ("Cc", "Zl", "Zp") for c in value)


def header_problem(name: object, value: object) -> str | None:
    """Why ``name: value`` cannot be a webhook channel's extra header, or None."""
    if not isinstance(name, str) or not _HEADER_RE.fullmatch(name):
        return "Should be a header name (an RFC 7230 token of at most 64 characters)"
    if name.lower() in FORBIDDEN_HEADERS:
        return f"{name} cannot be configured: the hub's HTTP client or the hub itself sets it"
    if not isinstance(value, str) or len(value) > 1000 or not _HEADER_VALUE_RE.fullmatch(value):
        return "Should be a header value of 1 to 1000 visible ASCII characters (no line breaks)"
    return None


class Invalid(Exception):
    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__(errors)
        self.errors = errors


class _Fields:
    """Reads one JSON object's fields, collecting errors under ``base`` (e.g. ``("body",)``)."""

    def __init__(self, body: Any, base: Loc, errors: list[FieldError]) -> None:
        self.base = base
        self.errors = errors
        self.seen: set[str] = set()
        if not isinstance(body, Mapping):
            self.fail((), "Should be an object", "object_type")
            body = {}
        self.body: Mapping[str, Any] = body

    def fail(self, loc: Loc, msg: str, type_: str) -> None:
        self.errors.append(FieldError((*self.base, *loc), msg, type_))

    def has(self, name: str) -> bool:
        return name in self.body and self.body[name] is not None

    def raw(self, name: str) -> Any:
        self.seen.add(name)
        return self.body.get(name)

    def text(
        self, name: str, *, required: bool = False, max_len: int = MAX_TEXT, default: str | None = None
    ) -> Any:
        value = self.raw(name)
        if value is None:
            if required:
                self.fail((name,), "Field required", "missing")
            return default
        if not isinstance(value, str):
            self.fail((name,), "Should be a string", "string_type")
            return default
        value = value.strip()
        if required and not value:
            self.fail((name,), "Should not be empty", "string_too_short")
        elif len(value) > max_len or unprintable(value):
            self.fail((name,), f"Should be at most {max_len} printable characters", "string_invalid")
        return value

    def number(
        self,
        name: str,
        *,
        required: bool = False,
        low: float | None = None,
        high: float | None = None,
        default: float | None = None,
        low_open: bool = False,
    ) -> Any:
        value = self.raw(name)
        if value is None:
            if required:
                self.fail((name,), "Field required", "missing")
            return default
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            self.fail((name,), "Should be a finite number", "float_type")
            return default
        too_low = low is not None and (value <= low if low_open else value < low)
        if too_low or (high is not None and value > high):
            bound = f"more than {low}" if low_open else f"at least {low}"
            rng = bound if high is None else f"{bound} and at most {high}"
            self.fail((name,), f"Should be {rng}", "number_range")
            return default
        return value

    def integer(self, name: str, *, low: int, high: int, default: int) -> int:
        value = self.raw(name)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            self.fail((name,), f"Should be an integer from {low} to {high}", "int_range")
            return default
        return value

    def boolean(self, name: str, default: bool) -> bool:
        value = self.raw(name)
        if value is None:
            return default
        if not isinstance(value, bool):
            self.fail((name,), "Should be a boolean", "bool_type")
            return default
        return value

    def choice(
        self, name: str, choices: Iterable[str], *, required: bool = False, default: str | None = None
    ) -> Any:
        allowed = tuple(choices)
        value = self.raw(name)
        if value is None:
            if required:
                self.fail((name,), "Field required", "missing")
            return default
        if value not in allowed:
            self.fail((name,), f"Should be one of {', '.join(repr(c) for c in allowed)}", "enum")
            return default
        return value

    def url(self, name: str, *, required: bool = True) -> str | None:
        value = self.text(name, required=required, max_len=2048)
        if value:
            problem = url_problem(value)
            if problem is not None:
                self.fail((name,), problem, "url")
        return value or None

    def finish(self, *allowed_extra: str) -> None:
        for name in self.body:
            if name not in self.seen and name not in allowed_extra:
                self.fail((name,), "Unknown field", "extra_forbidden")


def _raise(errors: list[FieldError]) -> None:
    if errors:
        raise Invalid(errors)


def _method(fields: _Fields, name: str) -> str | None:
    method = fields.text(name, max_len=16)
    if method is not None and not _METHOD_RE.fullmatch(method):
        fields.fail((name,), "Should be an HTTP method", "method")
    return method.upper() if method else None


# -- channels ----------------------------------------------------------------------------------


def parse_channel(
    body: Any, *, base: Loc = ("body",), existing: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """``{"name", "type", ...type settings}`` -> ``{"name", "type", "config"}``. With ``existing``
    (the config being replaced), omitted secrets keep their stored values."""
    errors: list[FieldError] = []
    f = _Fields(body, base, errors)
    name = f.text("name", required=True, max_len=MAX_NAME)
    type_ = f.choice("type", CHANNEL_TYPES, required=True)
    config: dict[str, Any] = {}
    if type_ in ("webhook", "slack", "teams"):
        config["url"] = f.url("url")
    if type_ == "webhook":
        secret = f.text("secret", max_len=500)
        if secret:
            config["secret"] = secret
        headers = f.raw("headers")
        if headers is not None:
            if not isinstance(headers, Mapping) or len(headers) > MAX_HEADERS:
                f.fail(
                    ("headers",),
                    f"Should be an object of at most {MAX_HEADERS} header names and values",
                    "headers",
                )
            else:
                for key, value in headers.items():
                    problem = header_problem(key, value)
                    if problem is not None:
                        f.fail(("headers", str(key)), problem, "header")
                if len({str(k).lower() for k in headers}) < len(headers):
                    f.fail(("headers",), "Should name each header once", "headers")
                config["headers"] = dict(headers)
    if type_ == "email":
        security = f.choice("smtp_security", SMTP_SECURITY, default="starttls")
        config["smtp_host"] = f.text("smtp_host", required=True, max_len=255)
        config["smtp_port"] = f.integer(
            "smtp_port", low=1, high=65535, default=DEFAULT_SMTP_PORTS[security or "starttls"]
        )
        config["smtp_security"] = security
        config["username"] = f.text("username", max_len=255)
        password = f.text("password", max_len=500)
        if password:
            config["password"] = password
        config["from_address"] = f.text("from_address", required=True, max_len=320)
        if config["from_address"] and not _EMAIL_RE.fullmatch(config["from_address"]):
            f.fail(("from_address",), "Should be an email address", "email")
        recipients = f.raw("to")
        if isinstance(recipients, str):
            recipients = [recipients]
        if not isinstance(recipients, list) or not 1 <= len(recipients) <= MAX_RECIPIENTS:
            f.fail(("to",), f"Should be a list of 1 to {MAX_RECIPIENTS} email addresses", "list_type")
        else:
            for index, address in enumerate(recipients):
                if not isinstance(address, str) or not _EMAIL_RE.fullmatch(address.strip()):
                    f.fail(("to", index), "Should be an email address", "email")
            config["to"] = [str(a).strip() for a in recipients]
        config["timeout_seconds"] = f.number("timeout_seconds", low=1, high=60, default=10)
    if existing is not None:
        for key in SECRET_FIELDS:
            if key not in config and key in existing and not (isinstance(body, Mapping) and key in body):
                config[key] = existing[key]
    f.finish()
    _raise(errors)
    return {"name": name, "type": type_, "config": {k: v for k, v in config.items() if v is not None}}


def public_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """A channel's settings as the API shows them: secrets replaced by ``<name>_set: true``."""
    shown = {k: v for k, v in config.items() if k not in SECRET_FIELDS}
    for key in SECRET_FIELDS:
        if key in config:
            shown[f"{key}_set"] = True
    return shown


# -- rules -------------------------------------------------------------------------------------


def _scope(value: Any, base: Loc, errors: list[FieldError], metric: str | None) -> dict[str, Any]:
    if value is None:
        return {}
    f = _Fields(value, base, errors)
    scope: dict[str, Any] = {}
    endpoints = f.raw("endpoints")
    if endpoints is not None:
        if not isinstance(endpoints, list) or not 1 <= len(endpoints) <= MAX_ENDPOINTS:
            f.fail(("endpoints",), f"Should be a list of 1 to {MAX_ENDPOINTS} endpoints", "list_type")
        else:
            parsed = []
            for index, endpoint in enumerate(endpoints):
                e = _Fields(endpoint, (*base, "endpoints", index), errors)
                path = e.text("path", required=True, max_len=MAX_TEXT)
                if path and not path.startswith("/"):
                    e.fail(("path",), "Should be a route template starting with /", "path")
                parsed.append({"method": _method(e, "method"), "path": path})
                e.finish()
            scope["endpoints"] = parsed
    pattern = f.text("path_pattern", max_len=MAX_TEXT)
    if pattern:
        scope["path_pattern"] = pattern
    method = _method(f, "method")
    if method:
        scope["method"] = method
    for name in ("consumer", "consumer_group"):
        text = f.text(name, max_len=MAX_TEXT)
        if text:
            scope[name] = text
    if "consumer" in scope and "consumer_group" in scope:
        f.fail(("consumer_group",), "Give a consumer or a consumer group, not both", "scope")
    for_each = f.choice("for_each", ("endpoint", "consumer"))
    if for_each:
        scope["for_each"] = for_each
    if for_each == "consumer" and "consumer" in scope:
        f.fail(("for_each",), "A rule for one consumer cannot be evaluated for each consumer", "scope")
    if metric == "uptime" and scope:
        f.fail((), "An uptime rule watches the whole app env: it takes no scope", "scope")
    if metric == "validation_errors" and for_each == "consumer":
        f.fail(
            ("for_each",), "validation_errors can be evaluated for each endpoint, not each consumer", "scope"
        )
    f.finish()
    return scope


def parse_rule(
    body: Any, *, base: Loc = ("body",), channel_ids: Iterable[str] | None = None
) -> dict[str, Any]:
    """A rule document -> ``{"name", "enabled", "spec"}``. ``channel_ids``: the app's channels
    (None skips the check, for rules-file entries that name channels)."""
    errors: list[FieldError] = []
    f = _Fields(body, base, errors)
    name = f.text("name", required=True, max_len=MAX_NAME)
    metric = f.choice("metric", METRICS, required=True)
    spec: dict[str, Any] = {
        "metric": metric,
        "condition": f.choice("condition", tuple(CONDITIONS), required=True),
        "threshold": f.number("threshold", required=True),
        "window_minutes": f.number(
            "window_minutes", required=metric != "uptime", low=1, high=MAX_WINDOW_MINUTES, default=1
        ),
        "for_minutes": f.number("for_minutes", low=0, high=MAX_PERIOD_MINUTES, default=0),
        "keep_firing_minutes": f.number("keep_firing_minutes", low=0, high=MAX_PERIOD_MINUTES, default=0),
        "repeat_minutes": f.number("repeat_minutes", low=0, high=MAX_PERIOD_MINUTES, default=240),
        "no_data": f.choice("no_data", NO_DATA_POLICIES, default="keep"),
        "min_requests": f.integer("min_requests", low=1, high=1_000_000, default=1),
        "apdex_ms": f.integer("apdex_ms", low=1, high=60_000, default=500),
        "description": f.text("description", default="") or "",
    }
    if metric in COUNT_METRICS and f.has("min_requests"):
        f.fail(("min_requests",), f"{metric} is a count: it always has a value", "rule")
    if f.has("apdex_ms") and metric != "apdex":
        f.fail(("apdex_ms",), "Only for the apdex metric", "rule")
    if metric in COUNT_METRICS or metric == "uptime":
        del spec["min_requests"]
    if metric != "apdex":
        del spec["apdex_ms"]
    spec["scope"] = _scope(f.raw("scope"), (*base, "scope"), errors, metric)
    channels = f.raw("channels")
    if channels is None:
        channels = []
    if not isinstance(channels, list) or len(channels) > 20 or not all(isinstance(c, str) for c in channels):
        f.fail(("channels",), "Should be a list of at most 20 channel ids", "list_type")
        channels = []
    elif channel_ids is not None:
        known = set(channel_ids)
        for index, channel in enumerate(channels):
            if channel not in known:
                f.fail(("channels", index), f"No channel {channel!r} in this app env", "channel")
    spec["channels"] = list(dict.fromkeys(channels))
    enabled = f.boolean("enabled", True)
    f.finish()
    _raise(errors)
    return {"name": name, "enabled": enabled, "spec": spec}


def rule_document(name: str, enabled: bool, spec: Mapping[str, Any]) -> dict[str, Any]:
    """The inverse of :func:`parse_rule` (what PATCH merges into)."""
    return {"name": name, "enabled": enabled, **spec}


# -- silences ----------------------------------------------------------------------------------


def parse_silence(body: Any, now: float, *, base: Loc = ("body",)) -> dict[str, Any]:
    """``{"rule_id"?, "minutes" | "ends_at", "starts_at"?, "comment"?}`` (times in epoch seconds)."""
    errors: list[FieldError] = []
    f = _Fields(body, base, errors)
    rule_id = f.text("rule_id", max_len=100)
    starts_at = f.number("starts_at", low=0, high=1e10, default=now)
    minutes = f.number("minutes", low=0, high=MAX_SILENCE_MINUTES, low_open=True)
    ends_at = f.number("ends_at", low=0, high=1e10)
    if (minutes is None) == (ends_at is None) and not any(
        e.loc[-1] in ("minutes", "ends_at") for e in errors
    ):
        f.fail(("minutes",), "Give the silence's length in minutes, or its ends_at time", "silence")
    if minutes is not None:
        ends_at = starts_at + minutes * 60
    if ends_at is not None and ends_at <= max(starts_at, now):
        f.fail(("ends_at",), "Should be in the future and after starts_at", "silence")
    comment = f.text("comment", default="") or ""
    f.finish()
    _raise(errors)
    return {
        "rule_id": rule_id or None,
        "starts_at": float(starts_at),
        "ends_at": float(ends_at),
        "comment": comment,
    }


# -- health checks -----------------------------------------------------------------------------


def parse_status_codes(value: Any, f: _Fields, name: str) -> list[str]:
    if value is None:
        return ["2xx"]
    if not isinstance(value, list) or not 1 <= len(value) <= 50:
        f.fail((name,), "Should be a list of status codes (200) or classes (2xx)", "list_type")
        return ["2xx"]
    codes = []
    for index, code in enumerate(value):
        text = str(code).lower() if isinstance(code, int | str) and not isinstance(code, bool) else ""
        if not _STATUS_RE.fullmatch(text):
            f.fail((name, index), "Should be a status code (200) or a class (2xx)", "status")
        codes.append(text)
    return codes


def status_accepted(code: int, accepted: Iterable[str]) -> bool:
    return any(a == str(code) or (a.endswith("xx") and a[0] == str(code)[0]) for a in accepted)


def parse_health_check(body: Any, *, base: Loc = ("body",)) -> dict[str, Any]:
    """``{"url", "accepted_status_codes"?: ["2xx", 301], "enabled"?}``."""
    errors: list[FieldError] = []
    f = _Fields(body, base, errors)
    url = f.url("url")
    accepted = parse_status_codes(f.raw("accepted_status_codes"), f, "accepted_status_codes")
    enabled = f.boolean("enabled", True)
    f.finish()
    _raise(errors)
    return {"url": url, "config": {"accepted_status_codes": accepted, "enabled": enabled}}
