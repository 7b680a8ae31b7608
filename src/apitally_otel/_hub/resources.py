"""Process resource usage for sync messages (hub-protocol §4.5)."""

from __future__ import annotations

import logging

import psutil

_logger = logging.getLogger(__name__)


class ResourceSampler:
    """CPU percent since the previous sample, and RSS. The first sample has no CPU baseline: None."""

    def __init__(self) -> None:
        self._process: psutil.Process | None = None
        self._primed = False

    def sample(self) -> dict[str, float] | None:
        try:
            if self._process is None:
                self._process = psutil.Process()
            cpu = self._process.cpu_percent(interval=None)
            rss = self._process.memory_info().rss
        except (psutil.Error, OSError):
            _logger.debug("apitally-otel: resource usage unavailable", exc_info=True)
            return None
        if not self._primed:
            self._primed = True
            return None
        return {"cpu_percent": cpu, "memory_rss": rss}

    def reset(self) -> None:
        """After fork: a new process, a new baseline."""
        self._process = None
        self._primed = False
