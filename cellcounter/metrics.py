"""Evaluation metrics, one implementation shared by ``cellcounter evaluate`` and training.

* Boxes: VOC AP at IoU 0.5 per class (all-point interpolation) and their mean;
  count mean absolute error per class.
* Masks: COCO mask AP at 0.5 and 0.5:0.95 through pycocotools, aggregated
  Jaccard index (Kumar et al. 2017), count error.
* Grades: accuracy, quadratic weighted kappa, row-normalised confusion matrix.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cellcounter.annotations import DEFAULT_SCORE_THRESHOLD, ImageAnnotation
from cellcounter.formats.coco import coco_document, encode_mask


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix ``(len(a), len(b))`` of ``x1, y1, x2, y2`` boxes."""
    a, b = np.asarray(a, float).reshape(-1, 4), np.asarray(b, float).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def voc_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    """Area under the precision envelope (VOC 2010+ all-point interpolation)."""
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[0.0], precision, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    idx = np.nonzero(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[idx + 1] - mrec[idx]) * mpre[idx + 1]))


def match_detections(gt_boxes: np.ndarray, pred_boxes: np.ndarray, pred_scores: np.ndarray,
                     iou_thr: float = 0.5) -> np.ndarray:
    """True-positive flags of predictions (in descending score order) for one image and class.

    Each prediction goes to the ground truth it overlaps most; if that one is
    already taken, the prediction is a false positive (the VOC rule), even when
    another ground truth overlaps it above the threshold.
    """
    order = np.argsort(-pred_scores, kind="stable")
    tp = np.zeros(len(order), dtype=bool)
    if len(gt_boxes) == 0 or len(order) == 0:
        return tp
    ious = box_iou(pred_boxes[order], gt_boxes)
    taken = np.zeros(len(gt_boxes), dtype=bool)
    for i in range(len(order)):
        j = int(np.argmax(ious[i]))
        if ious[i, j] >= iou_thr and not taken[j]:
            tp[i] = True
            taken[j] = True
    return tp


def precision_recall(gts: Sequence[ImageAnnotation], preds: Sequence[ImageAnnotation], class_id: int,
                     iou_thr: float = 0.5) -> tuple[np.ndarray, np.ndarray, int]:
    """Precision and recall down the score-ranked predictions of one class, and the number of ground truths."""
    scores, flags, n_gt = [], [], 0
    for g, p in zip(gts, preds):
        gb = g.boxes.xyxy[g.boxes.classes == class_id]
        sel = p.boxes.classes == class_id
        pb, ps = p.boxes.xyxy[sel], np.nan_to_num(p.boxes.scores[sel], nan=1.0)
        n_gt += len(gb)
        flags.append(match_detections(gb, pb, ps, iou_thr))
        scores.append(np.sort(ps)[::-1])
    s = np.concatenate(scores) if scores else np.zeros(0)
    f = np.concatenate(flags) if flags else np.zeros(0, bool)
    order = np.argsort(-s, kind="stable")
    tp = np.cumsum(f[order])
    fp = np.cumsum(~f[order])
    recall = tp / max(n_gt, 1)
    precision = tp / np.maximum(tp + fp, np.finfo(float).eps)
    return precision, recall, n_gt


def detection_ap(gts: Sequence[ImageAnnotation], preds: Sequence[ImageAnnotation], iou_thr: float = 0.5,
                 class_names: Sequence[str] | None = None) -> dict[str, float]:
    """VOC AP per class name over paired images (``gts[i]`` with ``preds[i]``); NaN for a class with no ground truth."""
    names = list(class_names or gts[0].class_names)
    out: dict[str, float] = {}
    for c, name in enumerate(names):
        precision, recall, n_gt = precision_recall(gts, preds, c, iou_thr)
        out[name] = voc_ap(recall, precision) if n_gt else float("nan")
    return out


def count_mae(gts: Sequence[ImageAnnotation], preds: Sequence[ImageAnnotation],
              score_threshold: float | None = DEFAULT_SCORE_THRESHOLD) -> dict[str, float]:
    """Mean absolute difference per class between predicted (above threshold) and true counts."""
    names = list(gts[0].class_names) if gts else []
    err = np.zeros(len(names))
    for g, p in zip(gts, preds):
        gc, pc = g.counts(), p.counts(score_threshold=score_threshold)
        err += np.abs(np.array([pc.get(n, 0) - gc.get(n, 0) for n in names], dtype=float))
    return {n: float(e / max(1, len(gts))) for n, e in zip(names, err)}


def coco_mask_ap(gts: Sequence[ImageAnnotation], preds: Sequence[ImageAnnotation]) -> dict[str, float]:
    """COCO mask AP at IoU 0.5 and averaged over 0.5:0.95, computed by pycocotools."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    doc = coco_document(gts, base=Path("/"))
    doc["annotations"] = [a for a in doc["annotations"] if "segmentation" in a]
    names = [c["name"] for c in doc["categories"]]
    dets = []
    for img_id, (_g, p) in enumerate(zip(gts, preds), start=1):
        if p.masks is None:
            continue
        for i in range(len(p.masks)):
            dets.append({"image_id": img_id, "category_id": names.index(p.class_names[int(p.masks.classes[i])]) + 1,
                         "segmentation": encode_mask(p.masks.binary_mask(i)),
                         "score": float(np.nan_to_num(p.masks.scores[i], nan=1.0))})
    if not doc["annotations"]:
        return {"mask_ap50": float("nan"), "mask_ap": float("nan")}
    if not dets:
        return {"mask_ap50": 0.0, "mask_ap": 0.0}
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = doc
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(dets)
        ev = COCOeval(coco_gt, coco_dt, "segm")
        ev.params.maxDets = [1, 100, max(100, max(len(p.masks) if p.masks is not None else 0 for p in preds))]
        ev.evaluate()
        ev.accumulate()
    # precision[iou, recall, class, area range, max detections]: area range "all", the largest detection limit.
    # (pycocotools' summary line for AP@0.5:0.95 uses at most 100 detections per image whatever maxDets says,
    # which caps recall on a tile of 400 nuclei.)
    precision = ev.eval["precision"][:, :, :, 0, -1]

    def mean_ap(p: np.ndarray) -> float:
        valid = p[p > -1]
        return float(valid.mean()) if valid.size else float("nan")

    return {"mask_ap50": mean_ap(precision[0]), "mask_ap": mean_ap(precision)}


def aggregated_jaccard(gt_label: np.ndarray, pred_label: np.ndarray) -> float:
    """Aggregated Jaccard index of two instance label images (Kumar et al., IEEE TMI 2017)."""
    g, p = np.asarray(gt_label).ravel(), np.asarray(pred_label).ravel()
    g_ids = np.unique(g[g > 0])
    p_ids = np.unique(p[p > 0])
    if len(g_ids) == 0:
        return 1.0 if len(p_ids) == 0 else 0.0
    g_idx = np.searchsorted(g_ids, g)
    p_idx = np.searchsorted(p_ids, p)
    both = (g > 0) & (p > 0)
    inter = np.zeros((len(g_ids), len(p_ids)), dtype=np.int64)
    np.add.at(inter, (g_idx[both], p_idx[both]), 1)
    g_area = np.bincount(g_idx[g > 0], minlength=len(g_ids))
    p_area = np.bincount(p_idx[p > 0], minlength=len(p_ids))
    union = g_area[:, None] + p_area[None, :] - inter
    iou = np.where(union > 0, inter / np.maximum(union, 1), 0)
    c = u = 0
    used = np.zeros(len(p_ids), dtype=bool)
    for i in range(len(g_ids)):
        if len(p_ids) and inter[i].max() > 0:
            j = int(np.argmax(iou[i]))
            c += inter[i, j]
            u += union[i, j]
            used[j] = True
        else:
            u += g_area[i]
    u += p_area[~used].sum()
    return float(c / u) if u else 0.0


def mean_aji(gts: Sequence[ImageAnnotation], preds: Sequence[ImageAnnotation]) -> float:
    vals = []
    for g, p in zip(gts, preds):
        gl = g.masks.label_image if g.masks is not None else np.zeros((g.height, g.width), np.int32)
        pl = p.masks.label_image if p.masks is not None else np.zeros_like(gl)
        vals.append(aggregated_jaccard(gl, pl))
    return float(np.mean(vals)) if vals else float("nan")


def confusion_matrix(true: Sequence[int], pred: Sequence[int], n: int) -> np.ndarray:
    m = np.zeros((n, n), dtype=np.int64)
    np.add.at(m, (np.asarray(true, int), np.asarray(pred, int)), 1)
    return m


def quadratic_weighted_kappa(true: Sequence[int], pred: Sequence[int], n: int) -> float:
    """Cohen's kappa with quadratic weights: 1 is perfect agreement, 0 is chance."""
    o = confusion_matrix(true, pred, n).astype(float)
    if o.sum() == 0:
        return float("nan")
    w = np.array([[(i - j) ** 2 for j in range(n)] for i in range(n)], float) / max(1, (n - 1) ** 2)
    e = np.outer(o.sum(1), o.sum(0)) / o.sum()
    denom = (w * e).sum()
    return float(1.0 - (w * o).sum() / denom) if denom else 1.0


def grade_metrics(true: Sequence[int], pred: Sequence[int], n: int) -> dict:
    cm = confusion_matrix(true, pred, n)
    rows = cm.sum(1, keepdims=True)
    norm = np.where(rows > 0, cm / np.maximum(rows, 1), 0.0)
    return {"accuracy": float(np.mean(np.asarray(true) == np.asarray(pred))) if len(true) else float("nan"),
            "qwk": quadratic_weighted_kappa(true, pred, n), "confusion": norm.round(4).tolist()}
