"""A RetinaNet's inference tail in numpy, run after its network on any backend.

The network (backbone, FPN, heads) is what costs: it is what is exported to ONNX, quantised to int8 and
compiled by OpenVINO (:mod:`cellcounter.inference.detector_net` wraps it for export). Anchors, box decoding,
per-level top-k above the score threshold and per-class NMS are written here in numpy, step for step as
torchvision's ``RetinaNet.postprocess_detections`` does them, so prediction needs no torch (the counting
build carries none). A test holds them to torchvision's own code.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import expit

PAD = 32  # the FPN's coarsest stride that the backbone's levels divide without remainder
BOX_CLIP = math.log(1000.0 / 16)  # torchvision's BoxCoder: the largest log-scale a box side may grow by


def network_input(chw: np.ndarray, mean, std) -> np.ndarray:
    """``(1, 3, H, W)`` float32: ``chw`` (RGB in [0, 1], resized) normalised, then zero-padded at the bottom and
    right to multiples of :data:`PAD`, as torchvision's detection transform does."""
    h, w = chw.shape[1:]
    out = np.zeros((1, 3, math.ceil(h / PAD) * PAD, math.ceil(w / PAD) * PAD), np.float32)
    m = np.asarray(mean, np.float32)[:, None, None]
    s = np.asarray(std, np.float32)[:, None, None]
    out[0, :, :h, :w] = (chw - m) / s
    return out


def level_sizes(height: int, width: int, levels: int = 5) -> list[tuple[int, int]]:
    """The feature map sizes of P3 to P7 for a padded input: each stride-2 step rounds up."""
    sizes = []
    h, w = height, width
    for step in range(2 + levels):  # stem (x4 in two steps), then P3 (x8) ... P7 (x128)
        h, w = math.ceil(h / 2), math.ceil(w / 2)
        if step >= 2:
            sizes.append((h, w))
    return sizes


def base_anchors(sizes, aspect_ratios) -> np.ndarray:
    """``(A, 4)`` anchors of one level centred on 0, rounded as torchvision's ``AnchorGenerator`` rounds them."""
    scales = np.asarray(sizes, np.float32)
    h_ratios = np.sqrt(np.asarray(aspect_ratios, np.float32))
    w_ratios = np.float32(1) / h_ratios
    ws = (w_ratios[:, None] * scales[None, :]).reshape(-1)
    hs = (h_ratios[:, None] * scales[None, :]).reshape(-1)
    return np.round(np.stack([-ws, -hs, ws, hs], axis=1) / np.float32(2))


def level_anchors(base: np.ndarray, grid: tuple[int, int], padded: tuple[int, int], index: np.ndarray) -> np.ndarray:
    """The anchors numbered ``index`` of one level, whose anchors run location by location (row-major),
    ``len(base)`` per location: only those are made, not the level's tens of thousands."""
    stride_y, stride_x = padded[0] // grid[0], padded[1] // grid[1]
    location, a = np.divmod(index, len(base))
    y, x = np.divmod(location, grid[1])
    shift = np.stack([x * stride_x, y * stride_y] * 2, axis=1).astype(np.float32)
    return shift + base[a]


def decode(deltas: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    """Boxes ``(N, 4)`` from RetinaNet's regression deltas (box coder weights 1) on their anchors."""
    widths = anchors[:, 2] - anchors[:, 0]
    heights = anchors[:, 3] - anchors[:, 1]
    ctr_x = anchors[:, 0] + np.float32(0.5) * widths
    ctr_y = anchors[:, 1] + np.float32(0.5) * heights
    dw = np.minimum(deltas[:, 2], np.float32(BOX_CLIP))
    dh = np.minimum(deltas[:, 3], np.float32(BOX_CLIP))
    cx = deltas[:, 0] * widths + ctr_x
    cy = deltas[:, 1] * heights + ctr_y
    half_w = np.float32(0.5) * np.exp(dw) * widths
    half_h = np.float32(0.5) * np.exp(dh) * heights
    return np.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], axis=1)


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float, limit: int | None = None) -> np.ndarray:
    """Indices of the boxes kept by greedy non-maximum suppression, surest first (torchvision's rule: a box
    goes when its IoU with a kept, surer one is above ``iou``). ``limit`` stops once that many are kept."""
    order = np.argsort(-scores, kind="stable")
    x1, y1, x2, y2 = (boxes[:, k] for k in range(4))
    areas = (x2 - x1) * (y2 - y1)
    kept = []
    while order.size and (limit is None or len(kept) < limit):
        i = order[0]
        kept.append(i)
        rest = order[1:]
        w = np.clip(np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]), 0, None)
        h = np.clip(np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]), 0, None)
        inter = w * h
        with np.errstate(invalid="ignore", divide="ignore"):  # two empty boxes: 0 / 0, kept as torchvision does
            order = rest[~(inter / (areas[i] + areas[rest] - inter) > iou)]
    return np.asarray(kept, np.int64)


def batched_nms(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, iou: float,
                limit: int | None = None) -> np.ndarray:
    """:func:`nms` within each class: boxes of different classes never suppress each other (torchvision's
    offset trick: each class moved to its own stretch of the plane)."""
    if len(boxes) == 0:
        return np.zeros(0, np.int64)
    boxes = np.asarray(boxes, np.float64)
    offset = np.asarray(classes, np.float64)[:, None] * (boxes.max() + 1)
    return nms(boxes + offset, np.asarray(scores), iou, limit)


class DetectorPostprocess:
    """torchvision RetinaNet's inference tail over the network's outputs: anchors for the padded size, box
    decoding, per-level top-k above the score threshold, per-class NMS, boxes clipped to the image."""

    def __init__(self, cfg) -> None:
        from cellcounter.models.config import detector_anchor_sizes

        self.cfg = cfg
        self.base = [base_anchors(s, cfg.aspect_ratios) for s in detector_anchor_sizes(cfg)]

    def __call__(self, cls_logits: np.ndarray, bbox_regression: np.ndarray, padded: tuple[int, int],
                 image: tuple[int, int]) -> dict[str, np.ndarray]:
        cfg = self.cfg
        logits = np.asarray(cls_logits, np.float32)[0]
        deltas = np.asarray(bbox_regression, np.float32)[0]
        sizes = level_sizes(*padded, levels=len(self.base))
        per_location = sum(h * w for h, w in sizes)
        if logits.shape[0] % per_location:
            raise ValueError(f"the network gave {logits.shape[0]} anchors for a {padded[1]} x {padded[0]} input, "
                             f"not a multiple of its {per_location} locations")
        a = logits.shape[0] // per_location
        num_classes = logits.shape[1]
        boxes, scores, labels = [], [], []
        start = 0
        for base, grid in zip(self.base, sizes):
            n = grid[0] * grid[1] * a
            level_logits, level_deltas = logits[start:start + n], deltas[start:start + n]
            start += n
            flat = expit(level_logits.ravel())
            idx = np.nonzero(flat > cfg.score_thresh)[0]
            if len(idx) > cfg.topk_candidates:
                idx = idx[np.argpartition(-flat[idx], cfg.topk_candidates - 1)[:cfg.topk_candidates]]
            idx = idx[np.argsort(-flat[idx], kind="stable")]
            anchor_idx, label = idx // num_classes, idx % num_classes
            anchors = level_anchors(base, grid, padded, anchor_idx)
            b = decode(level_deltas[anchor_idx], anchors)
            b[:, 0::2] = np.clip(b[:, 0::2], 0, image[1])
            b[:, 1::2] = np.clip(b[:, 1::2], 0, image[0])
            boxes.append(b)
            scores.append(flat[idx])
            labels.append(label)
        b, s, c = np.concatenate(boxes), np.concatenate(scores), np.concatenate(labels).astype(np.int64)
        keep = batched_nms(b, s, c, cfg.nms_thresh, cfg.detections_per_img)
        return {"boxes": b[keep].astype(np.float32), "scores": s[keep].astype(np.float32), "labels": c[keep]}
