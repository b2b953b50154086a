"""From a U-Net's foreground and distance maps to instances: a marker-controlled watershed.

Pixels whose foreground probability passes ``fg_threshold`` are objects. Each object's core, where the
normalised distance to its edge passes ``marker_threshold``, seeds one instance; a watershed over the
inverted distance map grows the seeds to the foreground's edges, so touching nuclei are split along the
valley of the distance map between their cores. Foreground without a core (a small or faint object) is
kept as one instance of its own; anything under ``min_area`` pixels is dropped.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def instances_from_maps(foreground: np.ndarray, distance: np.ndarray, fg_threshold: float = 0.5,
                        marker_threshold: float = 0.5, min_area: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """A label image (0 background, 1..n objects, int32) and each object's score: its mean foreground
    probability, so the app's score slider hides the doubtful ones first."""
    from skimage.segmentation import watershed

    mask = foreground >= fg_threshold
    markers, n = ndimage.label((distance >= marker_threshold) & mask)
    label = watershed(-distance, markers, mask=mask) if n else np.zeros(mask.shape, np.int32)
    rest, n_rest = ndimage.label(mask & (label == 0))
    if n_rest:
        label = np.where(rest > 0, rest + label.max(), label)
    label = label.astype(np.int32, copy=False)
    n_all = int(label.max())
    if n_all == 0:
        return label, np.zeros(0)
    idx = np.arange(1, n_all + 1)
    area = ndimage.sum_labels(np.ones_like(label), label, idx)
    score = ndimage.mean(foreground, label, idx)
    keep = area >= max(1, min_area)
    lut = np.zeros(n_all + 1, np.int32)
    lut[1:][keep] = np.arange(1, int(keep.sum()) + 1)
    return lut[label], np.asarray(score, np.float64)[keep]


__all__ = ["instances_from_maps"]
