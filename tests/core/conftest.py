"""Tiny randomly initialised models saved as model folders (no downloads)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cellcounter.models import DetectorConfig, GraderConfig, ModelCard, SegmenterConfig, build_model, save_model
from cellcounter.models.config import UNetConfig, config_to_dict

TINY = {
    # a 0.5 prior makes a random head fire, so there are detections to compare
    "detector": (DetectorConfig(min_size=192, max_size=256, prior_probability=0.5, score_thresh=0.3,
                                detections_per_img=40, fpn_channels=64), "blood", ["RBC", "WBC", "Platelets"]),
    "segmenter": (SegmenterConfig(backbone="resnet18", min_size=0, max_size=0, representation_size=64,
                                  score_thresh=0.0, detections_per_img=30, rpn_post_nms_top_n_test=300,
                                  rpn_pre_nms_top_n_test=300), "nuclei", ["nucleus"]),
    "unet": (UNetConfig(width=4, depth=2), "nuclei", ["nucleus"]),
    "grader": (GraderConfig(input_size=96), "retinopathy", ["No DR", "Mild", "Moderate", "Severe NPDR",
                                                            "Proliferative DR"]),
}


def make_tiny_model(kind: str, directory, seed: int = 0, task: str | None = None, class_names=None):
    torch.manual_seed(seed)
    cfg, default_task, default_names = TINY[kind]
    task, names = task or default_task, list(class_names or default_names)
    model = build_model(cfg)
    if kind == "detector":
        # an untrained head scores every anchor about the same, and ties make any two backends pick
        # different boxes; spread the scores as a trained model would
        torch.nn.init.normal_(model.head.classification_head.cls_logits.weight, std=0.05)
    card = ModelCard(f"tiny-{task}", task, names, config_to_dict(cfg))
    save_model(model, card, directory)
    return directory


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    return {kind: make_tiny_model(kind, root / kind) for kind in TINY}


@pytest.fixture
def rgb_image():
    rng = np.random.default_rng(0)
    img = (rng.random((200, 240, 3)) * 60 + 150).astype(np.uint8)
    for y, x in [(40, 50), (120, 160), (150, 60)]:
        img[y - 15:y + 15, x - 15:x + 15] = (120, 40, 140)
    return img


@pytest.fixture
def detector_copy(tiny_models, tmp_path):
    """A copy of the tiny detector whose card a test may edit."""
    import shutil

    dst = tmp_path / "m"
    shutil.copytree(tiny_models["detector"], dst)
    return dst

