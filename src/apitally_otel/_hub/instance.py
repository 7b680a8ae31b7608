"""A stable ``instance_uuid`` per worker slot (hub-protocol §7).

Each process takes the first of 100 slot files it can ``flock`` exclusively and reuses the UUID
stored there: a restarted worker gets its old identity back, concurrent workers get distinct ones.
The lock is held (the file stays open) until :func:`release_instance_uuid` or the process exits.

Where: ``<tempdir>/apitally-<uid>/instance_<sha256(client_id:env)[:8]>_<slot>.lock``. hub-protocol
§7 names ``<tempdir>/apitally/``; a directory shared by every local user would let the first one to
create it lock the others out, plant identities for them, or redirect their writes with a symlink.
So the directory is per user and private: created with mode 0700 and used only when it is a real
directory (not a symlink) owned by the effective user with no group/other permissions, and the lock
files are opened relative to it, without following symlinks, and checked to be regular files owned
by the user.

Without a usable directory (read-only or missing temp dir, a directory that is not ours) a random
UUID is used, with one warning per process. Without ``fcntl`` (Windows) the id is always random.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import stat
import tempfile
import threading
import uuid

_logger = logging.getLogger(__name__)

MAX_SLOTS = 100

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)

_UNSTABLE = "apitally-otel: cannot keep a stable instance id in %s (%s); using a random one"

_lock = threading.Lock()
_held: dict[str, int] = {}  # instance uuid -> the open, locked slot file
_warned = False


class UnsafeDirectoryError(OSError):
    """The instance directory exists but another user could read or change it."""


def default_directory() -> str:
    return os.path.join(tempfile.gettempdir(), f"apitally-{os.geteuid()}")


def instance_uuid(client_id: str, env: str, directory: str | None = None) -> str:
    """The UUID of the first free slot for ``(client_id, env)``, locked for this process."""
    if fcntl is None or not hasattr(os, "geteuid"):  # pragma: no cover - Windows
        return str(uuid.uuid4())
    with _lock:
        path = directory or "<tempdir>"
        try:
            path = directory or default_directory()
            dir_fd = _open_private_directory(path)
        except OSError as exc:  # includes no usable temp dir at all (tempfile raises FileNotFoundError)
            _warn_once(_UNSTABLE, path, exc)
            return str(uuid.uuid4())
        try:
            prefix = hashlib.sha256(f"{client_id}:{env}".encode()).hexdigest()[:8]
            for slot in range(MAX_SLOTS):
                fd = _lock_slot(f"instance_{prefix}_{slot}.lock", dir_fd)
                if fd is None:
                    continue
                value = _read_or_create(fd)
                if value in _held:  # the same file reached twice: cannot happen, but never share an id
                    os.close(fd)
                    continue
                _held[value] = fd
                return value
            _warn_once(
                "apitally-otel: all %d instance slots are taken; using a random instance id", MAX_SLOTS
            )
        except OSError as exc:
            _warn_once(_UNSTABLE, path, exc)
        finally:
            os.close(dir_fd)
    return str(uuid.uuid4())


def release_instance_uuid(value: str) -> None:
    """Give the slot of ``value`` back (a later process or exporter may take it)."""
    with _lock:
        fd = _held.pop(value, None)
    if fd is not None:
        os.close(fd)


def release_after_fork() -> None:
    """In a forked child: the slots are the parent's. Close our copies of their files without
    unlocking them (``flock`` locks belong to the open file, which the parent keeps open)."""
    global _lock, _warned
    _lock = threading.Lock()  # another thread of the parent may have held it at fork time
    held = list(_held.values())
    _held.clear()
    _warned = False  # a new process: it may warn once itself
    for fd in held:
        with contextlib.suppress(OSError):  # already closed: nothing held
            os.close(fd)


def _open_private_directory(path: str) -> int:
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, 0o700)
    fd = os.open(path, os.O_RDONLY | _O_DIRECTORY | _O_NOFOLLOW | _O_CLOEXEC)  # a symlink fails here
    try:
        info = os.fstat(fd)
        if not stat.S_ISDIR(info.st_mode):
            raise UnsafeDirectoryError(f"{path} is not a directory")
        if info.st_uid != os.geteuid():
            raise UnsafeDirectoryError(f"{path} belongs to uid {info.st_uid}, not to this user")
        if info.st_mode & 0o077:
            raise UnsafeDirectoryError(f"{path} is open to other users (mode {info.st_mode & 0o777:o})")
    except BaseException:
        os.close(fd)
        raise
    return fd


def _lock_slot(name: str, dir_fd: int) -> int | None:
    """The open slot file, locked; None when another process holds it."""
    fd = os.open(name, os.O_RDWR | os.O_CREAT | _O_NOFOLLOW | _O_CLOEXEC, 0o600, dir_fd=dir_fd)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid():
            raise UnsafeDirectoryError(f"{name} is not a regular file of this user")
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    return fd


def _read_or_create(fd: int) -> str:
    stored = os.pread(fd, 128, 0).decode("ascii", "replace").strip()
    try:
        return str(uuid.UUID(stored))
    except ValueError:
        value = str(uuid.uuid4())
        os.ftruncate(fd, 0)
        os.pwrite(fd, value.encode("ascii"), 0)
        return value


def _warn_once(message: str, *args: object) -> None:
    global _warned
    if not _warned:
        _warned = True
        _logger.warning(message, *args)
