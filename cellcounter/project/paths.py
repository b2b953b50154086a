"""A project's files: the project itself and its companions, one name per project, no output over them."""

from __future__ import annotations

import os
from pathlib import Path

from cellcounter.errors import ProjectError
from cellcounter.project import backups

_SQLITE_SUFFIXES = ("-wal", "-shm", "-journal", ".lock")


def project_files(path: str | Path) -> list[Path]:
    """The project file (resolved) and the companions kept beside it: SQLite's journal, WAL and shared memory,
    the writer's lock and the rolling backups' folder."""
    real = Path(os.path.realpath(path))
    return [real] + [real.with_name(real.name + s) for s in _SQLITE_SUFFIXES] + [backups.backup_dir(real)]


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def refuse_project_output(project: str | Path, dst: str | Path) -> None:
    """Raise :class:`ProjectError` when ``dst`` is the project, one of its companions, inside its backups, or
    resolves to any of them (a symlink, a hard link, ``..`` or ``//`` in the path)."""
    dst = Path(dst)
    real_dst = Path(os.path.realpath(dst))
    files = project_files(project)
    for f in files:
        if real_dst == f or _same_file(dst, f) or real_dst.is_relative_to(files[-1]):
            raise ProjectError(f"{dst}: is the project {project} itself or one of its own files ({f.name}); "
                               "writing there would destroy it. Choose another destination")


def _refuse_hard_links(path: Path) -> None:
    """A project reachable under two names can lose edits: SQLite names its write-ahead log after the name
    used, so a crash's log left beside one name is not seen (and later replayed over newer edits) through the
    other."""
    try:
        links = os.stat(path).st_nlink
    except OSError:
        return
    if links > 1:
        raise ProjectError(f"{path}: the project file has {links} hard links (names). Edits saved through one "
                           "name can be lost through another, so cellcounter opens a project under one name only: "
                           "remove the other links (keep the name you use; a copy made with cp is independent)")
