"""A small synchronous client for the hub's query API (used by ``apitally-otel report`` and tests)."""

from __future__ import annotations

import ssl
from types import TracebackType
from typing import Any

import httpx


class HubQueryError(Exception):
    """The hub could not be reached or answered with an error status."""


class HubQueryClient:
    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        timeout: float = 10.0,
        verify: bool | str | ssl.SSLContext = True,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        """``token``: sent as ``Authorization: Bearer <token>`` (a hub with tokens needs it for
        every read). ``verify``: TLS verification, or the path of a CA bundle (a self-signed hub)."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        if isinstance(verify, str):
            verify = ssl.create_default_context(cafile=verify)
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"),
            timeout=timeout,
            headers=headers,
            verify=verify,
            transport=transport,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> HubQueryClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def get(self, path: str, /, **params: str | int | None) -> dict[str, Any]:
        """GET ``path`` (e.g. ``/api/apps``) with the non-None ``params``; the decoded JSON object."""
        query = {key: str(value) for key, value in params.items() if value is not None}
        try:
            response = self._http.get(path, params=query)
        except httpx.HTTPError as exc:
            raise HubQueryError(f"cannot reach the hub at {self._http.base_url}: {exc}") from exc
        if response.status_code != 200:
            raise HubQueryError(f"GET {path} answered {response.status_code}: {response.text[:500]}")
        body = response.json()
        if not isinstance(body, dict):
            raise HubQueryError(f"GET {path} answered with a non-object JSON body")
        return body

    def app(self, client_id: str, env: str, resource: str, /, **params: str | int | None) -> dict[str, Any]:
        """GET ``/api/{client_id}/{env}/{resource}``, e.g. ``app(cid, "dev", "endpoints", since="1h")``."""
        return self.get(f"/api/{client_id}/{env}/{resource}", **params)
