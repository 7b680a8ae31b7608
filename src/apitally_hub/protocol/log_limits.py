"""Size limits of request-log lines (hub-protocol.md §5 and §8.2), and cutting a line to them.

The client never sends a body over 50 000 bytes (it sends the ``<body too large>`` sentinel
instead); a line that carries a longer one is cut the same way rather than stored whole, so a
tiny gzip upload of one huge, highly compressible body stores a few hundred bytes, not 50 MB.
Pure functions: no I/O.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

MAX_BODY_BYTES = 50_000
MAX_BODY_BASE64 = 4 * -(-MAX_BODY_BYTES // 3)
"""66 668: the longest base64 text of a body of at most 50 000 bytes."""

BODY_TOO_LARGE = base64.b64encode(b"<body too large>").decode()

MAX_LINE_BYTES = 8 * 1024 * 1024
"""Longest decompressed line: two bodies, a 64 kB traceback, 1 000 log records of 2 048
characters (4 bytes each in the worst UTF-8) and 1 000 spans fit with room to spare."""

MAX_EXPANSION = 64
EXPANSION_FLOOR = 8 * 1024 * 1024
"""A file may decompress to at most ``max(EXPANSION_FLOOR, MAX_EXPANSION * compressed size)``
bytes (and never more than ``--max-log-decompressed-bytes``): request-log NDJSON compresses
5 to 15 times, so a 48 kB upload that would expand to 50 MB is refused (413) however valid its
lines."""


@dataclass(frozen=True)
class LogLimits:
    max_decompressed: int
    max_line: int = MAX_LINE_BYTES

    def max_total(self, compressed_size: int) -> int:
        return min(self.max_decompressed, max(EXPANSION_FLOOR, MAX_EXPANSION * compressed_size))


def cut_line(line: Any) -> bool:
    """Replace each request/response body longer than :data:`MAX_BODY_BASE64` characters with the
    ``<body too large>`` sentinel, in place; True when something was cut."""
    if not isinstance(line, dict):
        return False
    cut = False
    for part in ("request", "response"):
        section = line.get(part)
        if isinstance(section, dict):
            body = section.get("body")
            if isinstance(body, str) and len(body) > MAX_BODY_BASE64:
                section["body"] = BODY_TOO_LARGE
                cut = True
    return cut
