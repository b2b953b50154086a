"""A project's model versions: the fine-tuned models it made, which one each task predicts with, and from what.

Kept in the project's ``models`` table; the model folders themselves lie beside the project file (or where
they were trained) and are referenced by path, relative where possible.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from cellcounter.errors import ProjectError
from cellcounter.project._sql import _tx

if TYPE_CHECKING:
    from cellcounter.project.store import Project


@dataclass(frozen=True)
class ModelVersion:
    """One registered model version.

    ``card`` holds the model card's name and version; ``training_data`` the image ids it was fine-tuned on;
    ``metrics`` what its training run measured (before/after on the held-back corrections, the base check,
    the verdict).
    """

    name: str
    task: str
    file: str
    card: dict = field(default_factory=dict)
    parent: str | None = None
    training_data: list[int] = field(default_factory=list)
    metrics: dict = field(default_factory=dict)
    created_at: float = 0.0
    active: bool = False

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


_STORED = "name, task, file, card, parent, training_data, metrics, created_at"  # what add() writes
_COLUMNS = _STORED + ", active"


class ModelRegistry:
    """The model versions of one open project (``project.registry``)."""

    def __init__(self, project: Project) -> None:
        self._project = project

    def add(self, name: str, task: str, file: str | Path, card: dict, parent: str | None = None,
            training_data: Sequence[int] | None = None, metrics: dict | None = None, active: bool = False) -> int:
        """Register a version; ``active`` makes it the one ``task`` predicts with. Returns its row id."""
        p = self._project
        conn = p._write()
        with _tx(conn, p.path):
            cur = conn.execute(
                f"INSERT INTO models ({_STORED}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (name, task, p._rel(Path(file)), json.dumps(card), parent,
                 json.dumps(list(training_data or [])), json.dumps(metrics or {}), time.time()))
            if active:
                _activate(conn, name, task)
        return int(cur.lastrowid)

    def activate(self, name: str) -> None:
        """Make ``name`` the active version of its task (the others of that task inactive)."""
        p = self._project
        conn = p._write()
        row = conn.execute("SELECT task FROM models WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise ProjectError(f"{p.path}: no model version called {name!r}")
        with _tx(conn, p.path):
            _activate(conn, name, row["task"])

    def deactivate(self, task: str) -> None:
        """No active version for ``task`` (predictions then use a bundled or chosen model)."""
        p = self._project
        conn = p._write()
        with _tx(conn, p.path):
            conn.execute("UPDATE models SET active = 0 WHERE task = ?", (task,))

    def versions(self, task: str | None = None) -> list[ModelVersion]:
        """The versions in the order they were registered: all, or ``task``'s."""
        p = self._project
        sql = f"SELECT {_COLUMNS} FROM models" + (" WHERE task = ?" if task else "") + " ORDER BY id"
        return [ModelVersion(r["name"], r["task"], str(p._abs(r["file"])), json.loads(r["card"]), r["parent"],
                             json.loads(r["training_data"] or "[]"), json.loads(r["metrics"] or "{}"),
                             r["created_at"], bool(r["active"]))
                for r in p._conn.execute(sql, (task,) if task else ())]

    def get(self, name: str) -> ModelVersion:
        found = next((v for v in self.versions() if v.name == name), None)
        if found is None:
            raise ProjectError(f"{self._project.path}: no model version called {name!r}")
        return found

    def active(self, task: str) -> ModelVersion | None:
        return next((v for v in self.versions(task) if v.active), None)


def _activate(conn, name: str, task: str) -> None:
    conn.execute("UPDATE models SET active = (name = ?) WHERE task = ?", (name, task))
