"""A project's edit history: every change to an image's labels, review state and task, who made it and when.

The ``events`` table is append-only. A label event holds the part's new state (``after``; for masks a
reversible window diff); the state before it is the previous event's ``after`` of the same image and part, so
it is not stored twice. Undo and redo within a session are :mod:`cellcounter.project.undo`'s, which keeps the
states it needs in memory; the history is the audit trail and the record of what the model predicted.
"""

from __future__ import annotations

import csv
import io
import json
import sqlite3
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cellcounter.annotations import Origin
from cellcounter.errors import ProjectError
from cellcounter.fileutil import atomic_write_text
from cellcounter.project import serialize as ser
from cellcounter.tasks import TASKS

if TYPE_CHECKING:
    from cellcounter.project.store import Project

#: the parts whose events hold the part's whole new state: each one's ``before`` is the last one's ``after``
#: (a masks event holds a reversible window diff instead)
CHAINED_PARTS = ("boxes", "points", "grade", "regions")
_CHAINED_SQL = ", ".join(f"'{kind}'" for kind in CHAINED_PARTS)  # the same, as an SQL list

_AUDIT_FIELDS = ["id", "time_utc", "user", "image", "kind", "origin", "before_bytes", "after_bytes"]


class History:
    """The edit history of one open project (``project.history``)."""

    def __init__(self, project: Project) -> None:
        self._project = project
        self._model_counts_cache: dict[tuple, dict[str, int]] = {}

    def record(self, conn: sqlite3.Connection, image_id: int, kind: str, origin: str, before: bytes | None,
               after: bytes | None) -> None:
        """One event, inside the caller's transaction. Chained parts keep no ``before`` (the chain holds it)."""
        if kind in CHAINED_PARTS:
            before = None
        conn.execute("INSERT INTO events (time, user, image_id, kind, origin, before, after)"
                     " VALUES (?, ?, ?, ?, ?, ?, ?)",
                     (time.time(), self._project.user, image_id, kind, origin, before, after))

    def events(self, image_id: int | None = None) -> list[dict]:
        """The events in order, each with the sizes of the states before and after it."""
        # projects written before the chain stored ``before`` themselves: their own value wins
        sql = ("SELECT e.id, e.time, e.user, e.image_id, i.path AS image, e.kind, e.origin,"
               f" coalesce(length(e.before), CASE WHEN e.kind IN ({_CHAINED_SQL}) THEN"
               " lag(length(e.after)) OVER (PARTITION BY e.image_id, e.kind ORDER BY e.id) END) AS before_bytes,"
               " length(e.after) AS after_bytes FROM events e LEFT JOIN images i ON i.id = e.image_id")
        sql, args = f"SELECT * FROM ({sql})", ()
        if image_id is not None:
            sql, args = sql + " WHERE image_id = ?", (image_id,)
        return [dict(r) for r in self._project._conn.execute(sql + " ORDER BY id", args)]

    def export_audit(self, dst: str | Path) -> Path:
        """The history as CSV (or JSON when ``dst`` ends in ``.json``): who changed what, when."""
        dst = Path(dst)
        self._project.refuse_output(dst)
        events = self.events()
        for e in events:
            e["time_utc"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(e["time"]))
        if dst.suffix.lower() == ".json":
            atomic_write_text(dst, json.dumps(events, indent=1))
        else:
            buf = io.StringIO()
            w = csv.DictWriter(buf, _AUDIT_FIELDS, extrasaction="ignore", lineterminator="\n")
            w.writeheader()
            w.writerows(events)
            atomic_write_text(dst, buf.getvalue())
        return dst

    def label_revision(self, image_id: int) -> int:
        """The id of the image's latest label edit (0 if never edited): a prediction started at one revision
        and finished at another was computed while someone changed the labels."""
        row = self._project._conn.execute("SELECT max(id) FROM events WHERE image_id = ? AND kind IN "
                                          "('boxes', 'masks', 'points', 'grade')", (image_id,)).fetchone()
        return int(row[0] or 0)

    def model_grade(self, image_id: int) -> int | None:
        """The grade the latest model prediction gave the image (``None`` if no model graded it)."""
        row = self._project._conn.execute(
            "SELECT after FROM events WHERE image_id = ? AND origin LIKE 'model:%' AND kind = 'grade' "
            "ORDER BY id DESC LIMIT 1", (image_id,)).fetchone()
        grade = ser.json_grade(_str(row[0])) if row is not None and row[0] is not None else None
        return None if grade is None else grade.value

    def model_counts(self, image_id: int, score_threshold: float | None = None) -> dict[str, int] | None:
        """Per-class counts of the latest model prediction saved for the image (``None`` if never predicted).

        Read from the history, so it survives every later correction: the counts table's "model" column.
        """
        conn = self._project._conn
        # only the class names are needed: no need to load (and decompress) the image's labels
        stored = conn.execute("SELECT a.class_names, i.task FROM images i LEFT JOIN annotations a "
                              "ON a.image_id = i.id WHERE i.id = ?", (image_id,)).fetchone()
        if stored is None:
            raise ProjectError(f"{self._project.path}: no image with id {image_id}")
        names = class_names(stored["class_names"], stored["task"])
        row = conn.execute(
            "SELECT id, kind FROM events WHERE image_id = ? AND origin LIKE 'model:%' AND kind IN "
            "('boxes', 'masks', 'points') ORDER BY id DESC LIMIT 1", (image_id,)).fetchone()
        if row is None:
            return None
        key = (image_id, row["id"], score_threshold, tuple(names))  # events never change once written
        if key in self._model_counts_cache:
            return dict(self._model_counts_cache[key])
        blob = conn.execute("SELECT after FROM events WHERE id = ?", (row["id"],)).fetchone()[0]
        counts = _model_object_counts(row["kind"], blob, names, score_threshold)
        self._model_counts_cache[key] = counts
        return dict(counts)


def _model_object_counts(kind: str, blob: bytes, names: tuple[str, ...],
                         score_threshold: float | None) -> dict[str, int]:
    """Per-class counts of the model's objects in a saved state (it also holds the human objects kept beside
    the prediction, which are not counted)."""
    thr = -np.inf if score_threshold is None else score_threshold
    if kind == "masks":
        d = ser.unpack(blob)
        present = bool(d["after_present"][0])
        sel = (d["after_origins"] == Origin.MODEL) & ~(d["after_scores"] < thr) if present else None
        classes = d["after_classes"][sel] if present else []
    elif kind == "boxes":
        part = ser.blob_boxes(blob)
        classes = part.classes[(part.origins == Origin.MODEL) & ~(part.scores < thr)]
    else:
        part = ser.blob_points(blob)
        classes = part.classes[part.origins == Origin.MODEL]
    classes = np.asarray(classes, dtype=np.int64)
    per_class = np.bincount(classes[(classes >= 0) & (classes < len(names))], minlength=len(names))
    return {n: int(k) for n, k in zip(names, per_class)}


def class_names(stored_json: str | None, task: str | None) -> tuple[str, ...]:
    """An image's class names as saved, else its task's."""
    if stored_json:
        return tuple(json.loads(stored_json))
    return TASKS[task].class_names if task in TASKS else ()


def _str(v: bytes | str) -> str:
    return v.decode() if isinstance(v, bytes) else v
