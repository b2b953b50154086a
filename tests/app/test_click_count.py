"""Click-count numbering stays 1..n per class through removals, undo and redo (#19, point 4)."""

from __future__ import annotations

import warnings

import numpy as np

from app.layers import POINTS


def _numbers(pts) -> list[str]:
    return [str(v) for v in pts.text.values]


def test_numbers_read_one_to_n_after_a_removal_an_undo_and_a_redo(open_window, voc_folder):
    viewer, win, _ = open_window(voc_folder({"a": ["RBC"]}))
    pts = viewer.layers[POINTS]
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # "Applying the encoding failed" is a RuntimeWarning
        for x in (20.0, 60.0, 100.0):
            win.toggle_mark(np.array([30.0, x]))
        assert _numbers(pts) == ["1", "2", "3"]
        win.toggle_mark(np.array([30.0, 60.0]))  # remove the 2nd
        assert _numbers(pts) == ["1", "2"]
        win.toggle_mark(np.array([30.0, 60.0]))  # add it back
        assert _numbers(pts) == ["1", "2", "3"]
        assert win.controller.undo() is not None
        assert _numbers(viewer.layers[POINTS]) == ["1", "2"]
        assert win.controller.redo() is not None
        assert _numbers(viewer.layers[POINTS]) == ["1", "2", "3"]
    assert len(win.session.saved.points) == 3
