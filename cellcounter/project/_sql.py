"""Write transactions of the project store, with SQLite's failures (disk full, I/O errors) in words."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

from cellcounter.errors import ProjectError


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
