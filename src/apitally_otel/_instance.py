"""A stable ``instance_uuid`` per worker slot (hub-protocol §7).

Each process takes the first of 100 slot files it can lock exclusively in a private directory under
the system temp dir and reuses the UUID stored there, so a restarted worker keeps its identity and
concurrent workers get distinct ones. The lock is held (the file stays open) for the life of the
process. Without a usable temp dir, a random UUID is used.
"""

from __future__ import annotations

import atexit
import hashlib
import logging
import os
import tempfile
import uuid
from typing import IO

_logger = logging.getLogger(__name__)

MAX_SLOTS = 100

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

_held: list[IO[str]] = []  # keeps the slot locked until the process exits


def instance_uuid(client_id: str, env: str, directory: str | None = None) -> str:
    if fcntl is None:
        return str(uuid.uuid4())
    directory = directory or os.path.join(tempfile.gettempdir(), "apitally")
    prefix = hashlib.sha256(f"{client_id}:{env}".encode()).hexdigest()[:8]
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        for slot in range(MAX_SLOTS):
            path = os.path.join(directory, f"instance_{prefix}_{slot}.lock")
            handle = open(path, "a+")  # noqa: SIM115 - kept open to hold the lock
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                handle.close()
                continue
            handle.seek(0)
            stored = handle.read().strip()
            try:
                value = str(uuid.UUID(stored))
            except ValueError:
                value = str(uuid.uuid4())
                handle.seek(0)
                handle.truncate()
                handle.write(value)
                handle.flush()
            if not _held:
                atexit.register(_release)
            _held.append(handle)
            return value
        _logger.warning(
            "apitally-otel: all %d instance slots are taken; using a random instance id", MAX_SLOTS
        )
    except OSError as exc:
        _logger.warning(
            "apitally-otel: cannot keep a stable instance id in %s (%s); using a random one", directory, exc
        )
    return str(uuid.uuid4())


def _release() -> None:
    while _held:
        _held.pop().close()


def release_after_fork() -> None:
    """In a forked child the parent's locks are not ours: forget them (the parent keeps them)."""
    _held.clear()
