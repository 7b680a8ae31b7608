"""``apitally-otel report``: a summary of one app's data, fetched from a hub's query API.

The JSON document (``--json``) has ``hub``, ``client_id``, ``env``, ``window`` and the lists
``endpoints`` (method, path, requests, client_errors, server_errors, error_rate, p50_ms, p95_ms,
p99_ms, request_bytes, response_bytes, status_codes), ``consumers``, ``validation_errors``,
``server_errors``, ``instances`` and ``requests`` (the latest request-log items matching the
filters, with ``requests_total``), each as the query API returns them.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any, TextIO

from apitally_hub.report.client import HubQueryClient, HubQueryError
from apitally_hub.report.text import render_text, terminal_safe


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat()


def build_report(
    client: HubQueryClient,
    client_id: str,
    env: str,
    since: str,
    request_filters: dict[str, str] | None = None,
    request_limit: int = 20,
) -> dict[str, Any]:
    endpoints = client.app(client_id, env, "endpoints", since=since)
    window = endpoints["window"]
    bounds = {key: _iso(window[key]) for key in ("since", "until")}
    report: dict[str, Any] = {
        "client_id": endpoints["client_id"],
        "env": env,
        "window": window,
        "endpoints": endpoints["endpoints"],
    }
    for key, resource in (
        ("consumers", "consumers"),
        ("validation_errors", "validation-errors"),
        ("server_errors", "server-errors"),
    ):
        report[key] = client.app(client_id, env, resource, **bounds)[key]
    report["instances"] = client.app(client_id, env, "instances")["instances"]
    filters = {k: v for k, v in (request_filters or {}).items() if v}
    page = client.app(client_id, env, "requests", **bounds, **filters, limit=str(request_limit))
    report["requests"] = page["items"]
    report["requests_total"] = page["total"]
    return report


def run_report(
    hub: str,
    client_id: str,
    env: str,
    *,
    since: str = "1h",
    as_json: bool = False,
    out: TextIO,
    err: TextIO,
    request_filters: dict[str, str] | None = None,
    token: str | None = None,
    ca_file: str | None = None,
) -> int:
    """Fetch and print the report; returns the exit code (1 when the hub cannot answer).

    ``token``: the hub's read token (``Authorization: Bearer``). ``ca_file``: a CA bundle to
    verify a self-signed hub's certificate.
    """
    try:
        with HubQueryClient(hub, token=token, verify=ca_file or True) as client:
            report = build_report(client, client_id, env, since, request_filters)
    except HubQueryError as exc:
        print(f"error: {terminal_safe(str(exc))}", file=err)
        return 1
    report = {"hub": hub, **report}
    if as_json:
        json.dump(report, out, indent=2)
        out.write("\n")
    else:
        out.write(render_text(report))
    return 0
