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


#: fewest labelled images a calibration is fitted on: with fewer, its check on images it was not fitted on says
#: too little to trust (a 20-image fine-tune fitted one on 4 and doubled its unseen RBC count error)
MIN_CHECK_IMAGES = 10
FOLDS = 5


def _count_errors(gts, preds, k: int, name: str, t: float) -> np.ndarray:
    truth = np.array([g.counts().get(name, 0) for g in gts], dtype=np.float64)
    return np.abs(np.array([np.sum(_scores_by_class(p, k) >= t) for p in preds], dtype=np.float64) - truth)


def checked_thresholds(gts: Sequence[ImageAnnotation], preds: Sequence[ImageAnnotation], folds: int = FOLDS,
                       seed: int = 0, groups: Sequence[str] | None = None,
                       grid: Sequence[float] = GRID) -> tuple[dict[str, float], dict[str, dict]]:
    """Per-class thresholds (:func:`fit_thresholds` on all images), each kept only where it improves counts on
    images it was not fitted on.

    The images are split into ``folds``; each fold's counts are made with thresholds fitted on the other
    folds, and compared with the raw scores' counts (at :data:`NEUTRAL`) on the same fold. A class whose
    held-back count error is not lower with its threshold keeps its raw scores: it is left out of the returned
    calibration. ``groups`` (an image kind per image, e.g. its data source) adds the held-back figures per
    group, to see whether one threshold serves every kind. ``preds`` must carry uncalibrated scores.

    Returns the calibration and, per class, the report the card records.
    """
    n = len(gts)
    if n < MIN_CHECK_IMAGES:
        raise CellCounterError(f"{n} labelled image(s) are too few to check a calibration on images it was not "
                               f"fitted on: at least {MIN_CHECK_IMAGES} are needed")
    k = min(folds, n)
    fold = np.empty(n, dtype=np.int64)
    fold[np.random.default_rng(seed).permutation(n)] = np.arange(n) % k
    full, in_sample = fit_thresholds(gts, preds, grid)
    names = list(gts[0].class_names)
    raw = {name: np.zeros(n) for name in names}
    held = {name: np.zeros(n) for name in names}
    for f in range(k):
        fit_idx, test_idx = np.flatnonzero(fold != f), np.flatnonzero(fold == f)
        fitted, _ = fit_thresholds([gts[i] for i in fit_idx], [preds[i] for i in fit_idx], grid)
        test_g, test_p = [gts[i] for i in test_idx], [preds[i] for i in test_idx]
        for c, name in enumerate(names):
            raw[name][test_idx] = _count_errors(test_g, test_p, c, name, NEUTRAL)
            held[name][test_idx] = _count_errors(test_g, test_p, c, name, fitted[name])
    kept, report = {}, {}
    for name in names:
        better = float(held[name].mean()) < float(raw[name].mean()) - 1e-9
        if better:
            kept[name] = full[name]
        report[name] = {
            "threshold": full[name], "kept": better, "images": n, "folds": k,
            "held_back_count_mae_raw": float(raw[name].mean()),
            "held_back_count_mae_calibrated": float(held[name].mean()),
            "in_sample_count_mae_calibrated": in_sample[name]["count_mae_calibrated"],
        }
        if groups is not None:
            g = np.asarray(groups)
            report[name]["by_group"] = {
                str(kind): {"images": int((g == kind).sum()),
                            "held_back_count_mae_raw": float(raw[name][g == kind].mean()),
                            "held_back_count_mae_calibrated": float(held[name][g == kind].mean())}
                for kind in sorted(set(g.tolist()))}
    return kept, report


__all__ = ["FOLDS", "GRID", "MIN_CHECK_IMAGES", "NEUTRAL", "calibrate_scores", "check_calibration",
           "checked_thresholds", "fit_thresholds", "thresholds_by_index"]
