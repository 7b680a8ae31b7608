"""Sending one notification to one channel: HTTP (webhook, Slack, Teams) with httpx, email with
smtplib. Each call returns an :class:`Attempt` instead of raising; the delivery worker decides on
retries from it."""

from __future__ import annotations

import email.utils
import json
import smtplib
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx
from opentelemetry.instrumentation.utils import suppress_instrumentation

from apitally_hub.alerting.notifiers import formats

RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
MAX_RETRY_AFTER = 300.0


@dataclass(frozen=True)
class Attempt:
    ok: bool
    retryable: bool
    detail: str
    """What happened, for the outbox and the API (a status code, an error; never a response body)."""
    status_code: int | None = None
    retry_after: float | None = None


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value) if value else None
        seconds = parsed.timestamp() - time.time() if parsed else 0.0
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def post_json(
    client: httpx.Client, url: str, body: bytes, headers: Mapping[str, str], timeout: float
) -> Attempt:
    try:
        # the hub's own outgoing calls are never telemetry (no feedback loops)
        with suppress_instrumentation():
            response = client.post(
                url, content=body, headers=dict(headers), timeout=timeout, follow_redirects=False
            )
    except httpx.TimeoutException:
        return Attempt(False, True, f"timed out after {timeout:g} s")
    except httpx.HTTPError as exc:
        return Attempt(False, True, f"{type(exc).__name__}: {exc}"[:300])
    code = response.status_code
    if 200 <= code < 300:
        return Attempt(True, False, f"HTTP {code}", code)
    retry_after = _retry_after(response.headers.get("retry-after"))
    return Attempt(False, code in RETRYABLE_STATUS, f"HTTP {code}", code, retry_after)


def send_email(config: Mapping[str, Any], message: Any, timeout: float) -> Attempt:
    host, port, security = (
        config["smtp_host"],
        int(config["smtp_port"]),
        config.get("smtp_security", "starttls"),
    )
    context = ssl.create_default_context()
    try:
        smtp: smtplib.SMTP
        if security == "tls":
            smtp = smtplib.SMTP_SSL(host, port, timeout=timeout, context=context)
        else:
            smtp = smtplib.SMTP(host, port, timeout=timeout)
        with smtp:
            if security == "starttls":
                smtp.starttls(context=context)
            if config.get("username"):
                smtp.login(config["username"], config.get("password", ""))
            smtp.send_message(message)
    except smtplib.SMTPResponseException as exc:
        # 4xx replies are temporary by definition; 5xx (bad login, rejected recipient) are not
        return Attempt(False, 400 <= exc.smtp_code < 500, f"SMTP {exc.smtp_code}", exc.smtp_code)
    except (smtplib.SMTPException, OSError, ssl.SSLError) as exc:
        return Attempt(False, True, f"{type(exc).__name__}: {exc}"[:300])
    return Attempt(True, False, "accepted by the SMTP server")


def deliver(
    client: httpx.Client,
    channel_type: str,
    config: Mapping[str, Any],
    doc: Mapping[str, Any],
    notification_id: str,
    *,
    timeout: float,
    now: float,
) -> Attempt:
    """Format ``doc`` for the channel and send it once."""
    if channel_type == "email":
        message = formats.email_message({**doc, "id": notification_id}, config)
        return send_email(config, message, float(config.get("timeout_seconds", timeout)))
    if channel_type == "webhook":
        body, headers = formats.webhook_request(doc, notification_id, secret=config.get("secret"), now=now)
        headers.update(config.get("headers") or {})
    else:
        payload = formats.slack_message(doc) if channel_type == "slack" else formats.teams_message(doc)
        body = json.dumps(payload, ensure_ascii=False).encode()
        headers = {"Content-Type": "application/json"}
    return post_json(client, config["url"], body, headers, timeout)
