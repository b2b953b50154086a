"""The metrics against hand-worked examples and pycocotools."""

from __future__ import annotations

import numpy as np
import pytest

from cellcounter.annotations import Boxes, ImageAnnotation, InstanceMasks
from cellcounter.metrics import (
    aggregated_jaccard,
    box_iou,
    coco_mask_ap,
    count_mae,
    detection_ap,
    grade_metrics,
    match_detections,
    quadratic_weighted_kappa,
    voc_ap,
)


def _ann(xyxy=(), classes=(), scores=None, masks=None):
    return ImageAnnotation("x.png", 100, 100, ("A", "B"), boxes=Boxes(np.array(xyxy, float).reshape(-1, 4), classes,
                                                                       scores), masks=masks)


def test_box_iou():
    assert box_iou([[0, 0, 10, 10]], [[5, 0, 15, 10]])[0, 0] == pytest.approx(50 / 150)
    assert box_iou([[0, 0, 10, 10]], [[20, 20, 30, 30]])[0, 0] == 0


def test_voc_ap_hand_worked_example():
    # 3 ground truths; predictions by score: TP, FP, TP, FP(duplicate)
    # precision 1, 1/2, 2/3, 2/4 at recall 1/3, 1/3, 2/3, 2/3
    # envelope: 1 up to r=1/3, 2/3 up to r=2/3, 0 after: AP = 1/3 * 1 + 1/3 * 2/3 = 5/9
    gt = _ann([[0, 0, 10, 10], [20, 20, 30, 30], [50, 50, 60, 60]], [0, 0, 0])
    pred = _ann([[0, 0, 10, 10], [80, 80, 90, 90], [20, 20, 30, 31], [0, 0, 10, 11]], [0, 0, 0, 0],
                [0.9, 0.8, 0.7, 0.6])
    ap = detection_ap([gt], [pred])
    assert ap["A"] == pytest.approx(5 / 9)
    assert np.isnan(ap["B"])  # no ground truth of class B


def test_a_prediction_on_an_already_matched_ground_truth_is_a_false_positive():
    # the second prediction overlaps the first GT most (taken) and the second GT above 0.5:
    # VOC counts it as a false positive rather than moving it to the second GT
    gts = np.array([[0, 0, 10, 10], [3, 0, 13, 10]], float)
    preds = np.array([[0, 0, 10, 10], [1, 0, 11, 10]], float)
    assert box_iou(preds[1:], gts)[0].tolist() == pytest.approx([9 / 11, 8 / 12])
    assert match_detections(gts, preds, np.array([0.9, 0.8])).tolist() == [True, False]


def test_voc_ap_of_a_perfect_ranking_is_one():
    assert voc_ap(np.array([0.5, 1.0]), np.array([1.0, 1.0])) == pytest.approx(1.0)


def test_count_mae_uses_the_threshold():
    gt = _ann([[0, 0, 1, 1]] * 3, [0, 0, 1])
    pred = _ann([[0, 0, 1, 1]] * 3, [0, 1, 1], [0.9, 0.9, 0.1])
    assert count_mae([gt], [pred], 0.5) == {"A": 1.0, "B": 0.0}


def test_aggregated_jaccard_hand_worked():
    g = np.zeros((10, 10), int)
    g[0:4, 0:4] = 1  # 16 px
    g[6:10, 6:10] = 2  # 16 px, missed
    p = np.zeros((10, 10), int)
    p[0:4, 0:2] = 5  # 8 px inside GT 1
    p[8:10, 0:2] = 7  # 4 px false positive
    # C = 8; U = 16 (union of 1 and 5) + 16 (missed GT) + 4 (unused prediction) = 36
    assert aggregated_jaccard(g, p) == pytest.approx(8 / 36)
    assert aggregated_jaccard(g, g) == 1.0


def test_quadratic_weighted_kappa_and_confusion():
    assert quadratic_weighted_kappa([0, 1, 2, 3, 4], [0, 1, 2, 3, 4], 5) == pytest.approx(1.0)
    assert quadratic_weighted_kappa([0, 0, 4, 4], [4, 4, 0, 0], 5) < 0
    # by hand: observed weighted disagreement 2/9, expected 52/45, so kappa = 1 - 90/468
    assert quadratic_weighted_kappa([0, 1, 2, 2, 3], [0, 2, 2, 1, 3], 4) == pytest.approx(1 - 90 / 468)
    m = grade_metrics([0, 0, 1], [0, 1, 1], 2)
    assert m["accuracy"] == pytest.approx(2 / 3) and m["confusion"] == [[0.5, 0.5], [0.0, 1.0]]


def test_coco_mask_ap_perfect_and_empty_predictions():
    lab = np.zeros((100, 100), np.int32)
    lab[10:30, 10:30] = 1
    lab[50:70, 40:80] = 2
    gt = _ann(masks=InstanceMasks(lab))
    perfect = _ann(masks=InstanceMasks(lab, scores=[0.9, 0.8]))
    assert coco_mask_ap([gt], [perfect]) == {"mask_ap50": pytest.approx(1.0), "mask_ap": pytest.approx(1.0)}
    none = _ann(masks=InstanceMasks(np.zeros((100, 100), np.int32)))
    assert coco_mask_ap([gt], [none]) == {"mask_ap50": 0.0, "mask_ap": 0.0}


def test_coco_mask_ap_counts_every_nucleus_of_a_dense_tile():
    """A tile with 400 nuclei found perfectly scores 1 at every IoU (pycocotools' own summary of AP@0.5:0.95
    looks at 100 detections per image and said 0.25)."""
    lab = np.zeros((200, 200), np.int32)
    for k in range(400):
        r, c = divmod(k, 20)
        lab[r * 10:r * 10 + 8, c * 10:c * 10 + 8] = k + 1
    gt = ImageAnnotation("x.png", 200, 200, ("A",), masks=InstanceMasks(lab))
    perfect = ImageAnnotation("x.png", 200, 200, ("A",), masks=InstanceMasks(lab, scores=np.linspace(0.99, 0.5, 400)))
    assert coco_mask_ap([gt], [perfect]) == {"mask_ap50": pytest.approx(1.0), "mask_ap": pytest.approx(1.0)}
