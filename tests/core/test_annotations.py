from __future__ import annotations

import numpy as np
import pytest

from cellcounter.annotations import (
    Boxes,
    ImageAnnotation,
    InstanceMasks,
    Origin,
    Points,
    flip_xy_rc,
    grade_counts,
    napari_rectangles_to_xyxy,
    total_counts,
    xyxy_to_napari_rectangles,
)
from cellcounter.errors import CellCounterError
from cellcounter.tasks import TASKS, get_task


def test_flip_is_its_own_inverse_and_swaps_axes():
    xy = np.array([[10.0, 2.0], [3.5, 7.25]])
    rc = flip_xy_rc(xy)
    assert rc.tolist() == [[2.0, 10.0], [7.25, 3.5]]
    assert np.array_equal(flip_xy_rc(rc), xy)
    with pytest.raises(ValueError):
        flip_xy_rc(np.zeros((3, 3)))


def test_boxes_to_napari_rectangles_and_back():
    xyxy = np.array([[1.0, 2.0, 11.0, 22.0], [0, 0, 5, 3]])
    rects = xyxy_to_napari_rectangles(xyxy)
    assert rects.shape == (2, 4, 2)
    # napari corners are (row, col): the first corner is (y1, x1)
    assert rects[0, 0].tolist() == [2.0, 1.0]
    assert rects[0, 2].tolist() == [22.0, 11.0]
    assert np.array_equal(napari_rectangles_to_xyxy(rects), xyxy)
    # corner order does not matter (a user may drag a box from any corner)
    assert np.array_equal(napari_rectangles_to_xyxy(rects[:, ::-1]), xyxy)


def test_points_xy_and_rc_agree():
    p = Points.from_xy(np.array([[5.0, 1.0]]), [2])
    assert p.rc.tolist() == [[1.0, 5.0]]
    assert p.xy.tolist() == [[5.0, 1.0]]


def _ann(**kw):
    return ImageAnnotation("a/b/img.png", 100, 50, ("RBC", "WBC", "Platelets"), **kw)


def test_counts_per_class_from_boxes_masks_and_points_with_threshold():
    lab = np.zeros((50, 100), dtype=np.int32)
    lab[0:5, 0:5] = 1
    lab[10:15, 10:15] = 2
    ann = _ann(
        boxes=Boxes(np.array([[0, 0, 1, 1]] * 4), [0, 0, 1, 2], [0.9, 0.2, np.nan, 0.6]),
        masks=InstanceMasks(lab, classes=[2, 2], scores=[0.1, 0.95]),
        points=Points(np.array([[1, 1], [2, 2], [3, 3]]), [1, 1, 0]),
    )
    assert ann.counts("boxes") == {"RBC": 2, "WBC": 1, "Platelets": 1}
    assert ann.counts("boxes", score_threshold=0.5) == {"RBC": 1, "WBC": 1, "Platelets": 1}
    assert ann.counts("masks", score_threshold=0.5) == {"RBC": 0, "WBC": 0, "Platelets": 1}
    assert ann.counts("points") == {"RBC": 1, "WBC": 2, "Platelets": 0}
    assert ann.counts() == {"RBC": 3, "WBC": 3, "Platelets": 3}
    assert total_counts([ann, ann], kind="points") == {"RBC": 2, "WBC": 4, "Platelets": 0}


def test_counts_refuse_class_ids_without_a_name():
    ann = _ann(boxes=Boxes(np.array([[0, 0, 1, 1]]), [5]))
    with pytest.raises(ValueError, match="class id 5"):
        ann.counts()


def test_masks_keep_ids_and_give_bounding_boxes_and_areas():
    lab = np.zeros((20, 30), dtype=np.int32)
    lab[2:5, 3:9] = 4
    lab[10:20, 0:1] = 9
    m = InstanceMasks(lab, classes=[1, 0])
    assert m.ids.tolist() == [4, 9]
    assert m.bounding_boxes().xyxy.tolist() == [[3, 2, 9, 5], [0, 10, 1, 20]]
    assert m.areas().tolist() == [18, 10]
    r = m.relabelled()
    assert r.ids.tolist() == [1, 2] and set(np.unique(r.label_image)) == {0, 1, 2}
    assert r.equals(m) and m.equals(r)
    assert not m.subset(np.array([True, False])).equals(m)


def test_binary_masks_overlap_later_wins_and_hidden_ones_drop():
    a = np.zeros((10, 10), bool)
    a[0:4, 0:4] = True
    b = np.zeros((10, 10), bool)
    b[0:5, 0:5] = True  # covers a entirely
    c = np.zeros((10, 10), bool)
    c[8:10, 8:10] = True
    m = InstanceMasks.from_binary_masks([a, b, c], (10, 10), classes=[0, 1, 2], scores=[0.1, 0.2, 0.3])
    assert len(m) == 2
    assert m.classes.tolist() == [1, 2]
    assert m.scores.tolist() == [0.2, 0.3]


def test_annotation_rejects_bad_sizes():
    with pytest.raises(ValueError, match="positive"):
        ImageAnnotation("x.png", 0, 10, ("a",))
    with pytest.raises(ValueError, match="label image is 5x4 but the image is 10x10"):
        ImageAnnotation("x.png", 10, 10, ("a",), masks=InstanceMasks(np.zeros((4, 5), np.int32)))
    with pytest.raises(ValueError):
        InstanceMasks(np.zeros((4, 5), np.float32))


def test_tasks_are_declared_once_with_their_classes():
    assert TASKS["blood"].class_names == ("RBC", "WBC", "Platelets")
    assert get_task("retinopathy").class_names[4] == "Proliferative DR"
    assert {t.kind for t in TASKS.values()} == {"boxes", "masks", "grade"}
    with pytest.raises(CellCounterError, match="known tasks"):
        get_task("cats")


def test_default_origin_is_human_and_grade_counts():
    from cellcounter.annotations import Grade

    b = Boxes(np.array([[0, 0, 2, 2]]))
    assert b.origins.tolist() == [Origin.HUMAN] and np.isnan(b.scores[0])
    anns = [_ann(grade=Grade(g)) for g in (0, 2, 2, 4)]
    assert grade_counts(anns) == {"0": 1, "2": 2, "4": 1}
