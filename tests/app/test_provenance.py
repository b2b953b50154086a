"""Provenance you can see (#19, point 3): reference labels come in as such, origins are drawn differently, and
the selected box says who made it and with what score."""

from __future__ import annotations

import numpy as np

from app.layers import BOXES, ORIGIN_WIDTH
from cellcounter.annotations import Boxes, Origin


def test_reference_model_and_human_boxes_look_different_and_the_selection_says_which(open_window, voc_folder):
    viewer, win, first = open_window(voc_folder({"a": ["RBC", "WBC"]}))
    session = win.session
    assert (session.project.load(first).boxes.origins == Origin.REFERENCE).all()
    assert [e["origin"] for e in session.project.history.events(first) if e["kind"] == "boxes"] == ["import"]
    ann = win.session.saved
    ann.boxes = Boxes(np.vstack([ann.boxes.xyxy, [[150, 5, 190, 50]]]), np.r_[ann.boxes.classes, 2],
                      np.r_[ann.boxes.scores, 0.83], np.r_[ann.boxes.origins, Origin.MODEL])
    ann.model_version = "tiny@1"
    win.session.commit(ann, origin="model:tiny@1")
    win.controller.apply(win.session.saved)
    shapes = viewer.layers[BOXES]
    origins = list(shapes.features["origin"])
    assert origins == ["reference", "reference", "model"]
    widths = list(shapes.edge_width)
    assert widths[2] == ORIGIN_WIDTH[Origin.MODEL] < widths[0] == ORIGIN_WIDTH[Origin.REFERENCE]
    assert shapes.face_color[0][3] > 0 and shapes.face_color[2][3] == 0  # reference filled faintly, model not
    shapes.selected_data = {2}
    assert win.counts.selected.text() == "Selected: Platelets: model tiny@1, score 0.83"
    shapes.selected_data = {0}
    assert win.counts.selected.text() == "Selected: RBC: reference label (imported)"
    # a person moves the model's box: it becomes corrected and is drawn as a person's
    data = [np.array(d) for d in shapes.data]
    data[2] = data[2] + 3
    shapes.data = data
    win.controller.flush()
    assert win.session.saved.boxes.origins[2] == Origin.CORRECTED
    assert list(viewer.layers[BOXES].edge_width)[2] == ORIGIN_WIDTH[Origin.CORRECTED]
