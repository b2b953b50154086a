"""Undo and redo return to the identical state, and cost the edits' size, not the image's."""

from __future__ import annotations

import dataclasses

import numpy as np

from cellcounter.annotations import Boxes, Grade, ImageAnnotation, InstanceMasks, Origin, ReviewStatus
from cellcounter.project.undo import UndoHistory


def test_twenty_strokes_on_a_large_mask_cost_their_windows_and_undo_back_to_the_identical_state():
    lab = np.zeros((2048, 2048), np.int32)
    lab[100:400, 100:400] = 1
    start = ImageAnnotation("big.tif", 2048, 2048, ("nucleus",), task="nuclei",
                            masks=InstanceMasks(lab, [1], [0], [0.9], [Origin.MODEL]))
    history = UndoHistory(depth=100)
    states = [start]
    for k in range(20):  # a 20 x 20 brush stroke each, a new instance every other time
        lab = states[-1].masks.label_image.copy()
        lab[500 + 60 * k: 520 + 60 * k, 800:820] = 2 + k // 2
        ids = np.unique(lab[lab > 0])
        nxt = dataclasses.replace(states[-1], masks=InstanceMasks(lab, ids, np.zeros(len(ids), int),
                                                                   np.full(len(ids), np.nan),
                                                                   np.full(len(ids), Origin.HUMAN)))
        history.record(0, states[-1], nxt)
        states.append(nxt)
    assert history.nbytes < 2_000_000  # whole copies would be 20 x 16 MB
    current = states[-1]
    for expected in reversed(states[:-1]):
        current = history.undo(0, current)
        assert current.equals(expected)
    assert history.undo(0, current) is None and history.can_redo(0)
    for expected in states[1:]:
        current = history.redo(0, current)
        assert current.equals(expected)
    assert not history.can_redo(0)


def test_boxes_grade_and_review_come_back_and_a_new_edit_clears_redo():
    a = ImageAnnotation("a.png", 64, 48, ("RBC", "WBC"), boxes=Boxes(np.array([[1, 2, 10, 12.5]]), [1], [0.7],
                                                                      [Origin.MODEL]))
    b = dataclasses.replace(a, boxes=Boxes(), grade=Grade(2), review=ReviewStatus.REVIEWED)
    history = UndoHistory()
    history.record(7, a, b)
    back = history.undo(7, b)
    assert back.equals(a) and back.review == ReviewStatus.UNREVIEWED and back.grade is None
    assert history.redo(7, back).equals(b)
    history.undo(7, b)
    history.record(7, a, dataclasses.replace(a, grade=Grade(1)))
    assert not history.can_redo(7) and not history.can_undo(8)
