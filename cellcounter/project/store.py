"""The project store: one SQLite file (WAL) holding images, current annotations, edit history and models.

Every :meth:`Project.save` is one transaction, committed before it returns, so
a crash loses at most the edit in flight. One process writes a project at a
time (an OS file lock, released by the OS if the process dies); others may
open it read-only.
"""

from __future__ import annotations

import contextlib
import dataclasses
import getpass
import json
import os
import sqlite3
import time
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cellcounter.annotations import ImageAnnotation, ReviewStatus, summarise
from cellcounter.errors import CellCounterWarning, ProjectError, WriteError, os_error_reason
from cellcounter.imageio import file_hash, open_image
from cellcounter.project import backups
from cellcounter.project import serialize as ser
from cellcounter.project._sql import _connect_db, _sqlite_reason, _tidy_after_reading, _tx
from cellcounter.project.history import History, class_names
from cellcounter.project.lock import FileLock
from cellcounter.project.paths import _refuse_hard_links, project_files, refuse_project_output
from cellcounter.project.registry import ModelRegistry
from cellcounter.project.rejected import REJECTED, _rejected_after, _rejected_blob, rejected_boxes
from cellcounter.regions import json_regions, regions_json
from cellcounter.tasks import TASKS

SCHEMA_VERSION = 4
APPLICATION_ID = 0x43434E54  # "CCNT": marks the SQLite file as a cellcounter project

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE images (
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL UNIQUE,          -- relative to the project file's folder when possible
    content_hash TEXT NOT NULL,
    file_size INTEGER NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    pixel_size_um REAL,
    task TEXT,
    review TEXT NOT NULL DEFAULT 'unreviewed',
    reviewed_by TEXT,
    reviewed_at REAL,
    added_at REAL NOT NULL,
    review_min_score REAL               -- the score threshold the reviewer saw when marking it reviewed
);
CREATE TABLE annotations (
    image_id INTEGER PRIMARY KEY REFERENCES images(id) ON DELETE CASCADE,
    class_names TEXT NOT NULL,
    boxes BLOB, masks BLOB, points BLOB, grade TEXT,
    model_version TEXT,
    updated_at REAL NOT NULL,
    regions TEXT,                       -- JSON [{name, xy}]: areas counted on their own
    rejected BLOB                       -- float64 rows id class x1 y1 x2 y2: model boxes a person deleted
);
CREATE TABLE events (
    id INTEGER PRIMARY KEY,
    time REAL NOT NULL,
    user TEXT NOT NULL,
    image_id INTEGER REFERENCES images(id) ON DELETE CASCADE,
    kind TEXT NOT NULL,                 -- boxes, masks, points, grade, regions, review, add
    origin TEXT NOT NULL,               -- 'human' or 'model:<version>'
    before BLOB, after BLOB             -- for masks: a reversible window diff in 'after'
);
CREATE INDEX events_image ON events(image_id, id);
CREATE TABLE models (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    task TEXT NOT NULL,
    file TEXT NOT NULL,
    card TEXT NOT NULL,
    parent TEXT,
    training_data TEXT,
    metrics TEXT,
    created_at REAL NOT NULL,
    active INTEGER NOT NULL DEFAULT 0
);
"""


@dataclass(frozen=True)
class ImageRecord:
    id: int
    path: Path
    content_hash: str
    width: int
    height: int
    task: str | None
    review: ReviewStatus
    reviewed_by: str | None
    review_min_score: float | None = None


def current_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no login name (containers, services)
        return f"uid{os.getuid()}" if hasattr(os, "getuid") else "unknown"


class Project:
    """An open project. Use :meth:`create` or :meth:`open`; close it (or use ``with``)."""

    def __init__(self, path: Path, conn: sqlite3.Connection, lock: FileLock | None, readonly: bool,
                 user: str | None) -> None:
        self.path = path
        self.root = path.parent
        self._conn = conn
        self._lock = lock
        self.readonly = readonly
        self.user = user or current_user()
        conn.row_factory = sqlite3.Row  # columns read by name
        self.registry = ModelRegistry(self)
        self.history = History(self)
        self._schema = conn.execute("PRAGMA user_version").fetchone()[0]  # an old file opened read-only stays old
        row = conn.execute("SELECT value FROM meta WHERE key = 'image_root'").fetchone()
        # a backup records its original's folder: where it lies, its relative image paths are looked up there too
        self._image_root = Path(row[0]) if row and Path(row[0]).resolve() != path.parent.resolve() else None

    # --- opening -------------------------------------------------------------

    @classmethod
    def create(cls, path: str | Path, user: str | None = None) -> Project:
        path = Path(path)
        if path.exists():
            raise ProjectError(f"{path}: already exists; open it instead")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            lock = FileLock.acquire(path)
        except OSError as exc:
            raise WriteError(path, os_error_reason(exc)) from None
        tmp = path.with_name(f".{path.name}.creating")
        conn = None
        try:
            tmp.unlink(missing_ok=True)
            conn = sqlite3.connect(tmp)
            with conn:
                conn.executescript(_SCHEMA)
                conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                conn.executemany("INSERT INTO meta VALUES (?, ?)", [
                    ("schema_version", str(SCHEMA_VERSION)), ("created_at", repr(time.time())),
                    ("created_by", user or current_user())])
            conn.close()
            os.replace(tmp, path)  # the project appears complete or not at all
        except (sqlite3.Error, OSError) as exc:
            if conn is not None:
                conn.close()
            with contextlib.suppress(OSError):
                tmp.unlink()
            lock.release()
            raise WriteError(path, os_error_reason(exc) if isinstance(exc, OSError) else _sqlite_reason(exc)) from None
        lock.lock_file(path)
        return cls._connect(path, lock, readonly=False, user=user)

    @classmethod
    def open(cls, path: str | Path, readonly: bool = False, user: str | None = None) -> Project:
        path = Path(path)
        if not path.is_file():
            raise ProjectError(f"{path}: no such project file")
        _refuse_hard_links(path)
        try:
            lock = None if readonly else FileLock.acquire(path)
        except OSError as exc:
            raise ProjectError(f"{path}: cannot be opened for changes ({os_error_reason(exc)}); it can still be "
                               "read (status, export, check, backup), or copy it to a writable folder to "
                               "change it") from None
        try:
            changed_at = backups.last_change(path)
            proj = cls._connect(path, lock, readonly, user)
            if not readonly:
                backups.rolling_backup(proj._conn, path, changed_at)
            return proj
        except BaseException:
            if lock is not None:
                lock.release()
            raise

    @classmethod
    def _connect(cls, path: Path, lock: FileLock | None, readonly: bool, user: str | None) -> Project:
        with open(path, "rb") as fh:
            head = fh.read(16)
        if head != b"SQLite format 3\x00":
            raise ProjectError(f"{path}: not a cellcounter project (not an SQLite database)")
        conn = _connect_db(path, readonly)
        try:
            app_id = conn.execute("PRAGMA application_id").fetchone()[0]
            if app_id != APPLICATION_ID:
                raise ProjectError(f"{path}: not a cellcounter project (a foreign SQLite database)")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise ProjectError(f"{path}: made by a newer cellcounter (schema {version}, this version reads "
                                   f"up to {SCHEMA_VERSION}); update cellcounter to open it")
            if not readonly:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")  # with WAL: durable at checkpoints, never corrupt
            conn.execute("PRAGMA foreign_keys=ON")
            if version < SCHEMA_VERSION and not readonly:
                _migrate(conn, version)
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise ProjectError(f"{path}: damaged or not a cellcounter project ({exc}); "
                               f"{backups.restore_hint(path)}") from None
        except BaseException:
            conn.close()
            raise
        return cls(path, conn, lock, readonly, user)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None  # type: ignore[assignment]
            if self.readonly:
                _tidy_after_reading(self.path)
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    @property
    def closed(self) -> bool:
        return self._conn is None

    def __enter__(self) -> Project:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def companions(self) -> list[Path]:
        """The project file and every file SQLite or cellcounter keeps beside it (journal, WAL, lock, backups)."""
        return project_files(self.path)

    def refuse_output(self, dst: str | Path) -> None:
        """Raise when writing ``dst`` would overwrite the project or one of its companion files."""
        refuse_project_output(self.path, dst)

    def _write(self) -> sqlite3.Connection:
        if self.readonly:
            raise ProjectError(f"{self.path}: opened read-only")
        return self._conn

    # --- images --------------------------------------------------------------

    def _rel(self, image: Path) -> str:
        try:
            str(image).encode("utf-8")
        except UnicodeEncodeError:  # bytes of another encoding (Latin-1) in the name: SQLite stores text
            raise ProjectError(f"{os.fsencode(image)!r}: the file's name is not valid text (UTF-8); rename the "
                               "file to add it") from None
        image = image.resolve()
        try:
            return os.path.relpath(image, self.root.resolve()).replace(os.sep, "/")
        except ValueError:  # another drive on Windows
            return image.as_posix()

    def _abs(self, stored: str) -> Path:
        p = Path(stored)
        if p.is_absolute():
            return p
        here = Path(os.path.normpath(self.root / p))
        if self._image_root is not None and not here.exists():  # a backup: its images are the original's
            there = Path(os.path.normpath(self._image_root / p))
            if there.exists():
                return there
        return here

    def add_image(self, image: str | Path, task: str | None = None) -> int:
        """Add an image (size, hash and pixel size read from it); returns its id. Adding it twice is a no-op, and
        so is adding a copy of an image the project holds (same bytes under another name): a warning names both."""
        image = Path(image)
        rel = self._rel(image)
        row = self._conn.execute("SELECT id FROM images WHERE path = ?", (rel,)).fetchone()
        if row:
            return int(row[0])
        same = self.find_content(file_hash(image))
        if same is not None:
            warnings.warn(f"{image}: the same image as {self.image(same).path} (identical content), already in "
                          "the project; not added twice", CellCounterWarning, stacklevel=2)
            return same
        with open_image(image, lazy=True) as src:
            w, h, px = src.width, src.height, src.pixel_size_um
        conn = self._write()
        with _tx(conn, self.path):
            cur = conn.execute(
                "INSERT INTO images (path, content_hash, file_size, width, height, pixel_size_um, task, added_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (rel, file_hash(image), image.stat().st_size, w, h, px, task, time.time()))
            image_id = int(cur.lastrowid)
            self.history.record(conn, image_id, "add", "human", None, rel.encode())
        return image_id

    def set_task(self, image_id: int, task: str) -> None:
        """Make ``task`` the image's own (what it is predicted, counted and trained as); one event."""
        if task not in TASKS:
            raise ProjectError(f"unknown task {task!r}; known tasks: {', '.join(TASKS)}")
        old = self.image(image_id).task
        if old == task:
            return
        conn = self._write()
        with _tx(conn, self.path):
            conn.execute("UPDATE images SET task = ? WHERE id = ?", (task, image_id))
            conn.execute("UPDATE annotations SET class_names = ? WHERE image_id = ?",
                         (json.dumps(list(TASKS[task].class_names)), image_id))
            self.history.record(conn, image_id, "task", "human", (old or "").encode(), task.encode())

    def images(self, status: ReviewStatus | str | None = None, image_id: int | None = None) -> list[ImageRecord]:
        """The project's images in id order: all, those in review state ``status``, or the one ``image_id``."""
        min_score = "review_min_score" if self._schema >= 2 else "NULL AS review_min_score"
        sql = f"SELECT id, path, content_hash, width, height, task, review, reviewed_by, {min_score} FROM images"
        where, args = [], []
        if status is not None:
            where.append("review = ?")
            args.append(ReviewStatus(status).value)
        if image_id is not None:
            where.append("id = ?")
            args.append(int(image_id))
        if where:
            sql += " WHERE " + " AND ".join(where)
        rows = self._conn.execute(sql + " ORDER BY id", tuple(args)).fetchall()
        return [ImageRecord(r["id"], self._abs(r["path"]), r["content_hash"], r["width"], r["height"], r["task"],
                            ReviewStatus(r["review"]), r["reviewed_by"], r["review_min_score"]) for r in rows]

    def image(self, image_id: int) -> ImageRecord:
        """One image's record, by its primary key (not a scan of them all: a batch over N images stays O(N))."""
        found = self.images(image_id=image_id)
        if not found:
            raise ProjectError(f"{self.path}: no image with id {image_id}")
        return found[0]

    def regions(self, image_id: int) -> list:
        """The image's regions, read without its labels."""
        if self._schema < 3:
            return []
        row = self._conn.execute("SELECT regions FROM annotations WHERE image_id = ?", (image_id,)).fetchone()
        return json_regions(row[0]) if row is not None else []

    def find_image(self, path: str | Path) -> int | None:
        row = self._conn.execute("SELECT id FROM images WHERE path = ?", (self._rel(Path(path)),)).fetchone()
        return None if row is None else int(row[0])

    def find_content(self, content_hash: str) -> int | None:
        """The image with these bytes (under whatever name), if the project holds one."""
        row = self._conn.execute("SELECT id FROM images WHERE content_hash = ? ORDER BY id",
                                 (content_hash,)).fetchone()
        return None if row is None else int(row[0])

    # --- annotations ---------------------------------------------------------

    def load(self, image_id: int) -> ImageAnnotation:
        r = self._conn.execute(self._labels_sql + " WHERE i.id = ?", (image_id,)).fetchone()
        if r is None:
            raise ProjectError(f"{self.path}: no image with id {image_id}")
        try:
            return self._decode(r)
        except Exception as exc:  # noqa: BLE001 - any decoding failure means the stored bytes are damaged
            raise ProjectError(f"{self.path}: {damaged(r['path'], exc)}; {backups.restore_hint(self.path)}") from None

    @property
    def _labels_sql(self) -> str:
        return _LABELS_SQL.format(regions="a.regions" if self._schema >= 3 else "NULL AS regions",  # old, read-only
                                  rejected="a.rejected" if self._schema >= 4 else "NULL AS rejected")

    def _decode(self, r: sqlite3.Row) -> ImageAnnotation:
        return ImageAnnotation(
            image_path=str(self._abs(r["path"])), width=r["width"], height=r["height"],
            class_names=class_names(r["class_names"], r["task"]), task=r["task"], boxes=ser.blob_boxes(r["boxes"]),
            masks=ser.blob_masks(r["masks"]), points=ser.blob_points(r["points"]), grade=ser.json_grade(r["grade"]),
            content_hash=r["content_hash"], pixel_size_um=r["pixel_size_um"], review=ReviewStatus(r["review"]),
            model_version=r["model_version"], regions=json_regions(r["regions"]),
            attributes={REJECTED: rejected_boxes(r["rejected"])},
        )

    def save(self, image_id: int, ann: ImageAnnotation, origin: str = "human") -> list[str]:
        """Store ``ann`` as the image's current labels; one event per changed part. Returns the parts changed."""
        return self.commit(image_id, ann, origin)[0]

    def commit(self, image_id: int, ann: ImageAnnotation, origin: str = "human",
               replaced: dict | None = None) -> tuple[list[str], ImageAnnotation]:
        """:meth:`save`, returning also the labels as now stored, so that an editor need not load them again.

        ``replaced``, when given, receives the previous state's stored boxes and points as the bytes the file
        held (an undo history keeps them without serialising the same state again).
        """
        conn = self._write()
        old = self.load(image_id)
        if (ann.width, ann.height) != (old.width, old.height):
            raise ProjectError(f"{old.image_path}: labels are for a {ann.width}x{ann.height} image but the image "
                               f"is {old.width}x{old.height}; nothing saved")
        new_parts = {"boxes": ser.boxes_blob(ann.boxes), "points": ser.points_blob(ann.points),
                     "masks": ser.masks_blob(ann.masks), "grade": ser.grade_json(ann.grade),
                     "regions": regions_json(ann.regions)}
        old_parts = self._stored_parts(image_id, old)
        if replaced is not None:
            replaced.update({k: old_parts[k] for k in ("boxes", "points")})
        changed = []
        with _tx(conn, self.path):
            for kind in ("boxes", "masks", "points", "grade", "regions"):
                if kind == "masks":
                    same = _masks_same(old.masks, ann.masks)
                elif kind == "boxes":
                    same = old.boxes.equals(ann.boxes, atol=0, same_ids=True)
                elif kind == "points":
                    same = old.points.equals(ann.points, atol=0, same_ids=True)
                else:
                    same = old_parts[kind] == new_parts[kind]
                if same:
                    continue
                changed.append(kind)
                if kind == "masks":
                    self.history.record(conn, image_id, kind, origin, None, ser.mask_diff(old.masks, ann.masks))
                else:
                    self.history.record(conn, image_id, kind, origin, None, _b(new_parts[kind]))
            # boxes unchanged: nothing was deleted and no rejected id came back (a save at 100,000 boxes skips it)
            rejected = _rejected_after(old, ann, origin) if "boxes" in changed else None
            if changed or tuple(old.class_names) != tuple(ann.class_names):
                conn.execute(
                    "INSERT INTO annotations (image_id, class_names, boxes, masks, points, grade, model_version,"
                    " updated_at, regions) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(image_id) DO UPDATE SET"
                    " class_names=excluded.class_names, boxes=excluded.boxes, masks=excluded.masks,"
                    " points=excluded.points, grade=excluded.grade, model_version=excluded.model_version,"
                    " updated_at=excluded.updated_at, regions=excluded.regions",
                    (image_id, json.dumps(list(ann.class_names)), new_parts["boxes"], new_parts["masks"],
                     new_parts["points"], new_parts["grade"], ann.model_version, time.time(), new_parts["regions"]))
                old = dataclasses.replace(old, class_names=tuple(ann.class_names), boxes=ann.boxes, masks=ann.masks,
                                          points=ann.points, grade=ann.grade, model_version=ann.model_version,
                                          regions=list(ann.regions))
            if rejected is not None:
                conn.execute("UPDATE annotations SET rejected = ? WHERE image_id = ?",
                             (_rejected_blob(rejected), image_id))
                old = dataclasses.replace(old, attributes={**old.attributes, REJECTED: rejected})
        return changed, old

    def _stored_parts(self, image_id: int, old: ImageAnnotation) -> dict:
        """The image's saved parts as the bytes already in the file (serialising them again costs as much as
        the save itself on a slide with 100,000 boxes)."""
        r = self._conn.execute("SELECT boxes, points, masks, grade, regions FROM annotations WHERE image_id = ?",
                               (image_id,)).fetchone()
        if r is None or r[0] is None or r[1] is None:
            return {"boxes": ser.boxes_blob(old.boxes), "points": ser.points_blob(old.points),
                    "masks": ser.masks_blob(old.masks), "grade": ser.grade_json(old.grade),
                    "regions": regions_json(old.regions)}
        return {"boxes": r[0], "points": r[1], "masks": r[2], "grade": r[3], "regions": r[4]}

    def set_review(self, image_id: int, status: ReviewStatus | str, min_score: float | None = None) -> None:
        """Set the review status; ``min_score`` records the score threshold the reviewer had set (kept only
        with ``reviewed``)."""
        status = ReviewStatus(status)
        conn = self._write()
        old = self.image(image_id).review
        min_score = float(min_score) if min_score is not None and status == ReviewStatus.REVIEWED else None
        with _tx(conn, self.path):
            conn.execute("UPDATE images SET review = ?, reviewed_by = ?, reviewed_at = ?, review_min_score = ?"
                         " WHERE id = ?", (status.value, self.user, time.time(), min_score, image_id))
            self.history.record(conn, image_id, "review", "human", old.value.encode(), status.value.encode())

    def status(self, annotations: Iterable[ImageAnnotation] | None = None) -> dict:
        """Per-status image counts and per-class object counts over the whole project (over ``annotations``,
        the labels as shown, when given; else every stored object)."""
        records = self.images()
        by_status = {s.value: 0 for s in ReviewStatus}
        for rec in records:
            by_status[rec.review.value] += 1
        anns = list(annotations) if annotations is not None else [self.load(rec.id) for rec in records]
        return {**summarise(anns), "images": len(records), "review": by_status}


_LABELS_SQL = ("SELECT i.path, i.width, i.height, i.task, i.review, i.content_hash, i.pixel_size_um, a.class_names,"
               " a.boxes, a.masks, a.points, a.grade, a.model_version, {regions}, {rejected} FROM images i"
               " LEFT JOIN annotations a ON a.image_id = i.id")


def damaged(image: str, exc: BaseException) -> str:
    return f"the labels of {image} are damaged and cannot be read ({type(exc).__name__}: {exc})"


def _b(v: bytes | str | None) -> bytes | None:
    return v.encode() if isinstance(v, str) else v


def _masks_same(a, b) -> bool:
    if a is None or b is None:
        return a is None and b is None

    return (np.array_equal(a.label_image, b.label_image) and np.array_equal(a.ids, b.ids)
            and np.array_equal(a.classes, b.classes) and np.array_equal(a.origins, b.origins)
            and np.allclose(a.scores, b.scores, equal_nan=True))


def _migrate(conn: sqlite3.Connection, version: int) -> None:
    """Bring an older schema up to :data:`SCHEMA_VERSION`, one step at a time."""
    steps: dict[int, str] = {1: "ALTER TABLE images ADD COLUMN review_min_score REAL;",
                             2: "ALTER TABLE annotations ADD COLUMN regions TEXT;",
                             3: "ALTER TABLE annotations ADD COLUMN rejected BLOB;"}
    while version < SCHEMA_VERSION:
        conn.executescript(steps[version])
        version += 1
        conn.execute(f"PRAGMA user_version = {version}")
