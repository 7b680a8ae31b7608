"""Hub tokens: where they come from, their role, and the constant-time check of a bearer token.

Every token has a role: :data:`ADMIN` (reads and changes everything) or :data:`VIEWER` (reads
only: pages and the query API). Sources, resolved once by :func:`resolve_token_roles`:
``--token`` (repeatable, admin), ``--viewer-token`` (repeatable, viewer) and ``--token-file``
when any is given, else ``APITALLY_HUB_TOKEN`` (admin; several separated by commas). A token
file has one token per line — ``<token>`` or ``admin <token>`` (admin), ``viewer <token>``
(viewer) —; blank lines and ``#`` comments are ignored; any other line is an error. A token is
at least :data:`MIN_TOKEN_LENGTH` visible ASCII characters without commas (so without spaces).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Literal

Role = Literal["admin", "viewer"]
ADMIN: Role = "admin"
VIEWER: Role = "viewer"
ROLES: tuple[Role, ...] = (ADMIN, VIEWER)

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


def read_token_roles(path: str | Path) -> tuple[list[str], list[str]]:
    """The (admin, viewer) tokens of a token file; a file without any is an error (it would
    silently protect nothing), and so is a line that is neither ``<token>`` nor ``<role> <token>``."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TokenError(f"cannot read the token file {str(path)!r}: {exc}") from None
    found: dict[Role, list[str]] = {ADMIN: [], VIEWER: []}
    for number, line in enumerate(text.splitlines(), start=1):
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        where = f"the token file {str(path)!r}, line {number}"
        if len(words) == 1:
            role, token = ADMIN, words[0]
        elif len(words) == 2 and words[0] in ROLES:
            role, token = words[0], words[1]
        else:
            raise TokenError(
                f"{where}: expected '<token>' or '<role> <token>' with a role among {', '.join(ROLES)}"
            )
        found[role].append(check_token(token, where))
    if not found[ADMIN] and not found[VIEWER]:
        raise TokenError(f"the token file {str(path)!r} has no token")
    return found[ADMIN], found[VIEWER]


def read_token_file(path: str | Path) -> list[str]:
    """The admin tokens of a token file (see :func:`read_token_roles`)."""
    return read_token_roles(path)[0]


def resolve_token_roles(
    tokens: Sequence[str] | None,
    token_file: str | Path | None,
    environ: Mapping[str, str],
    viewer_tokens: Sequence[str] | None = None,
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The hub's (admin, viewer) tokens: the arguments when given, else ``APITALLY_HUB_TOKEN``
    (admin); no duplicates."""
    admins = [check_token(token, "--token") for token in tokens or ()]
    viewers = [check_token(token, "--viewer-token") for token in viewer_tokens or ()]
    if token_file is not None:
        from_file = read_token_roles(token_file)
        admins += from_file[0]
        viewers += from_file[1]
    if not admins and not viewers and tokens is None and token_file is None and viewer_tokens is None:
        admins = [
            check_token(token.strip(), TOKEN_ENV)
            for token in environ.get(TOKEN_ENV, "").split(",")
            if token.strip()
        ]
    return tuple(dict.fromkeys(admins)), tuple(dict.fromkeys(viewers))


def resolve_tokens(
    tokens: Sequence[str] | None, token_file: str | Path | None, environ: Mapping[str, str]
) -> tuple[str, ...]:
    """The hub's admin tokens: the arguments when given, else ``APITALLY_HUB_TOKEN``; no duplicates."""
    return resolve_token_roles(tokens, token_file, environ)[0]


def resolve_client_token(token: str | None, environ: Mapping[str, str]) -> str | None:
    """The token a client (``report``) sends: the argument, else the first of ``APITALLY_HUB_TOKEN``."""
    if token:
        return token
    candidates = [t.strip() for t in environ.get(TOKEN_ENV, "").split(",") if t.strip()]
    return candidates[0] if candidates else None


def _digest(value: str | bytes) -> bytes:
    return hashlib.sha256(value.encode() if isinstance(value, str) else value).digest()


class TokenSet:
    """The configured tokens, kept as SHA-256 digests: the admin tokens, then ``viewers``
    (:meth:`role` of a position).

    :meth:`matches` compares the candidate's digest with **every** token's digest using
    :func:`hmac.compare_digest` and never stops at the first match, so the time taken depends
    neither on which token matched nor on how much of one did; hashing first makes the
    compared values the same length whatever was sent. ``_compare`` is a test seam.
    """

    def __init__(
        self,
        tokens: Iterable[str] = (),
        *,
        viewers: Iterable[str] = (),
        _compare: Callable[[bytes, bytes], bool] = hmac.compare_digest,
    ) -> None:
        admins = tuple(_digest(token) for token in tokens)
        self._admins = len(admins)
        self._digests = admins + tuple(_digest(token) for token in viewers)
        self._compare = _compare

    def role(self, index: int) -> Role:
        """The role of the token at ``index`` (admin tokens come first)."""
        return ADMIN if index < self._admins else VIEWER

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
        return self.authorization_role(header) is not None

    def authorization_role(self, header: str | None) -> Role | None:
        """The role of ``Authorization: Bearer <one of the tokens>``; None for anything else."""
        scheme, _, credentials = (header or "").strip().partition(" ")
        index = self.index(credentials.strip())
        return self.role(index) if scheme.lower() == "bearer" and index is not None else None
