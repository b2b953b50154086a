"""Evaluating a predictor on labelled images: the figures of ``cellcounter evaluate`` and training."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from cellcounter.annotations import DEFAULT_SCORE_THRESHOLD, ImageAnnotation
from cellcounter.errors import CellCounterError, FormatError
from cellcounter.imageio import read_image
from cellcounter.metrics import coco_mask_ap, count_mae, detection_ap, grade_metrics, mean_aji
from cellcounter.tasks import get_task

#: the score a model is judged by beside its count error, per kind of label it gives (mAP@0.5, AJI,
#: quadratic-weighted kappa): checkpoint choice, the worse-than-parent check and int8 acceptance all use it
KEY_METRIC = {"boxes": "map50", "masks": "aji", "grade": "qwk"}
LABELS_OF = {"detector": "boxes", "segmenter": "masks", "unet": "masks", "grader": "grade"}


def key_metric(kind: str) -> str:
    """The key score of a model kind (``detector``, ``unet``, ...) or a label kind (``boxes``, ...)."""
    return KEY_METRIC[LABELS_OF.get(kind, kind)]


def split_ids(data: Path, split: str) -> set[str]:
    """Image ids of a split: a path to a list file, or ``<split>.txt`` in the data folder or ``ImageSets/Main``.

    An id is an image's file stem, or ``<split>/<stem>`` where a data set reuses stems across its own
    splits (IDRiD's training and testing sets both start at IDRiD_001).
    """
    if Path(split).suffix == ".txt" and Path(split).is_file():
        return {line.strip() for line in Path(split).read_text().splitlines() if line.strip()}
    for cand in (data / f"{split}.txt", data / "ImageSets" / "Main" / f"{split}.txt"):
        if cand.is_file():
            return {line.strip() for line in cand.read_text().splitlines() if line.strip()}
    if split and (data / "images" / split).is_dir():  # the YOLO layout: one folder per split
        from cellcounter.formats.yolo import split_stems

        return split_stems(data, split)
    raise FormatError(data, f"no split file {split}.txt (looked in the folder and in ImageSets/Main) "
                           f"and no images/{split}/ folder")


def image_id(ann: ImageAnnotation) -> str:
    """``<split>/<stem>`` when the reader recorded a split, else the stem."""
    split = ann.attributes.get("split")
    return f"{split}/{ann.stem}" if split else ann.stem


def select_ids(anns: Sequence[ImageAnnotation], ids: set[str]) -> list[ImageAnnotation]:
    """The annotations whose stem or ``<split>/<stem>`` is listed."""
    return [a for a in anns if image_id(a) in ids or a.stem in ids]


def evaluate_annotations(task: str, gts: Sequence[ImageAnnotation], preds: Sequence[ImageAnnotation],
                         count_threshold: float | None = DEFAULT_SCORE_THRESHOLD) -> dict:
    """Metrics under the keys of ``cellcounter evaluate --json``."""
    kind = get_task(task).kind
    out: dict = {"task": task, "images": len(gts)}
    if kind == "boxes":
        ap = detection_ap(gts, preds)
        valid = [v for v in ap.values() if not np.isnan(v)]
        out["map50"] = float(np.mean(valid)) if valid else float("nan")
        out["ap50"] = ap
        out["count_mae"] = count_mae(gts, preds, count_threshold)
    elif kind == "masks":
        out.update(coco_mask_ap(gts, preds))
        out["aji"] = mean_aji(gts, preds)
        out["count_mae"] = count_mae(gts, preds, count_threshold)
    else:
        n = len(get_task(task).class_names)
        pairs = [(g.grade.value, p.grade.value) for g, p in zip(gts, preds) if g.grade is not None]
        out.update(grade_metrics([t for t, _ in pairs], [q for _, q in pairs], n))
    return out


def total_count_error(metrics: dict) -> float | None:
    """The count error per image summed over classes (``metrics["count_mae"]``), ``None`` where there is none:
    the one figure a fine-tune's gate and an int8 verdict compare."""
    per_class = metrics.get("count_mae")
    if not isinstance(per_class, dict):
        return None
    values = [v for v in per_class.values() if isinstance(v, (int, float))]
    return float(sum(values)) if values else None


def predict_all(predict: Callable[[np.ndarray, str], ImageAnnotation], gts: Sequence[ImageAnnotation],
                progress: Callable[[int, int], None] | None = None) -> tuple[list, list]:
    """Run ``predict`` on every image that exists; missing images are skipped with a warning."""
    kept_gts, preds = [], []
    for i, g in enumerate(gts):
        if not Path(g.image_path).is_file():
            warnings.warn(f"{g.image_path}: image listed in the labels but not found; skipped", stacklevel=2)
            continue
        image = read_image(g.image_path)
        p = predict(image, g.image_path)
        p.class_names = g.class_names if len(p.class_names) == len(g.class_names) else p.class_names
        kept_gts.append(g)
        preds.append(p)
        if progress:
            progress(i + 1, len(gts))
    if not kept_gts:
        raise CellCounterError("no image to evaluate on")
    return kept_gts, preds
