"""Log lines that an attacker can trigger at will, at most one per key and interval.

A hostile client must not be able to fill the operator's disk through the hub's log (a slowloris
at the fd limit used to write 486 MB of "Too many open files" in 60 s). :class:`LogThrottle`
emits the first line of a key, then at most one line per ``interval`` that also says how many
were suppressed since the previous one. Keys come from a fixed set (never from request data).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass
class _KeyState:
    last: float
    suppressed: int = 0


class LogThrottle:
    def __init__(
        self,
        logger: logging.Logger,
        *,
        interval: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._keys: dict[str, _KeyState] = {}

    def log(self, level: int, key: str, msg: str, *args: Any, exc_info: Any = None) -> bool:
        """Log ``msg % args`` unless ``key`` logged within ``interval``; True when it was logged."""
        now = self._clock()
        with self._lock:
            state = self._keys.get(key)
            if state is not None and now - state.last < self.interval:
                state.suppressed += 1
                return False
            suppressed = state.suppressed if state is not None else 0
            self._keys[key] = _KeyState(now)
        if suppressed:
            msg += " (%d more like this in the last %.0f s)"
            args = (*args, suppressed, self.interval)
        self.logger.log(level, msg, *args, exc_info=exc_info)
        return True

    def warning(self, key: str, msg: str, *args: Any) -> bool:
        return self.log(logging.WARNING, key, msg, *args)

    def info(self, key: str, msg: str, *args: Any) -> bool:
        return self.log(logging.INFO, key, msg, *args)
