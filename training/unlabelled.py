"""Training on incompletely labelled images: what a start model finds confidently where no label is, ignored.

BCCD and similar sets leave many visible cells unlabelled (see ``docs/models.md``). A detector trained
on them is told that those cells are background, and learns a compromise score. Following the "ignore"
regions of COCO's crowd boxes and CVAT's ignored areas, a start model's confident detections that
overlap no label become regions whose anchors count neither as object nor as background
(:class:`cellcounter.models.build.IgnoringHead` reads them as the target's ``ignore`` boxes).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torchvision.ops import box_iou

from cellcounter.errors import CellCounterError
from cellcounter.fileutil import atomic_write_text
from cellcounter.inference.predictor import Predictor
from cellcounter.inference.run import predict_image

IGNORE_FILE = "ignore_regions.json"


def unlabelled_detections(predictor: Predictor, loaders: Sequence[Callable], min_score: float, max_iou: float = 0.3,
                          progress: Callable[[int, int], None] | None = None) -> dict[str, list[list[float]]]:
    """Per image path, the ``x1 y1 x2 y2`` of detections scoring ``min_score`` or more (after the card's
    calibration) whose overlap (IoU) with every label box is below ``max_iou``, whatever the classes."""
    unique = list({id(load): load for load in loaders}.values())  # one loader per image, repeated per crop
    out: dict[str, list[list[float]]] = {}
    for i, load in enumerate(unique):
        img, ann = load()
        pred = predict_image(predictor, img, ann.image_path).boxes
        det = torch.as_tensor(pred.xyxy[pred.scores >= min_score], dtype=torch.float64).reshape(-1, 4)
        gt = torch.as_tensor(ann.boxes.xyxy, dtype=torch.float64).reshape(-1, 4)
        if len(det) and len(gt):
            det = det[box_iou(det, gt).max(1).values < max_iou]
        out[ann.image_path] = [[round(float(v), 2) for v in b] for b in det]
        if progress is not None:
            progress(i + 1, len(unique))
    return out


def ignore_regions(model: str, loaders: Sequence[Callable], min_score: float, out: Path,
                   device: str) -> dict[str, np.ndarray]:
    """The ignore boxes of the training images from ``model``'s detections, computed once per run and kept in
    ``out/ignore_regions.json`` (a resumed run reads them back, so its targets stay the same)."""
    path = out / IGNORE_FILE
    if path.is_file():
        saved = json.loads(path.read_text())
        if saved.get("model") != model or saved.get("min_score") != min_score:
            raise CellCounterError(f"{path}: made with {saved.get('model')} at {saved.get('min_score')}, not "
                                   f"{model} at {min_score}; remove it or use another --out")
        regions = saved["regions"]
    else:
        predictor = Predictor.load(model, "torch", device)
        if predictor.config.kind != "detector":
            raise CellCounterError(f"{model}: ignore regions come from a box detector, not a {predictor.config.kind}")
        regions = unlabelled_detections(predictor, loaders, min_score)
        atomic_write_text(path, json.dumps({"model": model, "version": predictor.model_version, "min_score": min_score,
                                            "regions": regions}, indent=1))
    return {k: np.asarray(v, dtype=np.float64).reshape(-1, 4) for k, v in regions.items()}
