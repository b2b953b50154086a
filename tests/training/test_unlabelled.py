"""Unlabelled objects found by a start model are left out of the loss, wherever the augmentations move them."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from cellcounter.annotations import Boxes, ImageAnnotation
from cellcounter.errors import CellCounterError
from cellcounter.models import DetectorConfig, build, build_model
from cellcounter.models.build import IgnoringHead
from tests.helpers import box_colour_ok, coloured, tiny
from training import iter_training, unlabelled
from training.config import TrainConfig
from training.data import IGNORE_LABEL, DetectionDataset


def _loader(img: torch.Tensor, boxes, classes, path="a.png"):
    ann = ImageAnnotation(path, img.shape[2], img.shape[1], ("RBC", "WBC", "Platelets"), task="blood",
                          boxes=Boxes(np.asarray(boxes, float), classes))
    pixels = (img.permute(1, 2, 0).numpy() * 255).astype(np.uint8)
    return lambda: (pixels, ann)


def test_ignore_boxes_follow_flips_and_resizes_and_stay_out_of_the_labels():
    labelled, ignored = [(10, 12, 50, 60)], [(100, 80, 140, 120), (150, 20, 190, 50)]
    img = coloured(160, 200, labelled + ignored, [0, 3, 3])  # ignored objects painted in their own colour
    cfg = TrainConfig(min_size=80, max_size=100, hflip=1.0, vflip=1.0, brightness=0, contrast=0, saturation=0,
                      hue=0)
    ds = DetectionDataset([_loader(img, labelled, [0])], cfg, train=True,
                          ignore={"a.png": np.asarray(ignored, float)})
    image, target = ds[0]
    assert image.shape == (3, 80, 100)
    assert target["labels"].tolist() == [0] and IGNORE_LABEL not in target["labels"]
    assert len(target["ignore"]) == 2
    assert box_colour_ok(image, target["boxes"], target["labels"])
    assert box_colour_ok(image, target["ignore"], torch.tensor([3, 3]))
    plain = DetectionDataset([_loader(img, labelled, [0])], cfg, train=True)[0][1]
    assert "ignore" not in plain and torch.equal(plain["boxes"], target["boxes"])


def test_ignore_boxes_survive_mosaic_with_their_pixels():
    boxes = [(10, 12, 50, 60), (100, 80, 140, 120)]
    img = coloured(160, 200, boxes, [0, 3])
    cfg = TrainConfig(min_size=0, max_size=0, hflip=0, vflip=0, brightness=0, contrast=0, saturation=0, hue=0,
                      mosaic_p=1.0)
    loaders = [_loader(img, boxes[:1], [0], f"{i}.png") for i in range(4)]
    ds = DetectionDataset(loaders, cfg, train=True, ignore={f"{i}.png": np.asarray(boxes[1:], float)
                                                           for i in range(4)})
    seen = 0
    for i in range(4):
        image, target = ds[i]
        assert IGNORE_LABEL not in target["labels"]
        seen += len(target["ignore"])
        assert box_colour_ok(image, target["ignore"], torch.full((len(target["ignore"]),), 3), min_frac=0.8)
    assert seen > 0


def _detector():
    torch.manual_seed(0)
    cfg = DetectorConfig(num_classes=3, fpn_channels=32, min_size=128, max_size=128)
    return build_model(cfg)


def test_the_loss_skips_anchors_on_ignored_objects_and_only_them():
    model = _detector().train()
    assert isinstance(model.head, IgnoringHead)
    image = [torch.rand(3, 128, 128)]
    labelled = {"boxes": torch.tensor([[10.0, 10, 40, 40]]), "labels": torch.tensor([0])}
    far = dict(labelled, ignore=torch.tensor([[80.0, 80, 110, 110]]))
    on_label = dict(labelled, ignore=torch.tensor([[10.0, 10, 40, 40]]))
    loss = {name: model(image, [t])["classification"].item()
            for name, t in [("plain", labelled), ("far", far), ("on_label", on_label)]}
    assert loss["far"] < loss["plain"]  # the background anchors on the unlabelled object no longer count
    assert loss["on_label"] == pytest.approx(loss["plain"])  # anchors that match a label stay positives
    reg = model(image, [far])["bbox_regression"].item()
    assert reg == pytest.approx(model(image, [labelled])["bbox_regression"].item())


def _prediction(path: str, xyxy, scores) -> ImageAnnotation:
    return ImageAnnotation(path, 200, 160, ("RBC", "WBC", "Platelets"), task="blood",
                           boxes=Boxes(np.asarray(xyxy, float), [0] * len(xyxy), np.asarray(scores, float)))


def test_only_confident_detections_off_every_label_become_ignore_regions(monkeypatch, tmp_path):
    img = coloured(160, 200, [], [])
    load = _loader(img, [(10, 10, 50, 50)], [1])  # a labelled WBC
    found = [(12, 11, 50, 52), (100, 100, 140, 140), (150, 20, 190, 60), (30, 30, 70, 70)]
    scores = [0.9, 0.8, 0.3, 0.7]  # on the label / unlabelled / too weak / overlapping the label by IoU 0.14
    monkeypatch.setattr(unlabelled, "predict_image", lambda p, im, path: _prediction(path, found, scores))
    got = unlabelled.unlabelled_detections(object(), [load, load], 0.5)
    assert list(got) == ["a.png"]  # one image, though two crops of it train
    assert got["a.png"] == [[100.0, 100.0, 140.0, 140.0], [30.0, 30.0, 70.0, 70.0]]


def test_ignore_regions_are_computed_once_per_run_and_tied_to_their_model(monkeypatch, tmp_path):
    calls = []

    class FakePredictor:
        config = DetectorConfig(num_classes=3)
        model_version = "blood-default@3"

    monkeypatch.setattr(unlabelled.Predictor, "load", classmethod(lambda cls, m, b, d: FakePredictor()))
    monkeypatch.setattr(unlabelled, "unlabelled_detections",
                        lambda p, loaders, s, progress=None: calls.append(s) or {"a.png": [[1.0, 2, 3, 4]]})
    first = unlabelled.ignore_regions("blood-default", [], 0.5, tmp_path, "cpu")
    again = unlabelled.ignore_regions("blood-default", [], 0.5, tmp_path, "cpu")
    assert calls == [0.5] and np.array_equal(first["a.png"], again["a.png"])
    saved = json.loads((tmp_path / unlabelled.IGNORE_FILE).read_text())
    assert saved["version"] == "blood-default@3"
    with pytest.raises(CellCounterError, match="remove it or use another --out"):
        unlabelled.ignore_regions("blood-default", [], 0.3, tmp_path, "cpu")


def test_a_fine_tune_ignores_what_its_start_model_finds_unlabelled(tmp_path, monkeypatch):
    start = tiny("blood", tmp_path / "start", max_steps=2)
    model_dir = list(iter_training(start))[-1].model_dir
    cfg = tiny("blood", tmp_path / "ft", max_steps=2, init=model_dir, ignore_unlabelled=model_dir, base_check=0,
               hflip=0, vflip=0, mosaic_p=0)
    found = {}  # a start model this short finds nothing; what a good one would find, per image
    monkeypatch.setattr(unlabelled, "unlabelled_detections", lambda p, loaders, s, progress=None: found.update(
        {ld()[1].image_path: [[0.0, 0.0, 60.0, 60.0]] for ld in loaders}) or found)
    seen = []
    real = build._ignoring
    monkeypatch.setattr(build, "_ignoring", lambda ig, a, m, t: seen.append(ig.tolist()) or real(ig, a, m, t))
    kinds = [e.kind for e in iter_training(cfg)]
    assert kinds[0] == "prepare" and kinds[-1] == "done"
    saved = json.loads((tmp_path / "ft" / "blood" / unlabelled.IGNORE_FILE).read_text())
    assert saved["model"] == model_dir and len(saved["regions"]) == 4  # the 4 training images
    scale = cfg.min_size / 480  # BCCD's 480 x 640 images trained at 96 x 128
    assert len(seen) == 4 and all(s == [[0.0, 0.0, 60 * scale, 60 * scale]] for s in seen)
