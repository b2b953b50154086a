"""The labelling session behind the window: which project and image are open, saving, undo/redo, review queue.

No widgets here: the window's controllers call it, and tests drive it directly.
Every committed edit goes to the project store at once (crash-safe), and onto
an undo stack per image.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path

from platformdirs import user_data_dir

from cellcounter.annotations import DEFAULT_SCORE_THRESHOLD, ImageAnnotation, ReviewStatus
from cellcounter.errors import CellCounterError
from cellcounter.project import Project
from cellcounter.project.importing import ToImport, import_folder, import_image, read_folder, read_image
from cellcounter.project.queue import ordered, uncertainty
from cellcounter.project.undo import UndoHistory
from cellcounter.project.workflows import PredictionJob, ensure_task, review_image, set_image_task, store_prediction
from cellcounter.tasks import TASKS

UNDO_DEPTH = 100


def read_for_open(path: str | Path, task: str | None = None, with_labels: bool = True) -> list[ToImport] | None:
    """What opening ``path`` reads from files before it touches a project (the slow part, safe in a thread);
    ``None`` for a project file or a plain image opened without labels: nothing to read."""
    path = Path(path)
    if path.suffix == ".ccproj" or (path.is_file() and not with_labels):
        return None
    return read_folder(path, task) if path.is_dir() else [read_image(path, task, with_labels)]


def default_project_path(folder: Path) -> Path:
    """Where the project of a plainly opened image or folder lives: the user's data folder, keyed by the folder.

    Data folders are never written to unless the user opens or creates a ``.ccproj`` there:
    they are often shared, read-only, or the original data of a study.
    """
    folder = folder.resolve()
    key = hashlib.sha1(str(folder).encode()).hexdigest()[:12]
    default = Path(user_data_dir("cellcounter", appauthor=False)) / "projects"
    base = Path(os.environ.get("CELLCOUNTER_PROJECTS") or default)
    return base / f"{folder.name}-{key}.ccproj"


class Session:
    """An open project and the image being edited in it."""

    def __init__(self, project: Project, task: str | None = None) -> None:
        self.project = project
        self.task = task
        self.current_id: int | None = None
        self.saved: ImageAnnotation | None = None  # the current image's labels as stored
        self.history = UndoHistory(UNDO_DEPTH)  # small steps: boxes packed, masks as window diffs
        self._uncertainty: dict[tuple[int, float, int], float] = {}  # the review order's, per image and threshold

    # --- opening -------------------------------------------------------------

    @classmethod
    def open_path(cls, path: str | Path, task: str | None = None, user: str | None = None,
                  with_labels: bool = True, current: Session | None = None,
                  read: list[ToImport] | None = None) -> tuple[Session, int]:
        """Open an image, a folder or a project file; returns the session and the image to show first.

        ``with_labels=False`` opens a single image without the labels stored beside it (the samples:
        they open with the default model's predictions, not with the reference labels). ``current`` is the
        session already open, returned as it is when the path belongs to its project. ``read`` is what
        :func:`read_for_open` read of ``path`` beforehand."""
        path = Path(path)
        if path.suffix == ".ccproj":
            proj = Project.open(path, user=user)
            session = cls(proj, task)
            ids = [r.id for r in proj.images()]
            if not ids:
                raise CellCounterError(f"{path}: the project holds no images")
            return session, ids[0]
        folder = path if path.is_dir() else path.parent
        proj_path = default_project_path(folder)
        if current is not None and not current.project.closed and current.project.path.resolve() == proj_path.resolve():
            session = current  # the project already open: add to it (opening it again would meet its own lock)
        else:
            proj = Project.open(proj_path, user=user) if proj_path.exists() else Project.create(proj_path, user=user)
            session = cls(proj, task)
        proj = session.project  # the task asked for now, not the one the reused session was opened with
        if read is not None:  # read already (off the GUI thread): only stored here
            first = import_folder(proj, folder, task, read)[0]
        elif path.is_dir():
            first = import_folder(proj, folder, task)[0]
        else:
            first = import_image(proj, path, task, with_labels)
        return session, first

    def import_image(self, image: Path, with_labels: bool = True) -> int:
        return import_image(self.project, image, self.task, with_labels)

    def import_folder(self, folder: Path) -> int:
        """Add a folder's images (with labels from a known layout) and return the first image's id."""
        return import_folder(self.project, folder, self.task)[0]

    # --- the current image -----------------------------------------------------

    def load(self, image_id: int) -> ImageAnnotation:
        self.current_id = image_id
        self.saved = self.project.load(image_id)
        if self.saved.task is None:  # a plain image gets a task it can be counted as (in memory only, read-only)
            self.saved.task = ensure_task(self.project, image_id, self.task)
        if not self.saved.class_names:
            self.saved.class_names = TASKS[self.saved.task].class_names
        if self.saved.review == ReviewStatus.UNREVIEWED:
            self.project.set_review(image_id, ReviewStatus.IN_PROGRESS)
            self.saved.review = ReviewStatus.IN_PROGRESS
        return self.saved

    @property
    def image_task(self) -> str | None:
        """The task of the image on screen, else the session's (the one it was opened for)."""
        return (self.saved.task if self.saved is not None else None) or self.task

    def set_task(self, task: str) -> ImageAnnotation:
        """Make the current image a ``task`` image (refused while it holds objects); its labels as now stored."""
        if self.current_id is None:
            raise CellCounterError("no image is open")
        set_image_task(self.project, self.current_id, task)
        self.history.forget(self.current_id)
        return self.load(self.current_id)

    def commit(self, ann: ImageAnnotation, origin: str = "human") -> list[str]:
        """Save ``ann`` as the current image's labels; undoable. Returns the parts that changed."""
        if self.current_id is None or self.saved is None:
            raise CellCounterError("no image is open")
        before, packed = self.saved, {}
        changed, stored = self.project.commit(self.current_id, ann, origin=origin, replaced=packed)
        if changed:
            self.saved = stored
            self.history.record(self.current_id, before, self.saved, packed)
        return changed

    def can_undo(self) -> bool:
        return self.history.can_undo(self.current_id)

    def can_redo(self) -> bool:
        return self.history.can_redo(self.current_id)

    def undo(self) -> ImageAnnotation | None:
        return self._step(back=True)

    def redo(self) -> ImageAnnotation | None:
        return self._step(back=False)

    def _step(self, back: bool) -> ImageAnnotation | None:
        if self.current_id is None or self.saved is None:
            return None
        move = self.history.undo if back else self.history.redo
        state = move(self.current_id, self.saved)
        if state is None:
            return None
        _, stored = self.project.commit(self.current_id, state, origin="human")
        if state.review != stored.review:
            self.project.set_review(self.current_id, state.review)
            stored = dataclasses.replace(stored, review=state.review)
        self.saved = stored
        return self.saved

    def store_prediction(self, job: PredictionJob, pred: ImageAnnotation, model_version: str,
                         force: bool = False) -> list[str]:
        """Store a prediction on the image it was computed from (in its own project, even after the user
        switched); undoable when that image is the one open. Raises when it does not belong there."""
        shown = (job.project == self.project.path.resolve() and job.image_id == self.current_id
                 and self.saved is not None)
        before = self.saved
        changed = store_prediction(job, pred, model_version, self.project, force, self.project.user)
        if shown:
            self.saved = self.project.load(job.image_id)
            if changed:
                self.history.record(job.image_id, before, self.saved)
        return changed

    def set_review(self, status: ReviewStatus | str, min_score: float | None = None) -> int:
        """Set the current image's status (undoable); ``reviewed`` at ``min_score`` drops the model objects below
        it (see :func:`review_image`). Returns the number of objects dropped."""
        if self.current_id is None or self.saved is None:
            return 0
        status = ReviewStatus(status)
        if status == self.saved.review and status != ReviewStatus.REVIEWED:
            return 0
        before = self.saved
        dropped = review_image(self.project, self.current_id, status, min_score, labels=self.saved)
        if status == before.review and not dropped:
            return 0
        self.saved = self.project.load(self.current_id)
        self.history.record(self.current_id, before, self.saved)
        return dropped

    # --- the review queue ----------------------------------------------------

    def queue(self, status: str | None = None, order: str = "added",
              threshold: float = DEFAULT_SCORE_THRESHOLD) -> list[int]:
        """Image ids to review: optionally one status only; ``order="least-confident"`` puts first the images
        whose result a look could change most (:func:`cellcounter.project.queue.uncertainty` at ``threshold``)."""
        ids = [r.id for r in self.project.images(status or None)]
        return ordered(ids, order, lambda i: self.uncertainty(i, threshold))

    def uncertainty(self, image_id: int, threshold: float = DEFAULT_SCORE_THRESHOLD) -> float:
        """:func:`~cellcounter.project.queue.uncertainty` of an image, kept until its labels change."""
        key = (image_id, threshold, self.project.history.label_revision(image_id))
        if key not in self._uncertainty:
            self._uncertainty[key] = uncertainty(self.project.load(image_id), threshold)
        return self._uncertainty[key]

    def neighbour(self, step: int, status: str | None = None, order: str = "added",
                  threshold: float = DEFAULT_SCORE_THRESHOLD) -> int | None:
        ids = self.queue(status, order, threshold)
        if not ids:
            return None
        if self.current_id not in ids:
            return ids[0]
        return ids[(ids.index(self.current_id) + step) % len(ids)]

    # --- counts ----------------------------------------------------------------

    def count_rows(self, ann: ImageAnnotation, score_threshold: float | None = None) -> list[tuple[str, int, int]]:
        """``(class, model count, current count)`` for the current image."""
        current = ann.counts(score_threshold=score_threshold)
        model = (self.project.history.model_counts(self.current_id, score_threshold)
                 if self.current_id is not None else None)
        return [(name, (model or {}).get(name, 0), n) for name, n in current.items()]

    def model_grade(self) -> int | None:
        """The grade the model gave the image on screen, whatever a person set since."""
        return None if self.current_id is None else self.project.history.model_grade(self.current_id)

    def project_count_rows(self, score_threshold: float | None = None) -> list[tuple[str, int, int]]:
        totals: dict[str, list[int]] = {}
        for rec in self.project.images():
            ann = self.project.load(rec.id)
            model = self.project.history.model_counts(rec.id, score_threshold) or {}
            for name, n in ann.counts(score_threshold=score_threshold).items():
                row = totals.setdefault(name, [0, 0])
                row[0] += model.get(name, 0)
                row[1] += n
        return [(k, v[0], v[1]) for k, v in totals.items()]

    def close(self) -> None:
        self.project.close()

