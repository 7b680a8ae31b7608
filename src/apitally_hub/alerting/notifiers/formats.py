"""Notification documents and their channel formats: pure functions, no I/O.

The **document** (what the generic webhook receives, as JSON)::

    {"id": "<notification id, the same on every retry>", "event": "firing" | "resolved",
     "reminder": false, "test": false, "alert_id": "<firing episode>",
     "rule": {"id", "name", "metric", "condition", "threshold", "window_minutes", "for_minutes", ...},
     "client_id": "...", "env": "prod", "labels": {"method": "GET", "path": "/items"},
     "value": 3, "threshold": 0, "state": "firing", "started_at": "<ISO 8601>",
     "resolved_at": null, "at": "<ISO 8601>", "summary": "..."}

A **grouped** document stands for many alerts of one rule that changed in the same evaluation
round (say 300 consumers firing at once): the channel gets one notice instead of hundreds. It is
the document of the first alert with ``alert_id``, ``labels`` and ``value`` of the group left
empty (``null``, ``{}``, ``null``), a summary naming the count, and::

    "grouped": {"count": 300, "alerts": [{"alert_id", "labels", "value", "started_at",
                                          "resolved_at"}, ... the first GROUP_SHOWN ...]}

A document of one alert has no ``grouped`` field.

Slack gets ``text`` + ``blocks`` (incoming webhooks), Teams an Adaptive Card message (Workflows
webhooks and the older connectors both take it), email a plain-text message whose subject names
the rule. Names, paths and consumers come from the hub's users and its clients' traffic: in Slack
text ``&``, ``<`` and ``>`` are escaped (no ``<!channel>`` mention, no ``<url|text>`` link), in
Teams the summary is a plain text run and the title and facts have their markdown escaped, and an
email's subject is one line.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import unicodedata
from collections.abc import Mapping
from datetime import datetime, timezone
from email.message import EmailMessage
from typing import Any

from apitally_hub.alerting.model import Rule, format_number

SIGNATURE_HEADER = "X-Apitally-Signature"
TIMESTAMP_HEADER = "X-Apitally-Timestamp"
ID_HEADER = "X-Apitally-Notification-Id"
GROUP_SHOWN = 5
"""A grouped notice lists this many of its alerts."""
_MARKDOWN = re.compile(r"([\\`*_\[\]<>~])")
_OWN_FACTS = frozenset({"Condition", "Value", "Since", "Resolved"})
"""Facts the hub writes itself (a metric, a number, a time): shown as they are."""


def one_line(text: str) -> str:
    """``text`` with control characters and line or paragraph separators as spaces."""
    return "".join(" " if unicodedata.category(c) in ("Cc", "Zl", "Zp") else c for c in text)


def slack_escape(text: str) -> str:
    """Text for Slack's ``mrkdwn`` and ``text``: ``&``, ``<``, ``>`` escaped, as Slack asks."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def markdown_escape(text: str) -> str:
    """Text for a Teams ``TextBlock`` or fact: markdown's punctuation backslash-escaped."""
    return _MARKDOWN.sub(r"\\\1", one_line(text))


def iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat().replace("+00:00", "Z")


def describe_labels(labels: Mapping[str, str]) -> str:
    if "path" in labels:
        return f"{labels.get('method', '')} {labels['path']}".strip()
    if "consumer" in labels:
        return f"consumer {labels['consumer']}"
    return ""


def document(
    rule: Rule,
    *,
    event: str,
    labels: Mapping[str, str],
    value: float | None,
    state: str,
    alert_id: str | None,
    started_at: float | None,
    resolved_at: float | None,
    at: float,
    reminder: bool = False,
    test: bool = False,
) -> dict[str, Any]:
    target = describe_labels(labels)
    where = f"{rule.app.client_id}/{rule.app.env}"
    verb = "resolved" if event == "resolved" else "firing"
    summary = f"[{verb.upper()}] {rule.name}: {rule.summary} (value {format_number(value)})"
    summary += f" for {target} in {where}" if target else f" in {where}"
    return {
        "event": event,
        "reminder": reminder,
        "test": test,
        "alert_id": alert_id,
        "rule": {
            "id": rule.id,
            "name": rule.name,
            "metric": rule.metric,
            "condition": rule.condition,
            "threshold": rule.threshold,
            "window_minutes": rule.window_minutes,
            "for_minutes": rule.for_minutes,
            "description": rule.description,
        },
        "client_id": rule.app.client_id,
        "env": rule.app.env,
        "labels": dict(labels),
        "value": value,
        "threshold": rule.threshold,
        "state": state,
        "started_at": iso(started_at),
        "resolved_at": iso(resolved_at),
        "at": iso(at),
        "summary": ("[TEST] " if test else "") + summary,
    }


def grouped_document(docs: list[dict[str, Any]]) -> dict[str, Any]:
    """One document for ``docs`` (alerts of one rule, the same event, one round): see above."""
    first, count = docs[0], len(docs)
    shown = [describe_labels(d.get("labels") or {}) or "(all)" for d in docs[:GROUP_SHOWN]]
    more = f" and {count - len(shown)} more" if count > len(shown) else ""
    rule = first["rule"]
    verb = "RESOLVED" if first["event"] == "resolved" else "FIRING"
    summary = (
        f"[{verb}] {rule['name']}: {rule['metric']} {rule['condition']} {format_number(rule['threshold'])}"
        f" for {count} alerts ({', '.join(shown)}{more}) in {first['client_id']}/{first['env']}"
    )
    alerts = [
        {k: d.get(k) for k in ("alert_id", "labels", "value", "started_at", "resolved_at")}
        for d in docs[:GROUP_SHOWN]
    ]
    return {
        **first,
        "alert_id": None,
        "labels": {},
        "value": None,
        "summary": summary,
        "grouped": {"count": count, "alerts": alerts},
    }


def _title(doc: Mapping[str, Any]) -> str:
    kind = (
        "Resolved"
        if doc["event"] == "resolved"
        else ("Reminder: firing" if doc.get("reminder") else "Firing")
    )
    prefix = "Test notification — " if doc.get("test") else ""
    count = f" ({doc['grouped']['count']} alerts)" if doc.get("grouped") else ""
    return one_line(f"{prefix}{kind}: {doc['rule']['name']}{count}")


def _facts(doc: Mapping[str, Any]) -> list[tuple[str, str]]:
    rule = doc["rule"]
    facts = [
        ("App", f"{doc['client_id']} / {doc['env']}"),
        ("Condition", f"{rule['metric']} {rule['condition']} {format_number(rule['threshold'])}"),
    ]
    grouped = doc.get("grouped")
    if grouped:
        shown = [describe_labels(a.get("labels") or {}) or "(all)" for a in grouped["alerts"]]
        more = grouped["count"] - len(shown)
        facts.append(
            ("Alerts", f"{grouped['count']}: " + ", ".join(shown) + (f" and {more} more" if more else ""))
        )
    else:
        facts.append(("Value", format_number(doc["value"])))
    target = describe_labels(doc.get("labels") or {})
    if target:
        facts.append(("Where", target))
    if doc.get("started_at"):
        facts.append(("Since", doc["started_at"]))
    if doc.get("resolved_at"):
        facts.append(("Resolved", doc["resolved_at"]))
    return facts


def webhook_request(
    doc: Mapping[str, Any], notification_id: str, *, secret: str | None, now: float
) -> tuple[bytes, dict[str, str]]:
    """The generic webhook's body and headers. With a ``secret``: ``X-Apitally-Timestamp: <unix>``
    and ``X-Apitally-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">``."""
    body = json.dumps({"id": notification_id, **doc}, separators=(",", ":"), ensure_ascii=False).encode()
    headers = {"Content-Type": "application/json", ID_HEADER: notification_id}
    if secret:
        timestamp = str(int(now))
        headers[TIMESTAMP_HEADER] = timestamp
        headers[SIGNATURE_HEADER] = "sha256=" + sign(secret, timestamp, body)
    return body, headers


def sign(secret: str, timestamp: str, body: bytes) -> str:
    return hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def slack_message(doc: Mapping[str, Any]) -> dict[str, Any]:
    emoji = ":white_check_mark:" if doc["event"] == "resolved" else ":rotating_light:"
    title = f"{emoji} {_title(doc)}"
    fields = [
        {"type": "mrkdwn", "text": f"*{name}*\n{slack_escape(one_line(value))}"[:2000]}
        for name, value in _facts(doc)
    ]
    summary = slack_escape(one_line(doc["summary"]))
    return {
        "text": slack_escape(title) + " — " + summary,
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": _title(doc)[:150]}},
            {"type": "section", "text": {"type": "mrkdwn", "text": summary[:3000]}},
            {"type": "section", "fields": fields[:10]},
        ],
    }


def teams_message(doc: Mapping[str, Any]) -> dict[str, Any]:
    color = "Good" if doc["event"] == "resolved" else "Attention"
    card = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": [
            {
                "type": "TextBlock",
                "size": "Large",
                "weight": "Bolder",
                "color": color,
                "text": markdown_escape(_title(doc)),
                "wrap": True,
            },
            # a text run is never markdown: the summary carries names and paths as they are
            {"type": "RichTextBlock", "inlines": [{"type": "TextRun", "text": one_line(doc["summary"])}]},
            {
                "type": "FactSet",
                "facts": [
                    {"title": name, "value": value if name in _OWN_FACTS else markdown_escape(value)}
                    for name, value in _facts(doc)
                ],
            },
        ],
    }
    return {
        "type": "message",
        "attachments": [
            {"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None, "content": card}
        ],
    }


def email_message(doc: Mapping[str, Any], config: Mapping[str, Any]) -> EmailMessage:
    message = EmailMessage()
    message["Subject"] = one_line(f"[apitally] {_title(doc)} ({doc['client_id']}/{doc['env']})")
    message["From"] = config["from_address"]
    message["To"] = ", ".join(config["to"])
    lines = [doc["summary"], ""]
    lines += [f"{name}: {value}" for name, value in _facts(doc)]
    if doc["rule"].get("description"):
        lines += ["", doc["rule"]["description"]]
    lines += ["", f"Alert {doc.get('alert_id') or '-'}, notification {doc.get('id', '-')}"]
    message.set_content("\n".join(lines) + "\n")
    return message
