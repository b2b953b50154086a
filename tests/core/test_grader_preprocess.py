"""The grader's view of a fundus photo: cropped to the fundus, contrast-normalised, the same in training."""

from __future__ import annotations

import numpy as np
import torch

from cellcounter.inference.preprocess import fundus_box, grader_crop_xyxy, grader_input, grader_view
from cellcounter.models.config import GraderConfig


def _photo(h=300, w=500, cx=260, cy=150, r=140):
    yy, xx = np.mgrid[:h, :w]
    img = np.zeros((h, w, 3), np.uint8)
    inside = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
    img[inside] = (180, 90, 40)
    img[(yy - 150) ** 2 + (xx - 300) ** 2 <= 100] = (250, 240, 200)  # a bright lesion
    return img


def test_fundus_box_finds_the_bright_disc_and_falls_back_to_the_whole_image():
    x1, y1, x2, y2 = fundus_box(_photo())
    assert abs(x1 - 120) <= 3 and abs(x2 - 401) <= 3 and y1 <= 12 and y2 >= 288
    assert fundus_box(np.zeros((50, 80, 3), np.uint8)) == (0, 0, 80, 50)


def test_view_crops_the_fundus_and_the_crop_maps_back_into_it():
    cfg = GraderConfig(input_size=64, fundus_crop=True, local_contrast=1 / 30)
    img = _photo()
    view, box = grader_view(img, cfg)
    assert min(view.shape[:2]) == 64 and view.dtype == np.float32
    assert box[0] > 100 and box[2] < 420
    x1, y1, x2, y2 = grader_crop_xyxy(box, cfg)
    assert box[0] <= x1 < x2 <= box[2] + 1e-6
    # the black surround becomes mid-grey; flat fundus becomes about mid-grey; the lesion stands out
    assert abs(view[0, 0].mean() - 0.5) < 1e-6
    assert view.max() > 0.8
    assert grader_input(img, cfg).shape == (1, 3, 64, 64)


def test_training_sees_what_prediction_sees():
    from cellcounter.annotations import Grade, ImageAnnotation
    from training.config import TrainConfig
    from training.data import GradeDataset

    cfg_m = GraderConfig(input_size=64, fundus_crop=True, local_contrast=1 / 30)
    img = _photo()
    ann = ImageAnnotation(image_path="x.png", height=img.shape[0], width=img.shape[1], task="retinopathy",
                          class_names=["0", "1", "2", "3", "4"], grade=Grade(2))
    ds = GradeDataset([lambda: (img, ann)], TrainConfig(task="retinopathy"), False, cfg_m)
    x, g = ds[0]
    assert g == 2
    assert torch.allclose(x, torch.from_numpy(grader_input(img, cfg_m)[0]), atol=5e-3)
