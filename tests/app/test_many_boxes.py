"""Past EDIT_LIMIT boxes, the boxes in view are editable and the rest are drawn view-only; nothing is lost."""

from __future__ import annotations

import numpy as np

import app.controller as controller_mod
from app.controller import LayerController
from app.layers import BOXES, OVERVIEW
from app.session import Session
from cellcounter.annotations import Boxes, Origin
from cellcounter.project.workflows import prediction_jobs
from tests.conftest import sample_annotation


def test_editing_window_follows_the_view_and_keeps_every_box(make_napari_viewer, tmp_path, monkeypatch, qtbot):
    monkeypatch.setenv("CELLCOUNTER_PROJECTS", str(tmp_path / "projects"))
    monkeypatch.setattr(controller_mod, "EDIT_LIMIT", 5)
    ann = sample_annotation(tmp_path, with_masks=False)  # a 64 x 48 image
    viewer = make_napari_viewer()
    session, first = Session.open_path(ann.image_path, "blood")
    ctl = LayerController(viewer, session)
    ctl.show(first)
    # 8 x 6 boxes of 4 x 4 px on an 8 px grid, predicted by a model
    xy = np.array([[x, y] for y in range(2, 48, 8) for x in range(2, 64, 8)], float)
    boxes = Boxes(np.hstack([xy, xy + 4]), np.arange(len(xy)) % 3, np.full(len(xy), 0.9),
                  np.full(len(xy), Origin.MODEL))
    pred = ann.__class__(ann.image_path, 64, 48, ann.class_names, task="blood", boxes=boxes)
    ctl.predicted(prediction_jobs(ctl.session.project, [first])[0], pred, "m@1")
    n = len(boxes)
    # the whole image is in view: too many to edit, all drawn view-only, and all counted
    assert len(viewer.layers[BOXES].data) == 0 and len(viewer.layers[OVERVIEW].data) == 4 * n
    assert len(ctl.current().boxes) == n and sum(ctl.current().counts("boxes").values()) == n

    # zoom in on the top-left corner: the few boxes there become editable
    h, w = viewer.canvas.size
    viewer.scene.camera.zoom = min(h, w) / 12
    viewer.scene.camera.center = (6, 6)
    qtbot.waitUntil(lambda: 0 < len(viewer.layers[BOXES].data) <= 5, timeout=5000)
    shapes = viewer.layers[BOXES]
    k = len(shapes.data)
    assert len(viewer.layers[OVERVIEW].data) == 4 * (n - k)
    shapes.selected_data = {0}
    shapes.remove_selected()
    ctl.flush()
    assert len(session.saved.boxes) == n - 1 and len(ctl.current().boxes) == n - 1
    # the deleted one was the one at the corner; every other box is untouched
    assert not any(np.allclose(b, [2, 2, 6, 6]) for b in ctl.current().boxes.xyxy)

    # zoom out again: the edit stays, everything is view-only, undo brings the box back
    viewer.reset_view()
    qtbot.waitUntil(lambda: len(viewer.layers[BOXES].data) == 0, timeout=5000)
    assert len(viewer.layers[OVERVIEW].data) == 4 * (n - 1)
    assert ctl.undo()
    assert len(ctl.current().boxes) == n
    session.close()


def test_counts_follow_an_edit_before_it_is_saved(make_napari_viewer, tmp_path, monkeypatch, qtbot):
    from app.controller import DEBOUNCE_MS
    from app.window import SAMPLES, CellCounterWindow

    monkeypatch.setenv("CELLCOUNTER_PROJECTS", str(tmp_path / "projects"))
    viewer = make_napari_viewer()
    session, first = Session.open_path(SAMPLES["blood"], "blood")
    win = CellCounterWindow(viewer, session, "blood")
    win.show_image(first)
    table = win.counts.table
    total = lambda: int(table.item(table.rowCount() - 1, 2).text())  # noqa: E731
    n = total()
    assert n == len(session.saved.boxes) > 0
    shapes = viewer.layers[BOXES]
    shapes.selected_data = {0}
    shapes.remove_selected()
    qtbot.waitUntil(lambda: total() == n - 1, timeout=DEBOUNCE_MS // 2)  # before the save's debounce
    assert len(session.saved.boxes) == n  # not saved yet
    win.controller.flush()
    assert len(session.saved.boxes) == n - 1 and total() == n - 1
    session.close()
