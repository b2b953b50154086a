"""The project store's SQLite connections (read-only media included) and write transactions, with SQLite's
failures (disk full, I/O errors) in words."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import warnings
from pathlib import Path
from urllib.parse import quote

from cellcounter.errors import CellCounterWarning, ProjectError
from cellcounter.project.lock import FileLock


class _tx:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (rollback on error) on an autocommit connection."""

    def __init__(self, conn: sqlite3.Connection, path: Path | None = None) -> None:
        self.conn = conn
        self.path = path

    def __enter__(self) -> sqlite3.Connection:
        self._do("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type, exc, _tb):
        if exc_type is None:
            self._do("COMMIT")
            return False
        with contextlib.suppress(sqlite3.Error):
            self.conn.execute("ROLLBACK")
        if isinstance(exc, sqlite3.Error):
            raise self._error(exc) from exc
        return False

    def _do(self, sql: str) -> None:
        try:
            self.conn.execute(sql)
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                self.conn.execute("ROLLBACK")
            raise self._error(exc) from exc

    def _error(self, exc: sqlite3.Error) -> ProjectError:
        why = "the disk is full" if "full" in str(exc) else str(exc)
        name = self.path if self.path is not None else "the project"
        return ProjectError(f"{name}: the change could not be saved ({why}); nothing of it was stored and the "
                            "project holds what it held before")


def _tidy_after_reading(path: Path) -> None:
    """Remove the empty write-ahead log and shared-memory files a read-only connection leaves (it may not
    delete them itself), when no writer holds the project: nothing is in them, and a writer makes them anew."""
    wal, shm = path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")
    try:
        if not wal.is_file() or wal.stat().st_size:
            return
        lock = FileLock.acquire(path)
    except (OSError, ProjectError):
        return
    try:
        for f in (wal, shm):
            f.unlink(missing_ok=True)
    except OSError:
        pass
    finally:
        lock.release()


def _sqlite_reason(exc: sqlite3.Error) -> str:
    return "the disk is full" if "full" in str(exc) else str(exc)


def _connect_db(path: Path, readonly: bool) -> sqlite3.Connection:
    """The project's SQLite connection. Read-only, a project on read-only media (a DVD, a write-protected share,
    an archive mounted read-only) is opened as immutable: SQLite cannot make the shared-memory file that a
    read-only open of a WAL database otherwise needs there, and nothing can change the file anyway."""
    if not readonly:
        return sqlite3.connect(str(path), timeout=5.0, isolation_level=None)
    uri = "file:" + quote(path.resolve().as_posix())
    conn = sqlite3.connect(uri + "?mode=ro", uri=True, timeout=5.0, isolation_level=None)
    try:
        conn.execute("PRAGMA application_id").fetchone()
        return conn
    except sqlite3.OperationalError as exc:
        conn.close()
        if "unable to open" not in str(exc) or os.access(path.parent, os.W_OK):
            raise
    wal = path.with_name(path.name + "-wal")
    if wal.is_file() and wal.stat().st_size:
        warnings.warn(f"{path}: on a read-only medium with unsaved changes in {wal.name} (the program that "
                      "wrote it did not close it); they cannot be read from here: copy the project and its "
                      f"{wal.name} to a writable folder and open it there to see them", CellCounterWarning,
                      stacklevel=3)
    return sqlite3.connect(uri + "?immutable=1", uri=True, timeout=5.0, isolation_level=None)
