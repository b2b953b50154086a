"""Rolling backups of a project, made with SQLite's backup API when it is opened for writing.

A project that changed since its newest backup gets a new one beside it, in
``<project>.backups/``; the newest :data:`KEEP` are kept. Every message about a
damaged project names the newest backup and how to restore it.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from pathlib import Path

from cellcounter.errors import CellCounterError, WriteError, os_error_reason

KEEP = 5


def backup_dir(project_path: str | Path) -> Path:
    p = Path(project_path)
    return p.with_name(p.name + ".backups")


def backups(project_path: str | Path) -> list[Path]:
    """The project's backups, oldest first."""
    folder = backup_dir(project_path)
    if not folder.is_dir():
        return []
    return sorted(folder.glob(f"{Path(project_path).stem}-*.ccproj"))


def latest_backup(project_path: str | Path) -> Path | None:
    found = backups(project_path)
    return found[-1] if found else None


def restore_hint(project_path: str | Path) -> str:
    """What to tell a user whose project is damaged."""
    latest = latest_backup(project_path)
    if latest is None:
        return "no backup of it exists yet"
    made = time.strftime("%Y-%m-%d %H:%M", time.localtime(latest.stat().st_mtime))
    return (f"the newest backup is {latest} (made {made}): close cellcounter and copy it over "
            f"{project_path} to restore it")


def copy_database(conn: sqlite3.Connection, dest: Path, image_root: Path | None = None) -> Path:
    """A consistent copy of the open database at ``dest`` through SQLite's backup API (safe while another
    connection writes), built beside it and renamed into place: ``dest`` is whole or absent. A destination
    that cannot be written is named, with why, never blamed on the project. ``image_root`` (the original
    project's folder) is recorded in the copy, which then finds its images wherever it lies."""
    if not dest.parent.is_dir():
        raise WriteError(dest, f"the folder {dest.parent} does not exist")
    tmp = dest.with_name(f".{dest.name}.partial")
    try:
        tmp.unlink(missing_ok=True)
        try:
            target = sqlite3.connect(tmp)
        except sqlite3.Error as exc:
            raise WriteError(dest, f"cannot create a file there ({exc})") from None
        try:
            conn.backup(target)
            target.execute("PRAGMA journal_mode=DELETE")
            if image_root is not None:
                with target:
                    target.execute("INSERT OR REPLACE INTO meta VALUES ('image_root', ?)",
                                   (str(Path(image_root).resolve()),))
        except sqlite3.OperationalError as exc:
            if "full" in str(exc) or "readonly" in str(exc) or "disk I/O" in str(exc):
                raise WriteError(dest, "the disk is full" if "full" in str(exc) else str(exc)) from None
            raise
        finally:
            target.close()
        os.replace(tmp, dest)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise WriteError(dest, os_error_reason(exc)) from None
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return dest


def copy_model_versions(dest: Path, versions: list[tuple[str, Path]]) -> None:
    """Copy each model version's folder (card and weights; no checkpoints) into ``<dest stem>-models/`` beside
    the backup ``dest`` and point the backup's versions there. A version whose folder is missing is left as it
    is (``project check`` names it)."""
    import re
    import shutil

    present = [(name, folder) for name, folder in versions if (folder / "card.json").is_file()]
    if not present:
        return
    root = dest.with_name(dest.stem + "-models")
    moved = {}
    for i, (name, folder) in enumerate(present, start=1):
        target = root / f"{i:03d}-{re.sub(r'[^A-Za-z0-9._@-]+', '_', name)[:80]}"
        try:
            shutil.copytree(folder, target, ignore=shutil.ignore_patterns("checkpoints"), dirs_exist_ok=True)
        except OSError as exc:
            raise WriteError(target, os_error_reason(exc)) from None
        moved[name] = os.path.relpath(target, dest.parent).replace(os.sep, "/")
    conn = sqlite3.connect(dest)
    try:
        with conn:
            conn.executemany("UPDATE models SET file = ? WHERE name = ?", [(f, n) for n, f in moved.items()])
    finally:
        conn.close()


def last_change(project_path: str | Path) -> float:
    """When the project's files were last written (read before opening it: opening touches its WAL)."""
    path = Path(project_path)
    wal = path.with_name(path.name + "-wal")
    return max(path.stat().st_mtime, wal.stat().st_mtime if wal.exists() else 0.0)


def rolling_backup(conn: sqlite3.Connection, project_path: str | Path, changed_at: float,
                   keep: int = KEEP) -> Path | None:
    """Back the project up when it changed (at ``changed_at``) since its newest backup; keep the newest
    ``keep``. Returns the new backup, or ``None`` when none was needed or the disk would not take it (a
    backup never stops an open)."""
    path = Path(project_path)
    latest = latest_backup(path)
    if latest is not None and latest.stat().st_mtime >= changed_at:
        return None
    folder = backup_dir(path)
    now = time.time_ns()  # names sort in the order the backups were made
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now // 1_000_000_000)) + f"-{now % 1_000_000_000:09d}"
    dest = folder / f"{path.stem}-{stamp}.ccproj"
    try:
        folder.mkdir(exist_ok=True)
        copy_database(conn, dest, image_root=path.parent)
    except (OSError, sqlite3.Error, CellCounterError):  # a full disk: no backup this time, the open goes on
        return None
    for old in backups(path)[:-keep]:
        with contextlib.suppress(OSError):
            old.unlink()
    return dest


__all__ = ["KEEP", "backup_dir", "backups", "copy_database", "last_change", "latest_backup", "restore_hint",
           "rolling_backup"]
