"""Looking after a project: finding moved images, checking it is sound, copying it safely.

Functions of an open :class:`~cellcounter.project.store.Project`; ``project check`` / ``relink`` / ``backup``
and the app's Project menu call them.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from cellcounter.errors import ProjectError
from cellcounter.imageio import IMAGE_SUFFIXES, file_hash
from cellcounter.project import backups, checks
from cellcounter.project._sql import _tx
from cellcounter.project.store import _SCHEMA, ImageRecord, Project, damaged


def missing_images(project: Project) -> list[ImageRecord]:
    return [rec for rec in project.images() if not rec.path.is_file()]


def relink(project: Project, folder: str | Path) -> dict[int, Path]:
    """Find moved images under ``folder`` by content hash and point the project at them."""
    missing = {rec.content_hash: rec for rec in missing_images(project)}
    if not missing:
        return {}
    sizes = {r["content_hash"]: r["file_size"]
             for r in project._conn.execute("SELECT content_hash, file_size FROM images")}
    wanted_sizes = {sizes[h] for h in missing}
    found: dict[int, Path] = {}
    for f in sorted(Path(folder).rglob("*")):
        if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file() and f.stat().st_size in wanted_sizes:
            rec = missing.get(file_hash(f))
            if rec is not None and rec.id not in found:
                found[rec.id] = f
    conn = project._write()
    with _tx(conn, project.path):
        for image_id, f in found.items():
            conn.execute("UPDATE images SET path = ? WHERE id = ?", (project._rel(f), image_id))
    return found


def check(project: Project, quick: bool = False) -> list[str]:
    """Problems found (empty when the project is sound): see :mod:`cellcounter.project.checks`. ``quick``
    skips comparing each image file's content hash."""
    conn = project._conn
    problems: list[str] = []
    try:
        problems += [r[0] for r in conn.execute("PRAGMA integrity_check") if r[0] != "ok"]
        problems += [f"broken reference in {r[0]}" for r in conn.execute("PRAGMA foreign_key_check")]
        problems += checks.schema_problems(conn, _SCHEMA)
        rows = checks.image_row_problems(conn)
        problems += rows
        if not rows:  # the records can be built: their files and labels can be looked at
            records = project.images()
            problems += [f"image missing on disk: {rec.path}" for rec in records if not rec.path.is_file()]
            if not quick:
                problems += checks.content_problems(records)
            for r in conn.execute(project._labels_sql):  # every label must decode and make sense
                try:
                    problems += checks.label_problems(project._decode(r))
                except Exception as exc:  # noqa: BLE001 - any decoding failure means damaged bytes
                    problems.append(damaged(r["path"], exc))
        problems += checks.history_problems(conn)
        problems += checks.model_problems(conn, project.root)
    except (sqlite3.DatabaseError, UnicodeDecodeError, ValueError) as exc:
        problems.append(f"the database is damaged ({type(exc).__name__}: {exc})")
    if problems:
        problems.append(f"to restore: {backups.restore_hint(project.path)}")
    return problems


def backup(project: Project, dest: str | Path) -> Path:
    """A consistent copy through SQLite's backup API, safe while another connection writes, with the
    project's model versions (copied beside it, so that the copy's versions can be used and rolled back)."""
    dest = Path(dest)
    project.refuse_output(dest)
    if dest.exists():
        raise ProjectError(f"{dest}: already exists")
    backups.copy_database(project._conn, dest, image_root=project._image_root or project.root)
    backups.copy_model_versions(dest, [(v.name, Path(v.file)) for v in project.registry.versions()])
    return dest
