"""Read tokens: where they come from and the constant-time check of a bearer token.

Sources, resolved once by :func:`resolve_tokens`: ``--token`` (repeatable) and ``--token-file``
(one token per line; blank lines and ``#`` comments ignored) when either is given, else
``APITALLY_HUB_TOKEN`` (several separated by commas). A token is at least
:data:`MIN_TOKEN_LENGTH` visible ASCII characters without commas.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

TOKEN_ENV = "APITALLY_HUB_TOKEN"
MIN_TOKEN_LENGTH = 16
_TOKEN_RE = re.compile(r"[!-+\--~]+")  # visible ASCII except the comma (the env var's separator)


class TokenError(ValueError):
    """A token source that cannot be used (the hub must not start half-protected)."""


def check_token(token: str, source: str) -> str:
    if len(token) < MIN_TOKEN_LENGTH:
        raise TokenError(f"a token from {source} is shorter than {MIN_TOKEN_LENGTH} characters")
    if _TOKEN_RE.fullmatch(token) is None:
        raise TokenError(f"a token from {source} has characters other than visible ASCII (or a comma)")
    return token


def read_token_file(path: str | Path) -> list[str]:
    """The tokens of a token file; a file without any is an error (it would silently protect nothing)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TokenError(f"cannot read the token file {str(path)!r}: {exc}") from None
    tokens = []
    for line in text.splitlines():
        token = line.strip()
        if token and not token.startswith("#"):
            tokens.append(check_token(token, f"the token file {str(path)!r}"))
    if not tokens:
        raise TokenError(f"the token file {str(path)!r} has no token")
    return tokens


def resolve_tokens(
    tokens: Sequence[str] | None, token_file: str | Path | None, environ: Mapping[str, str]
) -> tuple[str, ...]:
    """The hub's read tokens: the arguments when given, else ``APITALLY_HUB_TOKEN``; no duplicates."""
    found = [check_token(token, "--token") for token in tokens or ()]
    if token_file is not None:
        found += read_token_file(token_file)
    if not found and tokens is None and token_file is None:
        found = [
            check_token(token.strip(), TOKEN_ENV)
            for token in environ.get(TOKEN_ENV, "").split(",")
            if token.strip()
        ]
    return tuple(dict.fromkeys(found))


def resolve_client_token(token: str | None, environ: Mapping[str, str]) -> str | None:
    """The token a client (``report``) sends: the argument, else the first of ``APITALLY_HUB_TOKEN``."""
    if token:
        return token
    candidates = [t.strip() for t in environ.get(TOKEN_ENV, "").split(",") if t.strip()]
    return candidates[0] if candidates else None


def _digest(value: str | bytes) -> bytes:
    return hashlib.sha256(value.encode() if isinstance(value, str) else value).digest()


class TokenSet:
    """The configured tokens, kept as SHA-256 digests.

    :meth:`matches` compares the candidate's digest with **every** token's digest using
    :func:`hmac.compare_digest` and never stops at the first match, so the time taken depends
    neither on which token matched nor on how much of one did; hashing first makes the
    compared values the same length whatever was sent. ``_compare`` is a test seam.
    """

    def __init__(
        self, tokens: Iterable[str] = (), *, _compare: Callable[[bytes, bytes], bool] = hmac.compare_digest
    ) -> None:
        self._digests = tuple(_digest(token) for token in tokens)
        self._compare = _compare

    def __bool__(self) -> bool:
        return bool(self._digests)

    def __len__(self) -> int:
        return len(self._digests)

    def matches(self, candidate: str | bytes) -> bool:
        return self.index(candidate) is not None

    def index(self, candidate: str | bytes) -> int | None:
        """Which token ``candidate`` is (its position), comparing with all of them (no early exit)."""
        digest = _digest(candidate)
        found = None
        for position, expected in enumerate(self._digests):
            if self._compare(digest, expected):
                found = position
        return found

    @property
    def digests(self) -> tuple[bytes, ...]:
        """The tokens' SHA-256 digests, in order (what the dashboard derives session keys from)."""
        return self._digests

    def matches_authorization(self, header: str | None) -> bool:
        """True for ``Authorization: Bearer <one of the tokens>`` (the scheme is case-insensitive)."""
        scheme, _, credentials = (header or "").strip().partition(" ")
        token_ok = self.matches(credentials.strip())
        return scheme.lower() == "bearer" and token_ok
