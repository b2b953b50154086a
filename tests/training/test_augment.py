"""Augmentations keep boxes and masks on the pixels they label."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision import tv_tensors

from cellcounter.annotations import Boxes, Grade, ImageAnnotation, InstanceMasks
from cellcounter.models import DetectorConfig, build_model
from tests.helpers import box_colour_ok, coloured
from training.augment import GridMask, ScheduledDropBlock, grid_mask, mosaic
from training.config import TrainConfig
from training.data import DetectionDataset, InstanceDataset


def test_mosaic_boxes_follow_their_pixels():
    rng = np.random.default_rng(0)
    samples = []
    for s in range(4):
        boxes = [(10 + 20 * s, 15, 60 + 20 * s, 70), (100, 90, 150, 140)]
        img = coloured(200, 240, boxes, [s, s])
        samples.append((img, {"boxes": torch.tensor(boxes, dtype=torch.float32), "labels": torch.tensor([s, s])}))
    for seed in range(5):
        img, tgt = mosaic(samples, 256, np.random.default_rng(seed))
        assert img.shape == (3, 256, 256)
        assert len(tgt["boxes"]) > 0 and (tgt["boxes"][:, 2:] > tgt["boxes"][:, :2]).all()
        assert (tgt["boxes"] >= 0).all() and (tgt["boxes"] <= 256).all()
        assert box_colour_ok(img, tgt["boxes"], tgt["labels"], min_frac=0.8)
    del rng


def test_gridmask_blanks_a_grid_and_leaves_boxes_alone():
    torch.manual_seed(0)
    img = tv_tensors.Image(torch.ones(3, 128, 160))
    boxes = tv_tensors.BoundingBoxes(torch.tensor([[10.0, 10, 50, 50]]), format="XYXY", canvas_size=(128, 160))
    out_img, out_boxes = GridMask(p=1.0, ratio=0.5, d_min=32, d_max=32)(img, boxes)
    assert torch.equal(out_boxes, boxes)
    blank = (out_img[0] == 0).float().mean()
    assert blank == pytest.approx(0.25, abs=0.05)  # (1 - ratio)^2 of each cell
    m = grid_mask(64, 64, 16, 0.5, 0, 0, 0.0)
    assert m.mean() == pytest.approx(0.75, abs=0.02)
    assert torch.equal(m[:48], m[16:])  # a grid of period d


def test_dropblock_probability_rises_linearly_and_only_in_training():
    model = build_model(DetectorConfig(min_size=64, max_size=64, fpn_channels=32))
    db = ScheduledDropBlock(model, "P3", block_size=3, max_prob=0.2, total_steps=100)
    db.set_step(50)
    assert db.block.p == pytest.approx(0.1)
    db.set_step(1000)
    assert db.block.p == pytest.approx(0.2)
    x = torch.rand(1, 3, 64, 64)
    model.train()
    torch.manual_seed(0)
    feats_train = model.backbone(x)["0"]
    model.eval()
    feats_eval = model.backbone(x)["0"]
    assert (feats_train == 0).float().mean() > (feats_eval == 0).float().mean()
    db.remove()
    with pytest.raises(ValueError):
        ScheduledDropBlock(model, "P9", 3, 0.1, 10)


def _loader(img, ann):
    return lambda: (img, ann)


def test_detection_dataset_flips_resizes_and_mosaics_keep_boxes_aligned():
    cfg = TrainConfig(min_size=96, max_size=128, hflip=0.5, vflip=0.5, brightness=0, contrast=0, saturation=0,
                      hue=0, mosaic_p=0.5, gridmask_p=0)
    loaders = []
    for s in range(5):
        boxes = [(5 + 10 * s, 10, 40 + 10 * s, 45), (80, 60, 120, 100)]
        img = (coloured(120, 160, boxes, [s % 4, (s + 1) % 4]).permute(1, 2, 0).numpy() * 255).astype(np.uint8)
        ann = ImageAnnotation("x.png", 160, 120, ("A", "B", "C", "D"),
                              boxes=Boxes(np.array(boxes, float), [s % 4, (s + 1) % 4]))
        loaders.append(_loader(img, ann))
    ds = DetectionDataset(loaders, cfg, train=True)
    for epoch in range(3):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            img, tgt = ds[i]
            assert min(img.shape[1:]) == 96 or max(img.shape[1:]) == 128
            assert box_colour_ok(img, tgt["boxes"], tgt["labels"], min_frac=0.75)
    a, b = ds[2], ds[2]
    assert torch.equal(a[0], b[0]) and torch.equal(a[1]["boxes"], b[1]["boxes"])  # seeded per sample


def test_instance_dataset_crops_keep_masks_and_boxes_consistent():
    lab = np.zeros((100, 120), np.int32)
    lab[10:40, 10:30] = 1
    lab[50:90, 60:110] = 2
    lab[0:8, 100:120] = 3
    img = np.zeros((100, 120, 3), np.uint8)
    img[lab > 0] = 255
    ann = ImageAnnotation("n.png", 120, 100, ("nucleus",), masks=InstanceMasks(lab))
    cfg = TrainConfig(min_size=0, random_crop=64, multiscale=(64, 96), saturation=0.3)
    ds = InstanceDataset([_loader(img, ann)], cfg, train=True)
    for epoch in range(8):
        ds.set_epoch(epoch)
        image, t = ds[0]
        assert len(t["masks"]) == len(t["boxes"]) == len(t["labels"]) and (t["labels"] == 1).all()
        for m, (x1, y1, x2, y2) in zip(t["masks"], t["boxes"].int().tolist()):
            ys, xs = torch.nonzero(m, as_tuple=True)
            assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (x1, y1, x2, y2)
            # mask pixels are the bright object pixels (edges blend a little after resizing)
            assert image[0][m.bool()].mean() > 0.6 and image[0][t["masks"].sum(0) == 0].mean() < 0.2


def test_training_sees_the_pixels_prediction_shows_the_model():
    """#33 point 2: one transform per model kind. A detector trains on images resized exactly as prediction
    resizes them (size, interpolation, no antialias), and a grader on the crop and normalisation prediction
    feeds it."""
    from cellcounter.inference.preprocess import detection_input, grader_input
    from cellcounter.models.config import GraderConfig
    from training.data import GradeDataset

    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (900, 1200, 3), dtype=np.uint8)
    ann = ImageAnnotation("x.png", 1200, 900, ("A",), boxes=Boxes(np.array([[100.0, 100, 300, 250]]), [0]))
    cfg = TrainConfig(min_size=600, max_size=700)
    shown, scale = detection_input(img, cfg.min_size, cfg.max_size)
    trained, target = DetectionDataset([_loader(img, ann)], cfg, train=False)[0]
    assert tuple(trained.shape) == shown.shape and np.abs(trained.numpy() - shown).max() < 1e-4  # antialias: 0.1
    assert np.allclose(target["boxes"].numpy(), ann.boxes.xyxy * scale, atol=0.5)

    mcfg = GraderConfig(input_size=64, local_contrast=0.1)
    graded = ImageAnnotation("x.png", 1200, 900, ("0", "1"), task="retinopathy", grade=Grade(1))
    sample, grade = GradeDataset([_loader(img, graded)], TrainConfig(), False, mcfg)[0]
    assert grade == 1 and sample.shape == (3, 64, 64)
    assert np.abs(sample.numpy() - grader_input(img, mcfg)[0]).max() < 0.02  # the view is cached at half precision
