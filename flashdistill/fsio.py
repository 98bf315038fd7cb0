"""Crash-safe file writing shared by checkpoints and datasets: write to a temporary name, fsync, rename."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["fsync_dir", "atomic_write_text", "atomic_replace", "FolderLock", "FolderInUse"]


def fsync_dir(path: Path) -> None:
    """Make a rename/creation inside ``path`` durable (no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_replace(tmp: Path, final: Path) -> None:
    """fsync ``tmp``, rename it to ``final`` and make the rename durable."""
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, final)
    fsync_dir(Path(final).parent)


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file, fsync and rename."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


class FolderInUse(RuntimeError):
    """Another live process holds the folder's lock."""


class FolderLock:
    """An exclusive advisory lock on ``folder/.lock`` (``flock``), holding the owner's pid.

    The operating system drops the lock when its process ends, however it ends (SIGKILL included), so a crashed
    run never leaves a stale lock. ``acquire`` raises :class:`FolderInUse` naming the owner's pid. Within one process
    a newer lock on the same folder takes over from an older one (sequential jobs in one interpreter, tests); the
    guard is against a second *process*. Where ``fcntl`` does not exist (Windows) the lock is a no-op.
    """

    NAME = ".lock"
    _held: dict[str, FolderLock] = {}  # this process's locks by folder

    def __init__(self, folder: str | Path):
        self.path = Path(folder) / self.NAME
        self._fd: int | None = None

    def acquire(self) -> FolderLock:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        key = str(self.path.resolve())
        if key in FolderLock._held:
            FolderLock._held[key].release()
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            owner = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise FolderInUse(f"{self.path.parent} is in use by another process (pid {owner}); wait for it to end "
                              "or choose another folder") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        FolderLock._held[key] = self
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None
            FolderLock._held.pop(str(self.path.resolve()), None)
