"""One writer per project: exclusive OS locks, freed by the OS if the process dies.

The lock is on the project itself, not on the name it was opened by: ``<project>.lock`` beside the resolved
path (a symlink leads to the same one), and on POSIX a ``flock`` on the database file (a hard link is the
same inode). SQLite's own locks are POSIX record locks, independent of ``flock``.
"""

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
    def __init__(self, path: Path, fd: int, db_fd: int | None = None) -> None:
        self.path = path
        self._fd: int | None = fd
        self._db_fd = db_fd

    @classmethod
    def acquire(cls, project: Path) -> FileLock:
        real = Path(os.path.realpath(project))
        lock_path = real.with_name(real.name + ".lock")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        db_fd = None
        locked = _try_lock(fd)
        if locked and os.name != "nt" and real.is_file():
            db_fd = os.open(real, os.O_RDONLY)
            if not _try_lock(db_fd):  # held through another name (a hard link)
                os.close(db_fd)
                db_fd = None
                _unlock(fd)
                locked = False
        if not locked:
            try:
                owner = os.pread(fd, 200, 0).decode(errors="replace").strip() if hasattr(os, "pread") else ""
            finally:
                os.close(fd)
            raise ProjectError(
                f"{project}: open in another process ({owner or 'unknown'}), perhaps under another name; close it "
                "there, or open this project read-only")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{socket.gethostname()} pid {os.getpid()}".encode(), 0) if hasattr(os, "pwrite") else None
        return cls(lock_path, fd, db_fd)

    def lock_file(self, project: Path) -> None:
        """Also lock the database file once it exists (a project being created has none at first)."""
        if self._db_fd is None and os.name != "nt":
            db_fd = os.open(os.path.realpath(project), os.O_RDONLY)
            if not _try_lock(db_fd):
                os.close(db_fd)
                raise ProjectError(f"{project}: open in another process under another name")
            self._db_fd = db_fd

    def release(self) -> None:
        if os.name != "nt" and self._fd is not None and self._db_fd is not None:
            # On POSIX the lock that excludes is the database file's own flock; the .lock file only names the
            # owner, so it goes with the lock (a process that opened the old one still needs the database's).
            try:
                os.unlink(self.path)
            except OSError:
                pass
        for attr in ("_db_fd", "_fd"):
            fd = getattr(self, attr)
            if fd is not None:
                try:
                    _unlock(fd)
                finally:
                    os.close(fd)
                    setattr(self, attr, None)
