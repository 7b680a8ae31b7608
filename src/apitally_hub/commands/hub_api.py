"""What the subcommands that manage a hub over its JSON API share (``alerts``, ``apps``): a client
with the bearer token (``--token``, else ``$APITALLY_HUB_TOKEN``) that turns the hub's refusals
into one-line :class:`CLIError` messages. httpx is imported when a command runs."""

from __future__ import annotations

import argparse
import os
from typing import Any


class CLIError(Exception):
    """What a subcommand prints in one line before it exits with code 1."""


class HubApi:
    """JSON calls to the hub named by ``args.hub``, under ``base`` (e.g. ``/api/<client id>/<env>``)."""

    def __init__(self, args: argparse.Namespace, base: str = "") -> None:
        import httpx

        token = args.token or os.environ.get("APITALLY_HUB_TOKEN")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.base = base
        self.http = httpx.Client(base_url=args.hub.rstrip("/"), headers=headers, timeout=30)
        self._httpx = httpx

    def call(self, method: str, path: str, body: Any = None, expect: tuple[int, ...] = (200,)) -> Any:
        try:  # json= sends Content-Type: application/json, as the hub wants for writes
            response = self.http.request(method, self.base + path, json=body)
        except self._httpx.HTTPError as exc:
            raise CLIError(f"cannot reach the hub at {self.http.base_url}: {exc}") from None
        if response.status_code not in expect:
            try:
                detail = response.json().get("detail")
            except ValueError:
                detail = response.text[:300]
            if isinstance(detail, list):
                detail = "; ".join(
                    f"{'.'.join(map(str, d.get('loc', [])[1:]))}: {d.get('msg')}" for d in detail
                )
            raise CLIError(f"{method} {path}: {response.status_code} {detail}")
        return response.json() if response.content else None
