"""The review queue's order: which images a person should look at first.

"Least confident first" ranks images by how much a look could change their
result: a model object whose score lies near the counting threshold may be
counted or not, and a grade whose two likeliest values are close may be either.
Objects far below the threshold (a detector stores hundreds under 0.2) are
hidden and stay hidden; averaging them in made every image look alike.
"""

from __future__ import annotations

import numpy as np

from cellcounter.annotations import DEFAULT_SCORE_THRESHOLD, ImageAnnotation, Origin

#: a model object within this distance of the counting threshold is an open question
BORDER = 0.15
ORDERS = ("added", "least-confident")


def uncertainty(ann: ImageAnnotation, threshold: float = DEFAULT_SCORE_THRESHOLD) -> float:
    """The number of the model's objects scored within :data:`BORDER` of ``threshold``, plus, for a graded
    image, one minus the gap between its two likeliest grades. Higher: look at it sooner."""
    n = 0.0
    parts = [(ann.boxes.scores, ann.boxes.origins)]
    if ann.masks is not None:
        parts.append((ann.masks.scores, ann.masks.origins))
    for scores, origins in parts:
        if scores is None or not len(scores):
            continue
        model = (np.asarray(origins) == int(Origin.MODEL)) & np.isfinite(scores)
        n += float(np.count_nonzero(np.abs(np.asarray(scores)[model] - threshold) < BORDER))
    g = ann.grade
    if g is not None and g.origin == Origin.MODEL and g.probabilities is not None and len(g.probabilities) > 1:
        top = np.sort(np.asarray(g.probabilities, dtype=float))[::-1]
        n += 1.0 - float(top[0] - top[1])
    return n


def ordered(ids: list[int], order: str, uncertainty_of) -> list[int]:
    """``ids`` in ``order``: as added, or the most uncertain first (ties keep the order they were added in)."""
    if order not in ORDERS:
        raise ValueError(f"unknown order {order!r}; known: {', '.join(ORDERS)}")
    if order == "least-confident":
        return sorted(ids, key=lambda i: -uncertainty_of(i))
    return list(ids)
