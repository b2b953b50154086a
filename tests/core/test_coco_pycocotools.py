"""COCO files written by cellcounter load in pycocotools and evaluate with COCOeval."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from cellcounter.formats import write_labels
from tests.conftest import sample_annotation


def _evaluate(gt_file, dets, iou_type):
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(gt_file))
        dt = gt.loadRes(dets)
        ev = COCOeval(gt, dt, iou_type)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats


def test_written_file_loads_and_self_evaluation_is_perfect(tmp_path):
    anns = [sample_annotation(tmp_path, f"im{i}", i) for i in range(3)]
    for a in anns:
        a.boxes = type(a.boxes)()  # masks only, so the bbox of each annotation is the mask's
    (gt_file,) = write_labels(anns, tmp_path / "gt.json", "coco")
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(gt_file))
    assert len(gt.getImgIds()) == 3
    assert len(gt.getAnnIds()) == sum(len(a.masks) for a in anns)
    # pycocotools decodes our RLE to exactly our masks
    first = gt.loadAnns(gt.getAnnIds(imgIds=[1]))[0]
    assert np.array_equal(gt.annToMask(first).astype(bool), anns[0].masks.binary_mask(0))

    doc = json.loads(gt_file.read_text())
    dets = [dict(a, score=1.0) for a in doc["annotations"]]
    for a in dets:
        a.pop("id")
    for iou_type in ("bbox", "segm"):
        stats = _evaluate(gt_file, dets, iou_type)
        assert stats[0] == 1.0, iou_type  # AP@[.5:.95]


def test_shifted_predictions_score_below_one(tmp_path):
    anns = [sample_annotation(tmp_path, "im", 0, with_masks=False)]
    anns[0].points = type(anns[0].points)()
    (gt_file,) = write_labels(anns, tmp_path / "gt.json", "coco")
    doc = json.loads(gt_file.read_text())
    dets = []
    for a in doc["annotations"]:
        x, y, w, h = a["bbox"]
        dets.append({"image_id": a["image_id"], "category_id": a["category_id"], "bbox": [x + w / 2, y, w, h],
                     "score": 0.9})
    stats = _evaluate(gt_file, dets, "bbox")
    assert 0 <= stats[0] < 0.5


def test_instances_encoded_from_their_crops_equal_full_image_encodings():
    """#36: COCO masks are encoded from each instance's bounding box (a full-image mask per instance cost about
    0.1 s on 2048 x 2048); the RLE must be byte for byte what pycocotools makes of the full mask, edge runs that
    wrap from one column into the next included."""
    import numpy as np

    from cellcounter.formats.coco import encode_crop, encode_mask

    rng = np.random.default_rng(1)
    for height, width in ((37, 29), (6, 6), (50, 1)):
        for t in range(300):
            m = np.zeros((height, width), bool)
            r0, c0 = rng.integers(0, height), rng.integers(0, width)
            r1, c1 = rng.integers(r0 + 1, height + 1), rng.integers(c0 + 1, width + 1)
            m[r0:r1, c0:c1] = True if t % 3 == 0 else rng.random((r1 - r0, c1 - c0)) < 0.5
            if t % 11 == 0:
                m[:] = True
            if not m.any():
                continue
            rows, cols = np.nonzero(m)
            crop = m[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
            assert encode_crop(crop, rows.min(), cols.min(), height, width) == encode_mask(m)
