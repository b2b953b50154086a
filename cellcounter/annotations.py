"""The one annotation model shared by the GUI, IO, inference and training.

Coordinate conventions
----------------------
* Boxes are ``(x1, y1, x2, y2)`` in pixel-edge coordinates: pixel ``(row r,
  col c)`` covers ``[c, c + 1) x [r, r + 1)``, so a box around the whole image
  is ``(0, 0, width, height)``. This is the convention of VOC files as BCCD
  writes them and of COCO ``bbox``.
* Points are ``(row, col)`` as napari uses them.
* Instance masks are one integer label image (0 background, ``k`` instance
  ``k``) with per-instance class, score and origin.

:func:`flip_xy_rc` is the only place where ``(x, y)`` and ``(row, col)`` are
swapped; every conversion to or from napari goes through it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import Enum, IntEnum
from typing import Literal

import numpy as np
from scipy import ndimage

from cellcounter.regions import Region
from cellcounter.tasks import TASKS

CountKind = Literal["boxes", "masks", "points"]


class Origin(IntEnum):
    """Who produced an object: a model, a human, a human correcting a model, or reference labels imported with
    the image (a data set's ground truth, not drawn in this project)."""

    MODEL = 0
    HUMAN = 1
    CORRECTED = 2
    REFERENCE = 3


def _kept(scores: np.ndarray, origins: np.ndarray, score_threshold: float | None) -> np.ndarray:
    if score_threshold is None:
        return np.ones(len(scores), dtype=bool)
    return np.isnan(scores) | (scores >= score_threshold) | (origins == Origin.CORRECTED)


class ReviewStatus(str, Enum):
    UNREVIEWED = "unreviewed"
    IN_PROGRESS = "in_progress"
    REVIEWED = "reviewed"


def flip_xy_rc(coords: np.ndarray) -> np.ndarray:
    """Swap ``(x, y)`` and ``(row, col)`` in the last axis of ``coords``.

    The swap is its own inverse, so the same function converts both ways.
    This is the single place in the code base where the two conventions meet.
    """
    a = np.asarray(coords, dtype=np.float64)
    if a.shape[-1] != 2:
        raise ValueError(f"expected coordinates with a last axis of 2, got shape {a.shape}")
    return a[..., ::-1].copy()


def xyxy_to_napari_rectangles(xyxy: np.ndarray) -> np.ndarray:
    """Boxes ``(N, 4)`` as ``x1, y1, x2, y2`` to napari rectangles ``(N, 4, 2)`` of ``(row, col)`` corners."""
    b = np.asarray(xyxy, dtype=np.float64).reshape(-1, 4)
    corners_xy = np.stack(
        [b[:, [0, 1]], b[:, [2, 1]], b[:, [2, 3]], b[:, [0, 3]]], axis=1
    )  # (N, 4 corners, xy)
    return flip_xy_rc(corners_xy)


def napari_rectangles_to_xyxy(rects: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
    """napari rectangles (any corner order, ``(row, col)``) to ``(N, 4)`` boxes ``x1, y1, x2, y2``."""
    out = np.zeros((len(rects), 4), dtype=np.float64)
    for i, rect in enumerate(rects):
        xy = flip_xy_rc(np.asarray(rect)[:, -2:])
        out[i] = [xy[:, 0].min(), xy[:, 1].min(), xy[:, 0].max(), xy[:, 1].max()]
    return out


def _as_1d(values: Iterable | np.ndarray | None, n: int, dtype, fill) -> np.ndarray:
    if values is None:
        return np.full(n, fill, dtype=dtype)
    a = np.asarray(values, dtype=dtype).reshape(-1)
    if a.shape[0] != n:
        raise ValueError(f"expected {n} values, got {a.shape[0]}")
    return a


def _object_ids(ids: Iterable | np.ndarray | None, n: int) -> np.ndarray:
    if ids is None:
        return np.arange(1, n + 1, dtype=np.int64)
    a = _as_1d(ids, n, np.int64, 0)
    if n and (a.min() <= 0 or (not (np.diff(a) > 0).all() and len(np.unique(a)) != n)):  # rising: unique
        raise ValueError("object ids must be positive and unique")
    return a


def _concat_ids(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``b``'s ids after ``a``'s; those ``a`` already uses are renumbered past both."""
    clash = np.isin(b, a)
    if clash.any():
        b = b.copy()
        top = int(max(a.max(initial=0), b.max(initial=0)))
        b[clash] = np.arange(top + 1, top + 1 + int(clash.sum()))
    return np.concatenate([a, b])


@dataclass
class Boxes:
    """Axis-aligned boxes with class ids, optional scores (NaN = none), origins and ids.

    ``ids`` name the objects of one image (positive, unique; 1..N when not given): an object keeps its id
    through edits, saves and undo, so an editor tells a moved box from a new one. File formats ignore them.
    """

    xyxy: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))
    classes: np.ndarray | None = None
    scores: np.ndarray | None = None
    origins: np.ndarray | None = None
    ids: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.xyxy = np.asarray(self.xyxy, dtype=np.float64).reshape(-1, 4)
        n = len(self.xyxy)
        self.classes = _as_1d(self.classes, n, np.int64, 0)
        self.scores = _as_1d(self.scores, n, np.float64, np.nan)
        self.origins = _as_1d(self.origins, n, np.uint8, Origin.HUMAN)
        self.ids = _object_ids(self.ids, n)

    @classmethod
    def empty(cls) -> Boxes:
        return cls()

    def __len__(self) -> int:
        return len(self.xyxy)

    def subset(self, keep: np.ndarray) -> Boxes:
        return Boxes(self.xyxy[keep], self.classes[keep], self.scores[keep], self.origins[keep], self.ids[keep])

    def concat(self, other: Boxes) -> Boxes:
        """Both sets of boxes; ``other``'s boxes whose ids are taken here get new ones."""
        return Boxes(
            np.concatenate([self.xyxy, other.xyxy]),
            np.concatenate([self.classes, other.classes]),
            np.concatenate([self.scores, other.scores]),
            np.concatenate([self.origins, other.origins]),
            _concat_ids(self.ids, other.ids),
        )

    def renumbered(self, first_id: int) -> Boxes:
        """The same boxes with ids ``first_id``, ``first_id + 1``, ... (new objects joining an image)."""
        return Boxes(self.xyxy, self.classes, self.scores, self.origins,
                     np.arange(first_id, first_id + len(self), dtype=np.int64))

    def above(self, score_threshold: float | None) -> np.ndarray:
        """Boolean mask of boxes shown and counted at ``score_threshold``: the one rule for the view, the counts,
        exports and training. A scored box below it is left out; a box without a score (drawn by a person, or
        reference labels) and one a person corrected, relabelled or accepted (it keeps the model's score) stay."""
        return _kept(self.scores, self.origins, score_threshold)

    def equals(self, other: Boxes, atol: float = 1e-6, same_ids: bool = False) -> bool:
        """Same boxes in the same order; their ids too with ``same_ids`` (a store's change check)."""
        return (
            len(self) == len(other)
            and np.allclose(self.xyxy, other.xyxy, atol=atol)
            and np.array_equal(self.classes, other.classes)
            and np.allclose(self.scores, other.scores, atol=atol, equal_nan=True)
            and np.array_equal(self.origins, other.origins)
            and (not same_ids or np.array_equal(self.ids, other.ids))
        )


@dataclass
class InstanceMasks:
    """Instances as one label image plus per-instance class, score and origin.

    ``ids[i]`` is the label value of instance ``i`` in ``label_image``; ids need
    not be consecutive (an edited image keeps its ids).
    """

    label_image: np.ndarray
    ids: np.ndarray | None = None
    classes: np.ndarray | None = None
    scores: np.ndarray | None = None
    origins: np.ndarray | None = None

    def __post_init__(self) -> None:
        lab = np.asarray(self.label_image)
        if lab.ndim != 2:
            raise ValueError(f"a label image must be 2-D, got shape {lab.shape}")
        if not np.issubdtype(lab.dtype, np.integer):
            raise ValueError(f"a label image must hold integers, got {lab.dtype}")
        if lab.size and lab.min() < 0:
            raise ValueError("a label image must not hold negative labels")
        self.label_image = lab.astype(np.int32, copy=False)
        if self.ids is None:
            ids = np.unique(self.label_image)
            self.ids = ids[ids != 0].astype(np.int64)
        else:
            self.ids = np.asarray(self.ids, dtype=np.int64).reshape(-1)
        n = len(self.ids)
        self.classes = _as_1d(self.classes, n, np.int64, 0)
        self.scores = _as_1d(self.scores, n, np.float64, np.nan)
        self.origins = _as_1d(self.origins, n, np.uint8, Origin.HUMAN)

    @classmethod
    def empty(cls, height: int, width: int) -> InstanceMasks:
        return cls(np.zeros((height, width), dtype=np.int32))

    @classmethod
    def from_binary_masks(
        cls,
        masks: Sequence[np.ndarray] | np.ndarray,
        shape: tuple[int, int],
        classes: Iterable[int] | None = None,
        scores: Iterable[float] | None = None,
        origins: Iterable[int] | None = None,
    ) -> InstanceMasks:
        """Paint binary masks in order into a label image; where masks overlap the later one wins.

        Instances left with no pixel (fully covered by later ones or empty) are dropped.
        """
        lab = np.zeros(shape, dtype=np.int32)
        n = len(masks)
        for k, m in enumerate(masks, start=1):
            lab[np.asarray(m, dtype=bool)] = k
        present = np.zeros(n + 1, dtype=bool)
        present[np.unique(lab)] = True
        ids = np.arange(1, n + 1)[present[1:]]
        sel = ids - 1
        cls_a = _as_1d(classes, n, np.int64, 0)[sel]
        sc_a = _as_1d(scores, n, np.float64, np.nan)[sel]
        or_a = _as_1d(origins, n, np.uint8, Origin.HUMAN)[sel]
        return cls(lab, ids, cls_a, sc_a, or_a)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def shape(self) -> tuple[int, int]:
        return self.label_image.shape  # type: ignore[return-value]

    def binary_mask(self, index: int) -> np.ndarray:
        return self.label_image == self.ids[index]

    def bounding_boxes(self) -> Boxes:
        """The pixel-edge bounding box of each instance, in instance order."""
        xyxy = np.zeros((len(self), 4))
        if len(self):
            max_id = int(max(self.ids.max(), self.label_image.max()))
            slices = ndimage.find_objects(self.label_image, max_label=max_id)
            for i, k in enumerate(self.ids):
                s = slices[k - 1]
                if s is not None:
                    xyxy[i] = [s[1].start, s[0].start, s[1].stop, s[0].stop]
        return Boxes(xyxy, self.classes.copy(), self.scores.copy(), self.origins.copy(), self.ids.copy())

    def areas(self) -> np.ndarray:
        counts = np.bincount(self.label_image.ravel(), minlength=int(self.ids.max(initial=0)) + 1)
        return counts[self.ids]

    def relabelled(self) -> InstanceMasks:
        """A copy with ids renumbered 1..N in instance order (what most file formats expect)."""
        lut = np.zeros(int(max(self.ids.max(initial=0), self.label_image.max())) + 1, dtype=np.int32)
        lut[self.ids] = np.arange(1, len(self) + 1, dtype=np.int32)
        return InstanceMasks(
            lut[self.label_image], np.arange(1, len(self) + 1), self.classes.copy(), self.scores.copy(),
            self.origins.copy(),
        )

    def subset(self, keep: np.ndarray) -> InstanceMasks:
        keep_ids = self.ids[keep]
        lab = np.where(np.isin(self.label_image, keep_ids), self.label_image, 0)
        return InstanceMasks(lab, keep_ids, self.classes[keep], self.scores[keep], self.origins[keep])

    def above(self, score_threshold: float | None) -> np.ndarray:
        """Instances shown and counted at ``score_threshold`` (the rule of :meth:`Boxes.above`)."""
        return _kept(self.scores, self.origins, score_threshold)

    def equals(self, other: InstanceMasks, atol: float = 1e-6) -> bool:
        """Same instances (pixels, class, score, origin), whatever ids they carry."""
        if self.shape != other.shape or len(self) != len(other):
            return False
        a, b = self.relabelled(), other.relabelled()
        # Match instances by pixels, not by id, so a renumbering is not a difference.
        pairs = {}
        for i, k in enumerate(a.ids):
            vals = np.unique(b.label_image[a.label_image == k])
            if len(vals) != 1 or vals[0] == 0:
                return False
            pairs[i] = int(vals[0]) - 1
        if sorted(pairs.values()) != list(range(len(a))):
            return False
        if not np.array_equal((a.label_image > 0), (b.label_image > 0)):
            return False
        idx = np.array([pairs[i] for i in range(len(a))], dtype=np.int64)
        return (
            np.array_equal(a.classes, b.classes[idx])
            and np.allclose(a.scores, b.scores[idx], atol=atol, equal_nan=True)
            and np.array_equal(a.origins, b.origins[idx])
        )


@dataclass
class Points:
    """Click-count marks as ``(row, col)`` with class ids, origins and ids (as :class:`Boxes`' ids)."""

    rc: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    classes: np.ndarray | None = None
    origins: np.ndarray | None = None
    ids: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.rc = np.asarray(self.rc, dtype=np.float64).reshape(-1, 2)
        n = len(self.rc)
        self.classes = _as_1d(self.classes, n, np.int64, 0)
        self.origins = _as_1d(self.origins, n, np.uint8, Origin.HUMAN)
        self.ids = _object_ids(self.ids, n)

    def __len__(self) -> int:
        return len(self.rc)

    def subset(self, keep: np.ndarray) -> Points:
        return Points(self.rc[keep], self.classes[keep], self.origins[keep], self.ids[keep])

    @property
    def xy(self) -> np.ndarray:
        return flip_xy_rc(self.rc)

    @classmethod
    def from_xy(cls, xy: np.ndarray, classes=None, origins=None) -> Points:
        return cls(flip_xy_rc(np.asarray(xy, dtype=np.float64).reshape(-1, 2)), classes, origins)

    def equals(self, other: Points, atol: float = 1e-6, same_ids: bool = False) -> bool:
        return (
            len(self) == len(other)
            and np.allclose(self.rc, other.rc, atol=atol)
            and np.array_equal(self.classes, other.classes)
            and np.array_equal(self.origins, other.origins)
            and (not same_ids or np.array_equal(self.ids, other.ids))
        )


@dataclass
class Grade:
    """An image-level grade (e.g. DR 0-4) with optional per-grade probabilities."""

    value: int
    probabilities: np.ndarray | None = None
    origin: Origin = Origin.HUMAN

    def __post_init__(self) -> None:
        self.value = int(self.value)
        self.origin = Origin(self.origin)
        if self.probabilities is not None:
            self.probabilities = np.asarray(self.probabilities, dtype=np.float64).reshape(-1)

    def equals(self, other: Grade | None, atol: float = 1e-6) -> bool:
        if other is None or self.value != other.value or self.origin != other.origin:
            return False
        if (self.probabilities is None) != (other.probabilities is None):
            return False
        return self.probabilities is None or np.allclose(self.probabilities, other.probabilities, atol=atol)

    def set_by_person(self, value: int) -> Grade:
        """This grade changed by a person to ``value``: a model's grade becomes *corrected* (its probabilities
        kept, so the model's view stays on record), a person's stays a person's."""
        origin = Origin.CORRECTED if self.origin == Origin.MODEL else self.origin
        return Grade(value, self.probabilities, origin)


#: the score a model object needs to be shown, counted, exported and trained on unless a person chose another
DEFAULT_SCORE_THRESHOLD = 0.5
#: how far the threshold moves for a count's range: the span a person might reasonably set the slider in
COUNT_SPREAD = 0.1


@dataclass
class ImageAnnotation:
    """Everything known about one image: where it is, its labels and its review state."""

    image_path: str
    width: int
    height: int
    class_names: tuple[str, ...]
    task: str | None = None
    boxes: Boxes = field(default_factory=Boxes)
    masks: InstanceMasks | None = None
    points: Points = field(default_factory=Points)
    grade: Grade | None = None
    content_hash: str | None = None
    pixel_size_um: float | None = None
    review: ReviewStatus = ReviewStatus.UNREVIEWED
    model_version: str | None = None
    attributes: dict = field(default_factory=dict)
    regions: list[Region] = field(default_factory=list)  # areas to count in (see cellcounter.regions)

    def __post_init__(self) -> None:
        self.image_path = str(self.image_path)
        self.regions = list(self.regions)
        self.class_names = tuple(self.class_names)
        self.review = ReviewStatus(self.review)
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"{self.image_path}: image size must be positive, got {self.width}x{self.height}")
        if self.masks is not None and self.masks.shape != (self.height, self.width):
            raise ValueError(
                f"{self.image_path}: label image is {self.masks.shape[1]}x{self.masks.shape[0]} "
                f"but the image is {self.width}x{self.height}"
            )

    @property
    def name(self) -> str:
        """The file name of the image without folders."""
        return self.image_path.replace("\\", "/").rsplit("/", 1)[-1]

    @property
    def stem(self) -> str:
        n = self.name
        return n.rsplit(".", 1)[0] if "." in n else n

    def class_id(self, name: str) -> int:
        """The id of class ``name``, adding it to ``class_names`` when new."""
        if name not in self.class_names:
            self.class_names = (*self.class_names, name)
        return self.class_names.index(name)

    def counts(self, kind: CountKind | None = None, score_threshold: float | None = None) -> dict[str, int]:
        """Objects per class name, every class listed (zeros included).

        ``kind`` restricts the count to boxes, masks or points; ``None`` adds up all three
        (an image normally carries only one of them). Objects with a score below
        ``score_threshold`` are left out; objects without a score always count.
        """
        kinds = (kind,) if kind else ("boxes", "masks", "points")
        per_class = np.zeros(len(self.class_names), dtype=np.int64)
        for k in kinds:
            if k == "boxes":
                cls = self.boxes.classes[self.boxes.above(score_threshold)]
            elif k == "masks":
                if self.masks is None:
                    continue
                cls = self.masks.classes[self.masks.above(score_threshold)]
            elif k == "points":
                cls = self.points.classes
            else:
                raise ValueError(f"unknown count kind {k!r}")
            if len(cls) and cls.max() >= len(per_class):
                raise ValueError(f"{self.image_path}: class id {cls.max()} has no class name")
            per_class += np.bincount(cls, minlength=len(per_class))[: len(per_class)]
        return {name: int(n) for name, n in zip(self.class_names, per_class)}

    def count_range(self, score_threshold: float = DEFAULT_SCORE_THRESHOLD,
                    spread: float = COUNT_SPREAD) -> dict[str, tuple[int, int]]:
        """Per class, the count with the threshold ``spread`` higher and ``spread`` lower: how much the count
        rests on objects the model was unsure of ("RBC 23 (21-26)"). Objects without a score, or a person
        touched, count at every threshold."""
        hi = self.counts(score_threshold=min(1.0, score_threshold + spread))
        lo = self.counts(score_threshold=max(0.0, score_threshold - spread))
        return {name: (hi[name], lo[name]) for name in self.class_names}

    def densities_per_mm2(self, kind: CountKind | None = None, score_threshold: float | None = None
                          ) -> dict[str, float] | None:
        """Objects per square millimetre of image, per class; ``None`` when the pixel size is unknown."""
        if not self.pixel_size_um:
            return None
        area_mm2 = self.width * self.height * (self.pixel_size_um / 1000.0) ** 2
        return {k: v / area_mm2 for k, v in self.counts(kind, score_threshold).items()}

    def n_objects(self) -> int:
        return len(self.boxes) + (len(self.masks) if self.masks is not None else 0) + len(self.points)

    def equals(self, other: ImageAnnotation, atol: float = 1e-6) -> bool:
        """Same labels (paths are compared by file name only)."""
        if (self.width, self.height, self.class_names, self.name) != (
            other.width, other.height, other.class_names, other.name,
        ):
            return False
        if not (self.boxes.equals(other.boxes, atol) and self.points.equals(other.points, atol)):
            return False
        if (self.masks is None or len(self.masks) == 0) != (other.masks is None or len(other.masks) == 0):
            return False
        if self.masks is not None and len(self.masks) and not self.masks.equals(other.masks, atol):
            return False
        if (self.grade is None) != (other.grade is None):
            return False
        if len(self.regions) != len(other.regions) or not all(
                a.equals(b, atol) for a, b in zip(self.regions, other.regions)):
            return False
        return self.grade is None or self.grade.equals(other.grade, atol)


def total_counts(annotations: Iterable[ImageAnnotation], **kwargs) -> dict[str, int]:
    """Per-class counts summed over many images (class names in first-seen order)."""
    total: dict[str, int] = {}
    for ann in annotations:
        for name, n in ann.counts(**kwargs).items():
            total[name] = total.get(name, 0) + n
    return total


def grade_counts(annotations: Iterable[ImageAnnotation]) -> dict[str, int]:
    """How many images carry each grade, keyed by the grade as a string."""
    out: dict[str, int] = {}
    for ann in annotations:
        if ann.grade is not None:
            key = str(ann.grade.value)
            out[key] = out.get(key, 0) + 1
    return dict(sorted(out.items(), key=lambda kv: int(kv[0])))


def summarise(annotations: Sequence[ImageAnnotation]) -> dict:
    """``{"images", "instances"[, "grades"]}``: how many images, the objects per class over those that are not
    graded (a fundus photo's grade is not an object), and how many images carry each grade."""
    objects = [a for a in annotations if not (a.task in TASKS and TASKS[a.task].kind == "grade")]
    out: dict = {"images": len(annotations), "instances": total_counts(objects)}
    grades = grade_counts(annotations)
    if grades:
        out["grades"] = grades
    return out


def summary_lines(summary: dict) -> list[str]:
    """A :func:`summarise` (or a project's status) as the indented lines the command line prints."""
    lines = [f"  {k}: {v}" for k, v in summary.get("review", {}).items()]
    lines += [f"  {name}: {n}" for name, n in summary["instances"].items()]
    return lines + [f"  grade {g}: {n} image(s)" for g, n in summary.get("grades", {}).items()]


def as_reference(ann: ImageAnnotation) -> ImageAnnotation:
    """``ann`` with its human objects marked as imported reference labels (model and corrected ones stay)."""
    import dataclasses

    def ref(origins: np.ndarray) -> np.ndarray:
        out = np.asarray(origins, dtype=np.uint8).copy()
        out[out == Origin.HUMAN] = Origin.REFERENCE
        return out

    masks = ann.masks
    if masks is not None:
        masks = InstanceMasks(masks.label_image, masks.ids, masks.classes, masks.scores, ref(masks.origins))
    return dataclasses.replace(ann, boxes=Boxes(ann.boxes.xyxy, ann.boxes.classes, ann.boxes.scores,
                                                ref(ann.boxes.origins), ann.boxes.ids),
                               points=Points(ann.points.rc, ann.points.classes, ref(ann.points.origins),
                                             ann.points.ids),
                               masks=masks, attributes=dict(ann.attributes))

