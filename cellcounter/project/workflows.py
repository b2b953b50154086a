"""The correction loop's steps on a project, shared by the app, ``cellcounter project`` and the tests.

Predict, review, export, train: each is a function of an open :class:`Project`
and plain values. The app's panels call these and only add widgets around them.

* A prediction is bound to the project, image id and content hash it was
  computed from (:class:`PredictionJob`): it is stored on that image only, in
  that project, whichever image is on screen by the time it ends; a result for
  an image whose labels changed while it ran is refused unless asked for.
* Reviewing means "what I saw is right": model objects scoring below the
  threshold the reviewer had set are dropped from the labels and the threshold
  is recorded, so exports and training take exactly what was shown.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cellcounter.annotations import DEFAULT_SCORE_THRESHOLD, Boxes, ImageAnnotation, InstanceMasks, Origin, ReviewStatus
from cellcounter.errors import ProjectError
from cellcounter.project.gate import activation_warning, calibration_words
from cellcounter.project.registry import ModelVersion
from cellcounter.project.store import Project

# model objects below DEFAULT_SCORE_THRESHOLD are kept in the store but not shown, exported or trained on
IMAGE_SETS = ("reviewed", "all")
DEFAULT_TASK = "blood"  # what a plain image is taken for when nothing says otherwise (it can be changed)


class StalePredictionError(ProjectError):
    """The image's labels changed while the prediction ran: storing it could undo those edits."""


@dataclass(frozen=True)
class PredictionJob:
    """What a prediction was computed from: where its result may be stored, and nowhere else."""

    project: Path
    image_id: int
    image_path: Path
    content_hash: str
    width: int
    height: int
    revision: int  # the image's label revision when the job was made
    regions: tuple = ()  # the image's regions when the job was made: only they are predicted and counted


def prediction_jobs(project: Project, image_ids: Iterable[int]) -> list[PredictionJob]:
    jobs = []
    for image_id in image_ids:
        rec = project.image(image_id)
        jobs.append(PredictionJob(project.path.resolve(), rec.id, rec.path, rec.content_hash, rec.width, rec.height,
                                  project.history.label_revision(rec.id), tuple(project.regions(rec.id))))
    return jobs


def select_images(project: Project, images: str = "unreviewed") -> list[int]:
    """Ids of ``unreviewed`` (not yet reviewed: unreviewed or in progress), ``reviewed`` or ``all`` images."""
    recs = project.images()
    if images == "all":
        return [r.id for r in recs]
    if images == "reviewed":
        return [r.id for r in recs if r.review == ReviewStatus.REVIEWED]
    if images == "unreviewed":
        return [r.id for r in recs if r.review != ReviewStatus.REVIEWED]
    raise ValueError(f"images must be 'unreviewed', 'reviewed' or 'all', not {images!r}")


@dataclass(frozen=True)
class Predicted:
    """One image's prediction, by ``model_version``, to store in ``job``'s project."""

    job: PredictionJob
    annotation: ImageAnnotation
    model_version: str


@dataclass(frozen=True)
class HeatMapReady:
    """Where the grader looked on ``job``'s image: ``heat`` ``(H, W)`` in [0, 1]."""

    job: PredictionJob
    heat: np.ndarray


@dataclass(frozen=True)
class ImagesDone:
    done: int
    total: int


@dataclass(frozen=True)
class PredictionFailed:
    """``job``'s image could not be predicted (unreadable, damaged, too large): ``reason`` says why; the
    batch goes on with the next image."""

    job: PredictionJob
    reason: str


PredictionEvent = Predicted | HeatMapReady | PredictionFailed | ImagesDone


def predict_jobs(predictor, jobs: Sequence[PredictionJob], should_stop: Callable[[], bool] = lambda: False,
                 heat_maps: bool = False,
                 tile_progress: Callable[[int, int, int, int], None] | None = None) -> Iterator[PredictionEvent]:
    """Predict each job's image; yields a :class:`Predicted` per image (or :class:`PredictionFailed`, and the
    batch goes on), a :class:`HeatMapReady` after it (graders with ``heat_maps``) and :class:`ImagesDone`.

    ``tile_progress(image, images, tiles_done, tiles)`` is called as each tile of image number ``image``
    (from 0) is done, from the thread that runs the predictions: a large image reports its progress long
    before it ends."""
    from cellcounter.imageio import open_image
    from cellcounter.inference.predictor import Cancelled
    from cellcounter.inference.run import BAD_FILE_ERRORS, failure_reason, predict_image

    for i, job in enumerate(jobs):
        if should_stop():
            return
        progress = None if tile_progress is None else (
            lambda done, total, i=i: tile_progress(i, len(jobs), done, total))
        heat = None
        try:
            with open_image(job.image_path) as src:
                ann = predict_image(predictor, src, str(job.image_path), progress, should_stop, job.regions)
                if heat_maps and ann.grade is not None:
                    heat = predictor.explain(src.read(), ann.grade.value)[0]
        except Cancelled:
            return  # a tiled prediction cut short is incomplete: never stored
        except BAD_FILE_ERRORS as exc:
            yield PredictionFailed(job, failure_reason(exc, job.image_path))
        else:
            yield Predicted(job, ann, predictor.model_version)
            if heat is not None:
                yield HeatMapReady(job, heat)
        yield ImagesDone(i + 1, len(jobs))


DUPLICATE_IOU = 0.5  # a new model box overlapping a kept or rejected one this much is the same cell
MASK_KEPT_SHARE = 0.5  # a new model instance lying this much under kept instances is one of them


def merge_prediction(saved: ImageAnnotation, pred: ImageAnnotation, model_version: str) -> ImageAnnotation:
    """The stored labels with a new prediction, never overwriting a person's work.

    The model's earlier objects are replaced; a person's objects (human, corrected, reference) stay with their
    ids, and a new model object that duplicates one of them (boxes at IoU >= :data:`DUPLICATE_IOU`, instances
    mostly under kept ones) is dropped, as is one where a person deleted a model box before. A grade a person
    set is kept. New objects are numbered after every stored id, so none takes the id of one the image held.
    """
    from cellcounter.metrics import box_iou
    from cellcounter.project.rejected import REJECTED

    merged = ImageAnnotation(saved.image_path, saved.width, saved.height, saved.class_names or pred.class_names,
                             task=pred.task or saved.task, review=saved.review, model_version=model_version,
                             pixel_size_um=saved.pixel_size_um, regions=list(saved.regions),
                             attributes=dict(saved.attributes))
    rejected = saved.attributes.get(REJECTED, Boxes())
    first = max(int(saved.boxes.ids.max(initial=0)), int(rejected.ids.max(initial=0))) + 1
    kept = saved.boxes.subset(saved.boxes.origins != Origin.MODEL)
    new = not_duplicating(pred.boxes, kept)
    if len(new) and len(rejected):  # the same finding a person deleted: same place, same class
        same = (box_iou(new.xyxy, rejected.xyxy) >= DUPLICATE_IOU) & (new.classes[:, None] == rejected.classes[None])
        new = new.subset(~same.any(axis=1))
    merged.boxes = kept.concat(_same_ids_for_unchanged(saved.boxes, new.renumbered(first)))
    merged.points = saved.points
    merged.masks = merge_masks(saved.masks, pred.masks) if pred.masks is not None else saved.masks
    human_grade = saved.grade is not None and saved.grade.origin != Origin.MODEL
    merged.grade = saved.grade if human_grade or pred.grade is None else pred.grade
    return merged


def not_duplicating(new: Boxes, kept: Boxes) -> Boxes:
    """``new`` without the boxes lying on one of ``kept`` (IoU >= :data:`DUPLICATE_IOU`): one cell, one box,
    whatever class a person gave it."""
    from cellcounter.metrics import box_iou

    if not len(new) or not len(kept):
        return new
    return new.subset(box_iou(new.xyxy, kept.xyxy).max(axis=1) < DUPLICATE_IOU)


def _same_ids_for_unchanged(saved: Boxes, new: Boxes) -> Boxes:
    """A new model box identical to one of the model's stored boxes (place, class, score) is that box: it keeps
    its id, so predicting again with the same model changes nothing."""
    model = saved.subset(saved.origins == Origin.MODEL)
    if not len(model) or not len(new):
        return new
    index = {_box_key(model, i): int(model.ids[i]) for i in range(len(model))}
    ids = new.ids.copy()
    for i in range(len(new)):
        ids[i] = index.pop(_box_key(new, i), ids[i])
    if len(np.unique(ids)) != len(ids):  # an old id equal to a fresh one: keep the fresh numbering
        return new
    return Boxes(new.xyxy, new.classes, new.scores, new.origins, ids)


def _box_key(b: Boxes, i: int) -> tuple:
    return (*np.round(b.xyxy[i], 3).tolist(), int(b.classes[i]), round(float(b.scores[i]), 5))


def merge_masks(saved: InstanceMasks | None, pred: InstanceMasks) -> InstanceMasks:
    """Human, corrected and reference instances stay on top, with their ids; a predicted instance lying mostly
    (:data:`MASK_KEPT_SHARE`) under them is the same object and dropped; the others fill the pixels left free,
    numbered after every stored id."""
    if saved is None:
        return pred
    kept = saved.subset(saved.origins != Origin.MODEL)
    offset = int(max(saved.ids.max(initial=0), saved.label_image.max(initial=0)))
    p = pred.relabelled()
    lab = kept.label_image.copy()
    n = len(p) + 1
    area = np.bincount(p.label_image.ravel(), minlength=n)[:n]
    under = np.bincount(p.label_image[lab > 0], minlength=n)[:n]
    own = area > 0
    own[1:] &= under[1:] < MASK_KEPT_SHARE * area[1:]
    own[0] = False
    free = (lab == 0) & own[p.label_image]
    lab[free] = p.label_image[free] + offset
    present = np.zeros(n, dtype=bool)
    present[np.unique(p.label_image[free])] = True
    sel = np.nonzero(present[1:])[0]
    return InstanceMasks(lab, np.concatenate([kept.ids, sel + 1 + offset]),
                         np.concatenate([kept.classes, p.classes[sel]]), np.concatenate([kept.scores, p.scores[sel]]),
                         np.concatenate([kept.origins, p.origins[sel]]))


def check_job(project: Project, job: PredictionJob, pred: ImageAnnotation, force: bool = False) -> None:
    """Refuse a result that does not belong to this project's image, or (unless ``force``) one computed
    while the image's labels were edited."""
    if project.path.resolve() != job.project:
        raise ProjectError(f"a prediction for {job.project} cannot be stored in {project.path}")
    rec = project.image(job.image_id)
    if rec.content_hash != job.content_hash:
        raise ProjectError(f"{rec.path}: the image changed since it was predicted (content hash differs); "
                           "nothing stored")
    if (pred.width, pred.height) != (rec.width, rec.height):
        raise ProjectError(f"{rec.path}: the prediction is for a {pred.width}x{pred.height} image but the image "
                           f"is {rec.width}x{rec.height}; nothing stored")
    if not force and project.history.label_revision(job.image_id) != job.revision:
        raise StalePredictionError(f"{rec.path}: its labels were edited while the prediction ran; "
                                   "apply it anyway to replace the model's objects")


def apply_prediction(project: Project, job: PredictionJob, pred: ImageAnnotation, model_version: str,
                     force: bool = False) -> list[str]:
    """Store a prediction on the image it was computed from (merged with its human labels); the parts changed."""
    check_job(project, job, pred, force)
    saved = project.load(job.image_id)
    merged = merge_prediction(saved, pred, model_version)
    changed = project.save(job.image_id, merged, origin=f"model:{model_version}")
    if saved.review == ReviewStatus.REVIEWED and set(changed) & {"boxes", "masks", "grade"}:
        project.set_review(job.image_id, ReviewStatus.IN_PROGRESS)  # it holds model objects nobody checked
    return changed


def store_prediction(job: PredictionJob, pred: ImageAnnotation, model_version: str,
                     open_project: Project | None = None, force: bool = False, user: str | None = None) -> list[str]:
    """:func:`apply_prediction` in the job's own project (:func:`project_at`)."""
    with project_at(job.project, open_project, user) as proj:
        return apply_prediction(proj, job, pred, model_version, force)


@contextlib.contextmanager
def project_at(path: str | Path, open_project: Project | None = None, user: str | None = None) -> Iterator[Project]:
    """The project at ``path`` for a result of work started there: ``open_project`` when it is that one (left
    open), else that file opened for the write and closed again (the user switched projects while it ran)."""
    if open_project is not None and not open_project.closed and open_project.path.resolve() == Path(path).resolve():
        yield open_project
        return
    with Project.open(path, user=user) as proj:
        yield proj


# --- review --------------------------------------------------------------------------


def shown_labels(ann: ImageAnnotation, min_score: float | None) -> ImageAnnotation:
    """The labels a reviewer sees at ``min_score``: model objects below it left out, everything else kept."""
    if min_score is None:
        return ann
    keep_boxes = ann.boxes.above(min_score)  # the one rule of what is drawn and counted
    out = dataclasses.replace(ann, boxes=ann.boxes.subset(keep_boxes))
    if ann.masks is not None and len(ann.masks):
        keep = ann.masks.above(min_score)
        if not keep.all():
            out.masks = ann.masks.subset(keep)
    return out


def review_image(project: Project, image_id: int, status: ReviewStatus | str = ReviewStatus.REVIEWED,
                 min_score: float | None = None, labels: ImageAnnotation | None = None) -> int:
    """Set an image's review status. Marking it ``reviewed`` at ``min_score`` drops the model objects below it
    from its labels (one edit in the history) and records the threshold. ``labels`` are the image's labels as
    they stand (the app passes its saved state; else they are loaded). Returns the number of objects dropped."""
    status = ReviewStatus(status)
    dropped = 0
    if status == ReviewStatus.REVIEWED and min_score is not None:
        ann = labels if labels is not None else project.load(image_id)
        kept = shown_labels(ann, min_score)
        dropped = ann.n_objects() - kept.n_objects()
        if dropped:
            project.save(image_id, kept, origin="human")
    project.set_review(image_id, status, min_score)
    return dropped


# --- what leaves the project: exports and training sets ---------------------------


def labels_to_export(project: Project, images: str | Sequence[int] = "reviewed", min_score: float | None = None,
                     unreviewed_min_score: float = DEFAULT_SCORE_THRESHOLD) -> list[ImageAnnotation]:
    """Each image's labels as its reviewer saw them.

    ``images`` is ``reviewed``, ``all`` or a list of ids. Reviewed images go out as reviewed (their
    sub-threshold model objects were dropped then); the others at ``unreviewed_min_score`` (the threshold
    the app shows them at). An explicit ``min_score`` applies to every image on top of that.
    """
    ids = select_images(project, images) if isinstance(images, str) else list(images)
    out = []
    for image_id in ids:
        ann = project.load(image_id)
        thresholds = [t for t in (min_score, None if ann.review == ReviewStatus.REVIEWED else unreviewed_min_score)
                      if t is not None]
        out.append(shown_labels(ann, max(thresholds) if thresholds else None))
    return out


def export_project(project: Project, dst: str | Path, fmt: str, images: str | Sequence[int] = "reviewed",
                   min_score: float | None = None, unreviewed_min_score: float = DEFAULT_SCORE_THRESHOLD,
                   image_root: str | Path | None = None) -> tuple[int, list[Path]]:
    """Write :func:`labels_to_export` with the core's writers; ``(images exported, files written)``.
    ``image_root``: for COCO, the folder ``file_name`` is relative to (default: the images' shared folder)."""
    from cellcounter.formats import write_labels

    project.refuse_output(dst)
    anns = labels_to_export(project, images, min_score, unreviewed_min_score)
    if not anns:
        raise ProjectError(f"{project.path}: no {images if isinstance(images, str) else 'chosen'} images to export")
    return len(anns), write_labels(anns, Path(dst), fmt, image_root)


def training_set(project: Project, task: str | None = None) -> list[ImageAnnotation]:
    """The reviewed images' labels (of one task when given), frozen: what a fine-tune trains and validates on."""
    anns = [a for a in labels_to_export(project, "reviewed") if task is None or a.task in (None, task)]
    if len(anns) < 2:
        raise ProjectError(f"{project.path}: mark at least two images reviewed before fine-tuning "
                           "(one is kept for validation)")
    return [dataclasses.replace(a, attributes=dict(a.attributes)) for a in anns]


# --- model versions -------------------------------------------------------------------


def default_model(project: Project | None, task: str) -> str | None:
    """What Predict uses for ``task`` unless told otherwise: the project's active version, else the bundled
    ``<task>-default`` model; ``None`` when neither exists."""
    from cellcounter.models.card import CARD_NAME, RESOURCES_MODELS

    if project is not None:
        active = project.registry.active(task)
        if active is not None and (Path(active.file) / CARD_NAME).is_file():
            return active.file
    bundled = RESOURCES_MODELS / f"{task}-default"
    return str(bundled) if (bundled / CARD_NAME).is_file() else None


def activate_model(project: Project, name: str, force: bool = False) -> str | None:
    """Make ``name`` the active version of its task; returns the version it replaces (for a rollback). A version
    with an :func:`activation_warning` is refused unless ``force`` (a person confirmed it)."""
    versions = {v.name: v for v in project.registry.versions()}
    if name not in versions:
        raise ProjectError(f"{project.path}: no model version called {name!r} (known: {', '.join(versions) or 'none'})")
    warning = activation_warning(versions[name].metrics)
    if warning and not force:
        raise ProjectError(f"{name} was not made active: {warning} (--force to activate it anyway)")
    previous = project.registry.active(versions[name].task)
    project.registry.activate(name)
    return previous.name if previous else None


def rollback_model(project: Project, task: str) -> str | None:
    """Reactivate the active version's parent when the project holds it, else no project version is active
    (Predict falls back to the bundled model). Returns the version now active."""
    active = project.registry.active(task)
    if active is None:
        return None
    names = {v.name for v in project.registry.versions(task)}
    if active.parent in names:
        project.registry.activate(active.parent)
        return active.parent
    project.registry.deactivate(task)
    return None


def register_model(project: Project, model_dir: str | Path, init: str | None,
                   training_data: Sequence[int]) -> ModelVersion:
    """Record a fine-tuned model as a new version of the project (not active yet): its parent (the project
    version it started from, by name, else the model path), the images it was trained on, and its validation
    scores after and before (the parent's, on the same images). Returns the version's record."""
    import time

    from cellcounter.fileutil import atomic_write_text
    from cellcounter.models.card import CARD_NAME, ModelCard

    card = ModelCard.from_file(Path(model_dir) / CARD_NAME)
    base = version = time.strftime("%Y%m%d-%H%M%S")
    taken = {v.name for v in project.registry.versions()}
    for i in range(1, len(taken) + 2):  # two runs within a second
        if f"{card.name}@{version}" not in taken:
            break
        version = f"{base}-{i}"
    # one name everywhere: the list, the Predict panel and the objects' provenance all say name@version
    card.version = version
    atomic_write_text(Path(model_dir) / CARD_NAME, card.to_json())
    name = f"{card.name}@{version}"
    parent = None
    if init and init != "none":
        same = [v.name for v in project.registry.versions(card.task) if Path(v.file).resolve() == Path(init).resolve()]
        parent = same[0] if same else str(init)
    metrics = {"after": card.metrics.get("validation", {}), "before": card.metrics.get("parent_validation")}
    if card.metrics.get("base_validation"):  # the start model's own validation images: what it kept
        metrics["base"] = card.metrics["base_validation"]
    metrics["calibration"] = calibration_words(card)
    project.registry.add(name, card.task, model_dir, {"name": card.name, "version": card.version},
                         parent=parent, training_data=list(training_data), metrics=metrics)
    return project.registry.get(name)


def guess_task(image_path: str | Path) -> str | None:
    """A task from the pixels, where they say it plainly: a fundus photograph (a bright disc on a black field,
    large) is retinopathy; a dark fluorescence field is nuclei. ``None`` when unsure."""
    from cellcounter.imageio import open_image
    from cellcounter.inference.preprocess import to_float_rgb

    try:
        with open_image(image_path, lazy=True) as src:
            levels = src.display_levels()
            thumb = to_float_rgb(np.asarray(levels[-1][::max(1, min(levels[-1].shape[:2]) // 256),
                                                       ::max(1, min(levels[-1].shape[:2]) // 256)]))
            side = min(src.width, src.height)
    except Exception:  # noqa: BLE001 - an unreadable image says nothing; opening it reports the problem
        return None
    grey = thumb.mean(axis=2)
    h, w = grey.shape
    k = max(1, min(h, w) // 10)
    corners = np.concatenate([grey[:k, :k].ravel(), grey[:k, -k:].ravel(), grey[-k:, :k].ravel(),
                              grey[-k:, -k:].ravel()])
    centre = grey[h // 4: 3 * h // 4, w // 4: 3 * w // 4]
    if side >= 800 and corners.mean() < 0.08 and centre.mean() > 3 * corners.mean() + 0.1:
        return "retinopathy"
    if grey.mean() < 0.2 and np.percentile(grey, 99) > 3 * np.median(grey) + 0.1:
        return "nuclei"
    return None


def set_image_task(project: Project, image_id: int, task: str) -> None:
    """Give an image another task. Refused while it holds objects of its present task (their classes would
    not mean anything in the new one): delete them first."""
    from cellcounter.tasks import get_task

    get_task(task)
    rec = project.image(image_id)
    if rec.task == task:
        return
    ann = project.load(image_id)
    if ann.n_objects() or ann.grade is not None:
        raise ProjectError(f"{rec.path}: holds {ann.n_objects()} object(s){' and a grade' if ann.grade else ''} "
                           f"of task {rec.task}; delete them before making it a {task} image")
    project.set_task(image_id, task)


def ensure_task(project: Project, image_id: int, fallback: str | None = None) -> str:
    """The image's task, giving it one when it has none: the pixels' plain answer (:func:`guess_task`), else
    ``fallback``, else :data:`DEFAULT_TASK`. A person can change it with :func:`set_image_task`."""
    rec = project.image(image_id)
    if rec.task:
        return rec.task
    task = guess_task(rec.path) or fallback or DEFAULT_TASK
    if not project.readonly:
        project.set_task(image_id, task)
    return task
