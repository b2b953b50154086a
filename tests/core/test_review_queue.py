"""The review order puts first the images a look could change most (#31 point 11)."""

from __future__ import annotations

import numpy as np

from cellcounter.annotations import Boxes, Grade, ImageAnnotation, Origin
from cellcounter.project.queue import ordered, uncertainty


def _ann(scores, origins=None, grade=None) -> ImageAnnotation:
    n = len(scores)
    boxes = Boxes(np.tile([[1.0, 1.0, 9.0, 9.0]], (n, 1)), [0] * n, scores,
                  origins if origins is not None else [Origin.MODEL] * n)
    return ImageAnnotation("a.png", 50, 40, ("RBC", "WBC", "Platelets"), task="blood", boxes=boxes, grade=grade)


def test_only_model_objects_near_the_threshold_make_an_image_uncertain():
    hundreds_hidden = _ann([0.05] * 140 + [0.9] * 10)  # a detector's stored low scores: far from any decision
    borderline = _ann([0.45, 0.55, 0.6, 0.9])
    assert uncertainty(hundreds_hidden, 0.5) == 0
    assert uncertainty(borderline, 0.5) == 3
    assert uncertainty(borderline, 0.8) == 1  # near 0.8 now: only 0.9 is borderline
    touched = _ann([0.45, 0.55], [Origin.CORRECTED, Origin.HUMAN])
    assert uncertainty(touched, 0.5) == 0  # a person decided these already


def test_a_grade_between_two_values_is_uncertain_and_a_clear_one_is_not():
    close = _ann([], grade=Grade(0, np.array([0.24, 0.17, 0.22, 0.17, 0.20]), Origin.MODEL))
    clear = _ann([], grade=Grade(2, np.array([0.02, 0.03, 0.9, 0.03, 0.02]), Origin.MODEL))
    assert uncertainty(close) > uncertainty(clear)
    assert np.isclose(uncertainty(close), 0.98)


def test_least_confident_first_keeps_the_added_order_among_equals():
    u = {1: 0.0, 2: 3.0, 3: 1.0, 4: 3.0}
    assert ordered([1, 2, 3, 4], "least-confident", u.get) == [2, 4, 3, 1]
    assert ordered([1, 2, 3, 4], "added", u.get) == [1, 2, 3, 4]
