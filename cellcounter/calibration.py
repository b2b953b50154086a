"""Per-class score calibration, owned by the model card.

A detector trained from scratch scores small or rare classes low: platelets
found at 0.3 are never counted at the app's 0.5. Rather than a threshold per
class in every place that thresholds (the Review slider, counts, exports,
overlays, review's "keep what was shown"), the card stores, per class, the
score at which counting on validation images was most accurate, and the
predictor maps that score to 0.5 (piecewise linearly, so the order of a
class's scores, and so its AP, is unchanged). One slider then means the same
for every class, and its default counts best.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from cellcounter.annotations import ImageAnnotation
from cellcounter.errors import CellCounterError

NEUTRAL = 0.5  # the display and count threshold a calibrated class's best threshold is mapped to
GRID = tuple(float(t) for t in np.round(np.arange(0.05, 0.951, 0.025), 3))


def calibrate_scores(scores: np.ndarray, classes: np.ndarray, thresholds: Sequence[float | None]) -> np.ndarray:
    """Scores with each class's threshold ``t`` moved to :data:`NEUTRAL`: ``[0, t]`` onto ``[0, 0.5]`` and
    ``[t, 1]`` onto ``[0.5, 1]``. Classes whose threshold is ``None`` keep their scores."""
    s = np.asarray(scores, dtype=np.float64).copy()
    c = np.asarray(classes)
    for k, t in enumerate(thresholds):
        if t is None:
            continue
        sel = c == k
        x = s[sel]
        s[sel] = np.where(x < t, x * (NEUTRAL / t), NEUTRAL + (x - t) * ((1 - NEUTRAL) / (1 - t)))
    return s


def thresholds_by_index(calibration: Mapping[str, float], class_names: Sequence[str]) -> list[float | None] | None:
    """The card's calibration as a list over class indices (``None`` when the card has none)."""
    if not calibration:
        return None
    unknown = set(calibration) - set(class_names)
    if unknown:
        raise CellCounterError(f"score_calibration names classes the model does not have: {sorted(unknown)}")
    return [calibration.get(name) for name in class_names]


def check_calibration(calibration: object) -> None:
    """A card's ``score_calibration``: class name -> a threshold strictly between 0 and 1."""
    if not isinstance(calibration, dict):
        raise CellCounterError(f"score_calibration must be an object, got {type(calibration).__name__}")
    for name, t in calibration.items():
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0.0 < t < 1.0:
            raise CellCounterError(f"score_calibration.{name} must be a number between 0 and 1, got {t!r}")


def _scores_by_class(ann: ImageAnnotation, k: int) -> np.ndarray:
    parts = []
    if len(ann.boxes):
        parts.append(ann.boxes.scores[ann.boxes.classes == k])
    if ann.masks is not None and len(ann.masks):
        parts.append(ann.masks.scores[ann.masks.classes == k])
    s = np.concatenate(parts) if parts else np.zeros(0)
    return s[~np.isnan(s)]


def fit_thresholds(gts: Sequence[ImageAnnotation], preds: Sequence[ImageAnnotation],
                   grid: Sequence[float] = GRID) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """Per class, the threshold of ``grid`` with the smallest mean absolute count error over the images
    (ties: the one nearest 0.5). ``preds`` must carry uncalibrated scores.

    Returns the thresholds and, per class, the count error at 0.5 and at the chosen threshold.
    """
    if not gts:
        raise CellCounterError("no images to calibrate on")
    names = list(gts[0].class_names)
    grid_a = np.asarray(grid, dtype=np.float64)
    out, report = {}, {}
    for k, name in enumerate(names):
        truth = np.array([g.counts().get(name, 0) for g in gts], dtype=np.float64)
        scores = [_scores_by_class(p, k) for p in preds]
        err = np.array([np.mean(np.abs([np.sum(s >= t) for s in scores] - truth)) for t in grid_a])
        best = np.flatnonzero(np.isclose(err, err.min()))
        t = float(grid_a[best[np.argmin(np.abs(grid_a[best] - NEUTRAL))]])
        at_half = float(np.mean(np.abs([np.sum(s >= NEUTRAL) for s in scores] - truth)))
        out[name] = t
        report[name] = {"count_mae_at_0.5": at_half, "threshold": t, "count_mae_calibrated": float(err.min())}
    return out, report


__all__ = ["GRID", "NEUTRAL", "calibrate_scores", "check_calibration", "fit_thresholds", "thresholds_by_index"]
