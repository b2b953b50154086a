"""The Qt-free edit model: objects keep their ids, a person's change sets provenance, views hear every change."""

from __future__ import annotations

import numpy as np
import pytest

from cellcounter.annotations import Boxes, ImageAnnotation, InstanceMasks, Origin, Points
from cellcounter.editing import NEW, EditModel
from cellcounter.project.store import Project
from cellcounter.project.workflows import merge_prediction
from cellcounter.regions import Region
from tests.conftest import make_image

M, H, C, R = Origin.MODEL, Origin.HUMAN, Origin.CORRECTED, Origin.REFERENCE


def _ann(boxes: Boxes | None = None, masks: InstanceMasks | None = None, points: Points | None = None):
    return ImageAnnotation("a.png", 100, 80, ("RBC", "WBC", "Platelets"), task="blood",
                           boxes=boxes or Boxes(), masks=masks, points=points or Points())


def _scored():
    """Two model boxes above 0.5, one below, one a person drew."""
    return Boxes([[0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50], [60, 60, 70, 70]], [0, 0, 1, 2],
                 [0.9, 0.7, 0.2, np.nan], [M, M, M, H], [11, 12, 13, 14])


def _recorder(model: EditModel) -> list:
    events: list = []
    model.connect(events.append)
    return events


def test_the_threshold_decides_what_is_shown_and_hidden_boxes_survive_edits_of_the_shown():
    model = EditModel(_ann(_scored()), score_threshold=0.5)
    shown = model.shown_boxes()
    assert shown.ids.tolist() == [11, 12, 14]
    # the view deletes box 12 and moves box 11: the hidden box 13 is untouched
    ids = model.update_boxes([[1, 1, 11, 11], [60, 60, 70, 70]], [0, 2], [11, 14])
    assert ids.tolist() == [11, 14]
    b = model.annotation.boxes
    assert sorted(b.ids.tolist()) == [11, 13, 14]
    assert b.origins[b.ids == 11][0] == C and b.scores[b.ids == 11][0] == pytest.approx(0.9)
    assert b.origins[b.ids == 13][0] == M  # hidden, kept as the model left it
    model.set_threshold(0.1)
    assert 13 in model.shown_boxes().ids


def test_new_boxes_get_ids_never_used_before_and_pasted_copies_are_new():
    model = EditModel(_ann(_scored()))
    events = _recorder(model)
    # box 14 deleted, then a box drawn, and a copy of box 11 pasted (it carries 11's id)
    ids = model.update_boxes([[0, 0, 10, 10], [20, 20, 30, 30], [5, 5, 9, 9], [0, 0, 10, 10]], [0, 0, 1, 0],
                             [11, 12, NEW, 11])
    assert ids[:2].tolist() == [11, 12]
    assert set(ids[2:].tolist()).isdisjoint({11, 12, 13, 14}) and len(set(ids.tolist())) == 4
    ev = events[-1]
    assert ev.kind == "boxes" and set(ev.added) == set(ids[2:].tolist()) and ev.removed == (14,)
    assert ev.changed == ()  # nothing that was there moved
    b = model.annotation.boxes
    assert b.origins[np.isin(b.ids, ids[2:])].tolist() == [H, H]
    shown = model.shown_boxes()  # then one more drawn
    later = model.update_boxes(np.vstack([shown.xyxy, [[1, 1, 2, 2]]]), [*shown.classes, 2], [*shown.ids, NEW])
    assert later[-1] > ids.max()  # deleted 14 and the ids just given are not taken again


def test_a_small_shift_keeps_a_model_box_a_model_box_but_a_new_class_corrects_it():
    model = EditModel(_ann(_scored()))
    model.update_boxes([[0.3, 0, 10, 10.2], [20, 20, 30, 30], [60, 60, 70, 70]], [0, 1, 2], [11, 12, 14])
    b = model.annotation.boxes
    assert b.origins[b.ids == 11][0] == M and b.xyxy[b.ids == 11][0][0] == pytest.approx(0.3)
    assert b.origins[b.ids == 12][0] == C and b.classes[b.ids == 12][0] == 1


def test_an_unchanged_view_announces_nothing():
    model = EditModel(_ann(_scored()))
    events = _recorder(model)
    shown = model.shown_boxes()
    model.update_boxes(shown.xyxy, shown.classes, shown.ids)
    model.update_points(np.zeros((0, 2)), [], [])
    assert events == []


def test_accept_and_drop_hidden():
    model = EditModel(_ann(_scored()))
    assert model.accept_shown() == 2
    b = model.annotation.boxes
    assert b.ids.tolist() == [11, 12, 14] and b.origins.tolist() == [C, C, H]
    model = EditModel(_ann(_scored()))
    assert model.drop_hidden() == 1 and 13 not in model.annotation.boxes.ids


def test_a_relabel_in_the_view_corrects_a_model_box_and_a_deletion_removes_only_it():
    model = EditModel(_ann(_scored()))
    events = _recorder(model)
    shown = model.shown_boxes()  # 11, 12, 14; the view gives 11 and 14 the platelet class (14 was one)
    model.update_boxes(shown.xyxy, [2, shown.classes[1], 2], shown.ids)
    b = model.annotation.boxes
    assert b.classes[b.ids == 11][0] == 2 and b.origins[b.ids == 11][0] == C
    assert events[-1].changed == (11,)  # 14 was a platelet already
    shown = model.shown_boxes()
    keep = shown.ids != 12
    model.update_boxes(shown.xyxy[keep], shown.classes[keep], shown.ids[keep])
    assert events[-1].removed == (12,) and 13 in model.annotation.boxes.ids  # the hidden box stays


def test_points_keep_ids_and_a_moved_reference_mark_is_corrected():
    model = EditModel(_ann(points=Points([[5, 5], [10, 10]], [0, 1], [R, H], [3, 4])))
    ids = model.update_points([[5, 6], [10, 10], [20, 20]], [0, 1, 1], [3, 4, NEW])
    assert ids[:2].tolist() == [3, 4] and ids[2] > 4
    p = model.annotation.points
    assert p.origins.tolist() == [C, H, H]


def _labels():
    lab = np.zeros((80, 100), np.int32)
    lab[10:30, 10:50] = 4  # a model's instance, split below
    lab[50:60, 50:60] = 7  # a person's
    lab[60:70, 80:90] = 9  # a model's
    return InstanceMasks(lab, [4, 7, 9], [1, 0, 2], [0.8, np.nan, 0.6], [M, H, M])


def test_painting_corrects_the_touched_model_instance_and_a_fresh_id_is_a_new_human_instance():
    model = EditModel(_ann(masks=_labels()))
    events = _recorder(model)
    lab = model.annotation.masks.label_image.copy()
    lab[60:62, 80:90] = 0  # erase part of 9
    fresh = model.new_instance_id()
    assert fresh == 10
    lab[0:5, 0:5] = fresh
    ev = model.paint(lab, new_class=1)
    m = model.annotation.masks
    assert ev.added == (10,) and ev.changed == (9,) and ev.removed == ()
    assert dict(zip(m.ids.tolist(), m.origins.tolist())) == {4: M, 7: H, 9: C, 10: H}
    assert m.classes[m.ids == 10][0] == 1 and np.isnan(m.scores[m.ids == 10][0])
    assert model.paint(lab) is None and len(events) == 1


def test_split_pieces_keep_class_and_score_merge_keeps_the_first_id():
    model = EditModel(_ann(masks=_labels()))
    pieces = model.split_instance(4, np.array([[5, 30], [35, 30]]))
    assert pieces[0] == 4 and len(pieces) == 2 and pieces[1] == 10
    m = model.annotation.masks
    assert m.classes[np.isin(m.ids, pieces)].tolist() == [1, 1]
    assert m.origins[np.isin(m.ids, pieces)].tolist() == [C, C]
    assert model.new_instance_id() == 11  # the piece's id is taken
    model.merge_instances(4, 10)
    m = model.annotation.masks
    assert 10 not in m.ids and (m.label_image == 4).sum() > 0
    model.delete_instance(7)
    assert 7 not in model.annotation.masks.ids and not (model.annotation.masks.label_image == 7).any()
    assert model.split_instance(9, np.array([[0, 0], [1, 1]])) == [9]  # a line that misses cuts nothing


def test_a_new_prediction_never_gives_a_new_object_an_old_id():
    saved = _ann(_scored(), masks=_labels())
    pred = _ann(Boxes([[1, 1, 5, 5], [6, 6, 9, 9]], [0, 0], [0.9, 0.8], [M, M]), masks=_labels())
    merged = merge_prediction(saved, pred, "blood-default@3")
    assert merged.boxes.ids.tolist()[:1] == [14]  # the person's box keeps its id
    assert set(merged.boxes.ids[1:].tolist()).isdisjoint({11, 12, 13, 14})
    assert 7 in merged.masks.ids and (merged.masks.label_image == 7).sum() == 100  # the person's instance
    assert set(merged.masks.ids.tolist()) - {7} and min(set(merged.masks.ids.tolist()) - {7}) > 9


def test_ids_survive_the_store_and_a_renumbering_is_a_change(tmp_path):
    img = make_image(tmp_path / "a.png", 100, 80)
    with Project.create(tmp_path / "p.ccproj") as proj:
        iid = proj.add_image(img, task="blood")
        ann = proj.load(iid)
        ann.boxes = _scored()
        ann.points = Points([[5, 5]], [0], [H], [8])
        proj.save(iid, ann)
        back = proj.load(iid)
        assert back.boxes.ids.tolist() == [11, 12, 13, 14] and back.points.ids.tolist() == [8]
        b = back.boxes
        back.boxes = Boxes(b.xyxy, b.classes, b.scores, b.origins, [1, 2, 3, 4])
        assert proj.save(iid, back) == ["boxes"]


def test_regions_are_replaced_only_when_they_differ():
    model = EditModel(_ann())
    events = _recorder(model)
    square = Region("r", np.array([[0, 0], [10, 0], [10, 10], [0, 10]], float))
    model.set_regions([square])
    assert model.set_regions([square]) is None
    assert [e.kind for e in events] == ["regions"] and model.annotation.regions[0].name == "r"
