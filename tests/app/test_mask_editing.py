"""Mask editing on instance labels: delete, merge, split by a line, new instance; provenance follows."""

from __future__ import annotations

import numpy as np
from PIL import Image

from app.session import Session
from app.window import CellCounterWindow
from cellcounter.annotations import ImageAnnotation, InstanceMasks, Origin
from cellcounter.project.workflows import prediction_jobs


def test_delete_merge_split_and_new_instance(make_napari_viewer, tmp_path, monkeypatch, qtbot):
    monkeypatch.setenv("CELLCOUNTER_PROJECTS", str(tmp_path / "projects"))
    Image.fromarray(np.zeros((60, 80, 3), np.uint8)).save(tmp_path / "tile.png")
    viewer = make_napari_viewer(show=True)
    session, first = Session.open_path(tmp_path / "tile.png", "nuclei", user="t")
    win = CellCounterWindow(viewer, session, "nuclei")
    win.show_image(first)
    lab = np.zeros((60, 80), np.int32)
    lab[5:25, 5:45] = 1  # to be split
    lab[30:40, 5:15] = 2
    lab[30:40, 20:30] = 3  # merged into 2
    lab[45:55, 60:70] = 4  # deleted
    pred = ImageAnnotation(str(tmp_path / "tile.png"), 80, 60, ("nucleus",), task="nuclei",
                           masks=InstanceMasks(lab, scores=[0.9] * 4, origins=[Origin.MODEL] * 4))
    ctl = win.controller
    ctl.predicted(prediction_jobs(ctl.session.project, [first])[0], pred, "m@1")
    assert len(ctl.current().masks) == 4
    ctl.delete_instance(4)
    ctl.merge_instances(2, 3)
    pieces = ctl.split_instance(1, np.array([[0.0, 25.0], [30.0, 25.0]]))
    ctl.flush()
    m = ctl.current().masks
    assert len(pieces) == 2 and len(m) == 3
    areas = dict(zip(m.ids.tolist(), m.areas().tolist()))
    assert areas[2] == 200 and 4 not in areas
    origins = dict(zip(m.ids.tolist(), m.origins.tolist()))
    # a piece cut from a model's instance is that instance corrected, not a new one of the person's
    assert origins[1] == Origin.CORRECTED and origins[pieces[1]] == Origin.CORRECTED and origins[2] == Origin.CORRECTED
    new = ctl.new_instance_label()
    assert new == max(m.ids) + 1
    assert ctl.undo() and len(ctl.current().masks) == 4  # the three edits were one debounced save
    win.open_dropped([str(tmp_path / "tile.png")])
    qtbot.waitUntil(lambda: win._opening is None and win.session.saved.image_path == str(tmp_path / "tile.png"),
                    timeout=30_000)
    win.session.close()
