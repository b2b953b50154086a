"""The layers are a view of the edit model: objects keep their ids through saves, undo, the threshold slider
and a new prediction, a pasted copy is a new object, and reading the counts never changes what is stored."""

from __future__ import annotations

import numpy as np

from app.layers import BOXES, POINTS
from cellcounter.annotations import Boxes, Origin


def _with_model_boxes(win):
    ann = win.session.saved
    ann.boxes = Boxes([[10, 10, 40, 40], [50, 10, 80, 40], [90, 10, 120, 40]], [0, 1, 0], [0.9, 0.8, 0.3],
                      [Origin.MODEL] * 3, [5, 6, 7])
    win.session.commit(ann, origin="model:tiny@1")
    win.controller.apply(win.session.saved)
    return win.controller


def test_a_box_keeps_its_id_through_a_move_undo_and_the_threshold(open_window, voc_folder):
    viewer, win, first = open_window(voc_folder({"a": []}))
    ctl = _with_model_boxes(win)
    shapes = viewer.layers[BOXES]
    assert shapes.features["id"].tolist() == [5, 6]  # 7 scores below the 0.5 threshold: kept, not shown
    data = [np.array(d) for d in shapes.data]
    data[1] = data[1] + 4  # the person moves box 6
    shapes.data = data
    ctl.flush()
    saved = win.session.saved.boxes
    assert sorted(saved.ids.tolist()) == [5, 6, 7]
    assert saved.origins[saved.ids == 6][0] == Origin.CORRECTED and saved.origins[saved.ids == 5][0] == Origin.MODEL
    assert viewer.layers[BOXES].features["origin"].tolist() == ["model", "corrected"]
    ctl.set_threshold(0.2)
    assert viewer.layers[BOXES].features["id"].tolist() == [5, 6, 7]
    assert ctl.undo()
    assert viewer.layers[BOXES].features["id"].tolist() == [5, 6, 7]
    back = win.session.saved.boxes
    assert back.origins[back.ids == 6][0] == Origin.MODEL


def test_a_pasted_copy_and_a_drawn_box_are_new_objects_with_new_ids(open_window, voc_folder):
    viewer, win, first = open_window(voc_folder({"a": []}))
    ctl = _with_model_boxes(win)
    shapes = viewer.layers[BOXES]
    shapes.selected_data = {0}
    shapes._copy_data()
    shapes._paste_data()  # the copy carries box 5's features, its id included
    shapes.add_rectangles(np.array([[45.0, 150.0], [55.0, 160.0]]))
    assert shapes.features["id"].tolist()[:3] == [5, 6, 5]
    ctl.flush()
    ids = viewer.layers[BOXES].features["id"].tolist()
    assert ids[:2] == [5, 6] and len(set(ids)) == 4 and min(ids[2:]) > 7  # 7: the hidden box's
    saved = win.session.saved.boxes
    new = ~np.isin(saved.ids, [5, 6, 7])
    assert new.sum() == 2 and (saved.origins[new] == Origin.HUMAN).all()
    # a later edit of a box drawn earlier edits that box, without making a copy of it
    data = [np.array(d) for d in viewer.layers[BOXES].data]
    data[3] = data[3] + 2
    viewer.layers[BOXES].data = data
    ctl.flush()
    again = win.session.saved.boxes
    assert len(again) == 5 and sorted(again.ids.tolist()) == sorted([7, *ids])
    assert viewer.layers[BOXES].features["id"].tolist() == ids


def test_reading_the_live_counts_leaves_the_model_alone_until_the_save(open_window, voc_folder):
    viewer, win, first = open_window(voc_folder({"a": []}))
    ctl = _with_model_boxes(win)
    viewer.layers[POINTS].add([[20.0, 20.0]])
    live = ctl.current()
    assert len(live.points) == 1 and len(ctl.model.annotation.points) == 0  # read, not taken in yet
    assert len(win.session.saved.points) == 0
    ctl.flush()
    assert len(ctl.model.annotation.points) == 1 and len(win.session.saved.points) == 1
    assert viewer.layers[POINTS].features["id"].tolist() == win.session.saved.points.ids.tolist()
