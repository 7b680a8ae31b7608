"""HTTP to the hub, the same for every sender (the hub client, the request-log uploader).

- :func:`new_client`: one way to build the connection — ``User-Agent: apitally-otel/<version>``,
  the proxy given (else the standard ``HTTPS_PROXY``/``NO_PROXY`` variables), certificates
  verified (``SSL_CERT_FILE``/``SSL_CERT_DIR`` honoured), no redirects followed, answers asked
  for uncompressed, and every request bounded by a total deadline (:mod:`apitally_otel._hub.net`).
- :func:`post`: one request under that deadline. The answer is streamed and at most
  :data:`MAX_ANSWER_BYTES` of its body read; the connection is closed on the rest, so whatever a
  hub, proxy or middlebox sends (an endless body, 50 MB), the app's memory stays flat.
- :class:`HubConnection`: both for one sender, the client made on first use on its thread.
- :func:`for_log`: hub-supplied text made fit for one log line.
"""

from __future__ import annotations

import logging
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass

import httpx

from apitally_otel._hub.net import Deadline, DeadlineBackend
from apitally_otel.version import __version__

_logger = logging.getLogger(__name__)

USER_AGENT = f"apitally-otel/{__version__}"
MAX_ANSWER_BYTES = 64 * 1024
LOGGED_CHARS = 200
_ESCAPED_CATEGORIES = ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp")


class HubUnreachable(Exception):
    """No answer: the connection failed, or the deadline passed before the answer's head arrived."""


@dataclass(frozen=True)
class Answer:
    status_code: int
    reason: str
    retry_after: str | None
    body: bytes  # at most MAX_ANSWER_BYTES: the beginning of what the hub sent

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def quoted(self) -> str:
        """What the hub said, fit for a log line (its reason phrase when the body is empty)."""
        return for_log(self.text.strip() or self.reason)


def new_client(
    base_url: str,
    *,
    timeout: float,
    proxy: str | None = None,
    transport: httpx.BaseTransport | None = None,
) -> httpx.Client:
    """The HTTP client for ``base_url`` (``transport`` is a test seam: no network, no deadline)."""
    client = httpx.Client(
        base_url=base_url,
        timeout=timeout,
        proxy=proxy,
        transport=transport,
        headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity"},
        follow_redirects=False,
        trust_env=True,
    )
    _bound_by_deadlines(client)
    return client


def _bound_by_deadlines(client: httpx.Client) -> None:
    # httpx builds the transport for the hub's URL itself (a proxy's when one applies, from the
    # argument or the environment) and has no option for httpcore's network backend: it is set on
    # the connection pool here. Connections are made per request, so this holds from the first.
    transport = client._transport_for_url(client.base_url)
    pool = getattr(transport, "_pool", None)
    backend = getattr(pool, "_network_backend", None)
    if backend is None:
        _logger.debug(
            "apitally-otel: no network backend on %r; hub requests have no total deadline", transport
        )
        return
    if not isinstance(backend, DeadlineBackend):
        pool._network_backend = DeadlineBackend(backend)  # type: ignore[union-attr]


def post(
    client: httpx.Client,
    path: str,
    content: bytes,
    *,
    timeout: float,
    headers: Mapping[str, str] | None = None,
    params: Mapping[str, str] | None = None,
) -> Answer:
    """POST within ``timeout`` seconds in all; the answer, or :class:`HubUnreachable`."""
    with Deadline(timeout) as deadline:
        try:
            with client.stream("POST", path, content=content, headers=headers, params=params) as response:
                body = _read_prefix(response, deadline)
                return Answer(
                    response.status_code, response.reason_phrase, response.headers.get("retry-after"), body
                )
        except (httpx.HTTPError, OSError) as exc:  # OSError: e.g. an unreadable SSL_CERT_FILE
            if deadline.expired or deadline.remaining() <= 0:
                raise HubUnreachable(
                    f"no answer within the {timeout:g} s deadline, {deadline.stage}"
                ) from exc
            raise HubUnreachable(for_log(f"{type(exc).__name__}: {exc}")) from exc


def _read_prefix(response: httpx.Response, deadline: Deadline) -> bytes:
    if response.is_stream_consumed:  # already in memory: an answer built by a test transport
        return response.content[:MAX_ANSWER_BYTES]
    parts: list[bytes] = []
    size = 0
    try:
        for chunk in response.iter_raw():
            part = chunk[: MAX_ANSWER_BYTES - size]
            parts.append(part)
            size += len(part)
            if size >= MAX_ANSWER_BYTES or deadline.remaining() <= 0:
                break  # the rest is never read: closing the response closes the connection
    except (httpx.HTTPError, OSError):  # the status arrived, so the answer stands; its body is cut short
        pass
    return b"".join(parts)


class HubConnection:
    """One sender's way to the hub: :func:`new_client` on first use, then :func:`post` each time."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float,
        proxy: str | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url
        self.timeout = timeout
        self.proxy = proxy
        self._transport = transport
        self._client: httpx.Client | None = None

    def post(
        self,
        path: str,
        content: bytes,
        *,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
    ) -> Answer:
        if self._client is None:
            try:
                self._client = new_client(
                    self.base_url, timeout=self.timeout, proxy=self.proxy, transport=self._transport
                )
            except OSError as exc:  # e.g. an unreadable SSL_CERT_FILE: retried like a network error
                raise HubUnreachable(for_log(f"{type(exc).__name__}: {exc}")) from exc
        return post(self._client, path, content, timeout=self.timeout, headers=headers, params=params)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def for_log(text: str, limit: int = LOGGED_CHARS) -> str:
    """``text`` for one log line: control and format characters escaped (``\\x1b``, ``\\n``,
    ``\\u202e``), cut after about ``limit`` characters (marked with ``…``)."""
    out: list[str] = []
    length = 0
    for char in text:
        if length >= limit:
            out.append("…")
            break
        piece = char.encode("unicode_escape").decode("ascii") if _escaped(char) else char
        out.append(piece)
        length += len(piece)
    return "".join(out)


def _escaped(char: str) -> bool:
    return char == "\\" or unicodedata.category(char) in _ESCAPED_CATEGORIES
