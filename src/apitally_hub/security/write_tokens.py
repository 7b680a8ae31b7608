"""Which app a write token names, remembered for a few seconds: the store's answer to every OTLP
request's token, without a lookup per request.

A token revoked (or an app deleted) through this hub process forgets everything at once
(:meth:`WriteTokenCache.clear`); another hub process on the same database refuses it within
:data:`TOKEN_CACHE_SECONDS`.
"""

from __future__ import annotations

import threading

TOKEN_CACHE_SECONDS = 5.0
TOKEN_CACHE_SIZE = 10_000
"""Tokens remembered at most (a flood of made-up tokens must not grow it without bound)."""


class WriteTokenCache:
    def __init__(self, seconds: float = TOKEN_CACHE_SECONDS, size: int = TOKEN_CACHE_SIZE) -> None:
        self.seconds = seconds
        self.size = size
        self._entries: dict[str, tuple[str | None, float]] = {}
        self._lock = threading.Lock()

    def get(self, token: str, now: float) -> tuple[bool, str | None]:
        """``(known, client_id)``: whether the answer is remembered, and it (None: no app)."""
        with self._lock:
            entry = self._entries.get(token)
        if entry is None or entry[1] < now:
            return False, None
        return True, entry[0]

    def put(self, token: str, client_id: str | None, now: float) -> None:
        with self._lock:
            if len(self._entries) >= self.size:
                self._entries = {key: value for key, value in self._entries.items() if value[1] >= now}
                if len(self._entries) >= self.size:
                    self._entries.clear()
            self._entries[token] = (client_id, now + self.seconds)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
