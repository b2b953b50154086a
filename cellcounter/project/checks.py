"""``project check``: every field that loading reads is validated, so "ok" means the project loads and exports.

Looked at: SQLite's integrity and keys; the schema against the one this version writes (a dropped table, a
foreign trigger or view); each image's row (review status, task, size), file (present, and the same content
by hash unless ``quick``) and labels (each part decodes; boxes finite and inside sane bounds, class ids within
the class names, origins known); the edit history's blobs; the model versions' JSON. Each problem names the
image or row it is about.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np

from cellcounter.annotations import ImageAnnotation, Origin, ReviewStatus
from cellcounter.imageio import file_hash
from cellcounter.project import serialize as ser
from cellcounter.tasks import TASKS

_ORIGINS = {int(o) for o in Origin}
_STATUSES = {s.value for s in ReviewStatus}


def expected_schema(schema_sql: str) -> set[tuple[str, str]]:
    """``(type, name)`` of every table, index, trigger and view a new project has."""
    mem = sqlite3.connect(":memory:")
    try:
        mem.executescript(schema_sql)
        return _objects(mem)
    finally:
        mem.close()


def _objects(conn: sqlite3.Connection) -> set[tuple[str, str]]:
    return {(t, n) for t, n in conn.execute("SELECT type, name FROM sqlite_master") if not n.startswith("sqlite_")}


def schema_problems(conn: sqlite3.Connection, schema_sql: str) -> list[str]:
    want, have = expected_schema(schema_sql), _objects(conn)
    out = [f"the schema lacks {t} {n!r}" for t, n in sorted(want - have)]
    out += [f"the schema holds a foreign {t} {n!r} (not made by cellcounter)" for t, n in sorted(have - want)]
    return out


def label_problems(ann: ImageAnnotation) -> list[str]:
    """What is wrong with one image's decoded labels (empty when they are sound)."""
    out = []
    n = len(ann.class_names)
    where = ann.image_path
    b = ann.boxes
    if len(b):
        if not np.isfinite(b.xyxy).all():
            out.append(f"{where}: {int((~np.isfinite(b.xyxy).all(axis=1)).sum())} box(es) with non-finite "
                       "coordinates")
        elif ((b.xyxy[:, 2] < b.xyxy[:, 0]) | (b.xyxy[:, 3] < b.xyxy[:, 1])).any():
            out.append(f"{where}: a box with its corners swapped")
    m = ann.masks
    parts = [("box", b.classes, b.origins), ("mark", ann.points.classes, ann.points.origins)]
    if m is not None:
        parts.append(("instance", m.classes, m.origins))
    for kind, cls, origins in parts:
        if len(cls) and (cls.min() < 0 or cls.max() >= n):
            out.append(f"{where}: a {kind} has class id {int(cls.max() if cls.max() >= n else cls.min())}, "
                       f"but the image has {n} class name(s)")
        bad = set(np.unique(origins).tolist()) - _ORIGINS if len(origins) else set()
        if bad:
            out.append(f"{where}: a {kind} has an unknown origin {sorted(bad)[0]}")
    if len(ann.points) and not np.isfinite(ann.points.rc).all():
        out.append(f"{where}: a mark with non-finite coordinates")
    if ann.masks is not None and ann.masks.shape != (ann.height, ann.width):
        out.append(f"{where}: masks of {ann.masks.shape} for a {ann.width}x{ann.height} image")
    return out


def image_row_problems(conn: sqlite3.Connection) -> list[str]:
    out = []
    for image_id, path, review, task, w, h in conn.execute(
            "SELECT id, path, review, task, width, height FROM images ORDER BY id"):
        if review not in _STATUSES:
            out.append(f"image {image_id} ({path}): unknown review status {review!r}")
        if task is not None and task not in TASKS:
            out.append(f"image {image_id} ({path}): unknown task {task!r}")
        if not (isinstance(w, int) and isinstance(h, int) and w > 0 and h > 0):
            out.append(f"image {image_id} ({path}): size {w!r} x {h!r} is not an image's")
    return out


def content_problems(records) -> list[str]:
    """Images on disk whose bytes are not those the project was made with."""
    out = []
    for rec in records:
        if rec.path.is_file():
            try:
                now = file_hash(rec.path)
            except OSError as exc:
                out.append(f"{rec.path}: cannot be read ({exc.strerror})")
                continue
            if now != rec.content_hash:
                out.append(f"{rec.path}: the file on disk is a different image from the one labelled "
                           "(content hash differs); relink the right file or restore it")
    return out


def history_problems(conn: sqlite3.Connection) -> list[str]:
    decoders = {"boxes": ser.blob_boxes, "points": ser.blob_points}
    out = []
    for event_id, image_id, kind, before, after in conn.execute(
            "SELECT id, image_id, kind, before, after FROM events ORDER BY id"):
        decode = decoders.get(kind)
        try:
            if decode is not None:
                for blob in (before, after):
                    if blob is not None:
                        decode(blob)
            elif kind == "masks" and after is not None:
                ser.unpack(after)
            elif kind == "grade":
                for text in (before, after):
                    if text is not None:
                        ser.json_grade(text.decode() if isinstance(text, bytes) else text)
        except Exception as exc:  # noqa: BLE001 - any decoding failure is damage
            out.append(f"edit history event {event_id} (image {image_id}, {kind}) is damaged "
                       f"({type(exc).__name__}); undo past it is not possible")
    return out


def model_problems(conn: sqlite3.Connection, root: Path | None = None) -> list[str]:
    """Model versions whose stored JSON is damaged, or (with ``root``, the project's folder) whose model folder
    is not where the project says: Predict and rollback could not use them."""
    out = []
    for name, file, card, training_data, metrics in conn.execute(
            "SELECT name, file, card, training_data, metrics FROM models ORDER BY id"):
        folder = Path(file) if Path(file).is_absolute() or root is None else root / file
        if root is not None and not (folder / "card.json").is_file():
            out.append(f"model version {name!r}: its model folder {folder} is missing (Predict and rollback "
                       "cannot use it)")
        for field, text in (("card", card), ("training_data", training_data), ("metrics", metrics)):
            if text is None and field != "card":
                continue
            try:
                value = json.loads(text)
            except (TypeError, ValueError):
                out.append(f"model version {name!r}: its {field} is not JSON")
                continue
            if field == "card" and not isinstance(value, dict):
                out.append(f"model version {name!r}: its card is not an object")
    return out
