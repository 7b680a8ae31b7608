"""Sending one notification to one channel: HTTP (webhook, Slack, Teams) with httpx, email with
smtplib. Each call returns an :class:`Attempt` instead of raising — whatever goes wrong, also
while formatting — and the delivery worker decides on retries from it. An attempt has one total
deadline (``timeout``: connect, TLS, writes and reads together) and reads at most 64 kB of a
response (:mod:`apitally_hub.alerting.outgoing`)."""

from __future__ import annotations

import contextlib
import email.utils
import json
import smtplib
import socket
import ssl
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from apitally_hub.alerting import outgoing
from apitally_hub.alerting.notifiers import formats
from apitally_hub.alerting.validation import header_problem

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
        response = outgoing.call(client, "POST", url, seconds=timeout, content=body, headers=headers)
    except httpx.TimeoutException:
        return Attempt(False, True, f"timed out after {timeout:g} s")
    except httpx.LocalProtocolError as exc:  # the request itself cannot be sent: so on every attempt
        return Attempt(False, False, f"{type(exc).__name__}: {exc}"[:300])
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
    expired = threading.Event()
    try:
        smtp: smtplib.SMTP
        if security == "tls":
            smtp = smtplib.SMTP_SSL(timeout=timeout, context=context)
        else:
            smtp = smtplib.SMTP(timeout=timeout)
        # smtplib's timeout is per socket operation: at the deadline, cut the connection (also
        # while it reads the greeting, which connect() does)
        watchdog = threading.Timer(timeout, _cut, (smtp, expired))
        watchdog.daemon = True
        watchdog.start()
        try:
            with smtp:
                smtp.connect(host, port)
                if security == "starttls":
                    smtp.starttls(context=context)
                if config.get("username"):
                    smtp.login(config["username"], config.get("password", ""))
                smtp.send_message(message)
        finally:
            watchdog.cancel()
    except smtplib.SMTPResponseException as exc:
        # 4xx replies are temporary by definition; 5xx (bad login, rejected recipient) are not
        return Attempt(False, 400 <= exc.smtp_code < 500, f"SMTP {exc.smtp_code}", exc.smtp_code)
    except (smtplib.SMTPException, OSError, ssl.SSLError) as exc:
        if expired.is_set():
            return Attempt(False, True, f"timed out after {timeout:g} s")
        return Attempt(False, True, f"{type(exc).__name__}: {exc}"[:300])
    return Attempt(True, False, "accepted by the SMTP server")


def _cut(smtp: smtplib.SMTP, expired: threading.Event) -> None:
    expired.set()
    sock = smtp.sock
    if sock is not None:
        with contextlib.suppress(OSError):  # already closed: the attempt ended on its own
            sock.shutdown(socket.SHUT_RDWR)


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
    """Format ``doc`` for the channel and send it once. Never raises: an error while formatting
    (a name the hub would not accept today, say) fails the attempt for good, with its error."""
    try:
        return _deliver(client, channel_type, config, doc, notification_id, timeout=timeout, now=now)
    except Exception as exc:  # any error is a failed attempt, recorded on the notification
        return Attempt(False, False, f"could not send: {type(exc).__name__}: {exc}"[:300])


def _deliver(
    client: httpx.Client,
    channel_type: str,
    config: Mapping[str, Any],
    doc: Mapping[str, Any],
    notification_id: str,
    *,
    timeout: float,
    now: float,
) -> Attempt:
    if channel_type == "email":
        message = formats.email_message({**doc, "id": notification_id}, config)
        return send_email(config, message, float(config.get("timeout_seconds", timeout)))
    if channel_type == "webhook":
        body, headers = formats.webhook_request(doc, notification_id, secret=config.get("secret"), now=now)
        extra: Mapping[str, Any] = config.get("headers") or {}
        for name, value in extra.items():
            # configured before the hub checked headers: the request would be unsafe or unsendable
            problem = header_problem(name, value)
            if problem is not None:
                return Attempt(False, False, f"header {str(name)[:64]!r} refused: {problem}")
        headers.update(extra)
    else:
        payload = formats.slack_message(doc) if channel_type == "slack" else formats.teams_message(doc)
        body = json.dumps(payload, ensure_ascii=False).encode()
        headers = {"Content-Type": "application/json"}
    return post_json(client, config["url"], body, headers, timeout)
