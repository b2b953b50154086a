"""Provenance you can see (#19, point 3): reference labels come in as such, origins are drawn differently, and
the selected box says who made it and with what score."""

from __future__ import annotations

import numpy as np

from app.layers import BOXES, ORIGIN_WIDTH
from app.session import Session
from app.window import CellCounterWindow
from cellcounter.annotations import Boxes, Origin
from tests.app.test_colours import _voc


def test_reference_model_and_human_boxes_look_different_and_the_selection_says_which(
        make_napari_viewer, tmp_path, monkeypatch, qtbot):
    monkeypatch.setenv("CELLCOUNTER_PROJECTS", str(tmp_path / "projects"))
    root = tmp_path / "voc"
    (root / "Annotations").mkdir(parents=True)
    (root / "JPEGImages").mkdir()
    _voc(root, "a", ["RBC", "WBC"])
    viewer = make_napari_viewer(show=True)
    session, first = Session.open_path(root, "blood", user="tester")
    assert (session.project.load(first).boxes.origins == Origin.REFERENCE).all()
    assert session.project.history(first)[-1]["origin"] == "import"
    win = CellCounterWindow(viewer, session, "blood")
    win.show_image(first)
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
