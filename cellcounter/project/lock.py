"""One writer per project: an exclusive OS lock on ``<project>.lock``, freed by the OS if the process dies."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from cellcounter.errors import ProjectError

if os.name == "nt":  # pragma: no cover - exercised on Windows only
    import msvcrt

    def _try_lock(fd: int) -> bool:
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False

    def _unlock(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
else:
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except OSError:
            return False

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)


class FileLock:
    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, project: Path) -> FileLock:
        lock_path = project.with_name(project.name + ".lock")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        if not _try_lock(fd):
            try:
                owner = os.pread(fd, 200, 0).decode(errors="replace").strip() if hasattr(os, "pread") else ""
            finally:
                os.close(fd)
            raise ProjectError(
                f"{project}: open in another process ({owner or 'unknown'}); close it there, or open this "
                "project read-only")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{socket.gethostname()} pid {os.getpid()}".encode(), 0) if hasattr(os, "pwrite") else None
        return cls(lock_path, fd)

    def release(self) -> None:
        if self._fd is not None:
            try:
                _unlock(self._fd)
            finally:
                os.close(self._fd)
                self._fd = None
