"""Typed, JSON-serialisable architecture configurations of the three model kinds."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

from cellcounter.errors import CellCounterError

Backbone = Literal["resnet18", "resnet34", "resnet50"]

# The blood-cell study's extra small scale 2^(-1/3) in front of RetinaNet's usual three.
BLOOD_ANCHOR_SCALES = (2 ** (-1 / 3), 1.0, 2 ** (1 / 3), 2 ** (2 / 3))
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class DetectorConfig:
    """RetinaNet with a ResNet FPN backbone (P3-P7)."""

    kind: Literal["detector"] = "detector"
    backbone: Backbone = "resnet18"
    num_classes: int = 3
    anchor_sizes: tuple[int, ...] = (32, 64, 128, 256, 512)  # base size per pyramid level P3..P7
    anchor_scales: tuple[float, ...] = BLOOD_ANCHOR_SCALES
    aspect_ratios: tuple[float, ...] = (0.5, 1.0, 2.0)
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    prior_probability: float = 0.01
    score_thresh: float = 0.05
    nms_thresh: float = 0.5
    topk_candidates: int = 1000
    detections_per_img: int = 300
    min_size: int = 480
    max_size: int = 640
    fpn_channels: int = 256
    tile_size: int = 1024  # larger images are predicted in tiles of this size
    head_convs: int = 4
    frozen_bn: bool = True
    image_mean: tuple[float, ...] = IMAGENET_MEAN
    image_std: tuple[float, ...] = IMAGENET_STD


@dataclass
class SegmenterConfig:
    """Mask R-CNN with a ResNet FPN backbone; small anchors for nuclei and leaves."""

    kind: Literal["segmenter"] = "segmenter"
    backbone: Backbone = "resnet50"
    num_classes: int = 1
    anchor_sizes: tuple[int, ...] = (8, 16, 32, 64, 128)
    aspect_ratios: tuple[float, ...] = (0.5, 1.0, 2.0)
    score_thresh: float = 0.05
    nms_thresh: float = 0.5
    detections_per_img: int = 1000
    rpn_pre_nms_top_n_test: int = 2000
    rpn_post_nms_top_n_test: int = 2000
    box_batch_size_per_image: int = 512
    representation_size: int = 1024  # width of the box head's two FC layers
    fpn_channels: int = 256  # also the width of the mask head
    tile_size: int = 512  # larger images are predicted in tiles of this size (near the training crops)
    mask_threshold: float = 0.5
    min_size: int = 512
    max_size: int = 1024
    frozen_bn: bool = True
    image_mean: tuple[float, ...] = IMAGENET_MEAN
    image_std: tuple[float, ...] = IMAGENET_STD


@dataclass
class GraderConfig:
    """A ResNet image classifier (DR grades 0-4), fed a resized and centre-cropped image."""

    kind: Literal["grader"] = "grader"
    backbone: Backbone = "resnet18"
    num_classes: int = 5
    input_size: int = 512
    dropout: float = 0.0
    fundus_crop: bool = False  # crop the photo to the fundus (its bright part) before resizing
    local_contrast: float = 0.0  # subtract the local average colour, Gaussian sigma as a fraction of input_size
    image_mean: tuple[float, ...] = IMAGENET_MEAN
    image_std: tuple[float, ...] = IMAGENET_STD


ModelConfig = DetectorConfig | SegmenterConfig | GraderConfig
_KINDS: dict[str, type] = {"detector": DetectorConfig, "segmenter": SegmenterConfig, "grader": GraderConfig}
TASK_KIND_TO_MODEL = {"boxes": "detector", "masks": "segmenter", "grade": "grader"}


def config_to_dict(cfg: ModelConfig) -> dict[str, Any]:
    return asdict(cfg)


def config_from_dict(d: dict[str, Any]) -> ModelConfig:
    """Rebuild a config from a card, checking names and types so a bad card fails clearly."""
    if not isinstance(d, dict) or d.get("kind") not in _KINDS:
        raise CellCounterError(f"unknown model kind {d.get('kind') if isinstance(d, dict) else d!r}")
    cls = _KINDS[d["kind"]]
    known = {f.name: f for f in fields(cls)}
    unknown = set(d) - set(known)
    if unknown:
        raise CellCounterError(f"unknown {d['kind']} setting(s): {', '.join(sorted(unknown))}")
    kwargs = {}
    for k, v in d.items():
        default = getattr(cls(), k)
        if isinstance(default, tuple):
            v = tuple(v)
        elif isinstance(default, bool):
            v = bool(v)
        elif isinstance(default, float) and isinstance(v, int):
            v = float(v)
        kwargs[k] = v
    cfg = cls(**kwargs)
    if getattr(cfg, "num_classes", 1) < 1:
        raise CellCounterError("num_classes must be at least 1")
    return cfg


def detector_anchor_sizes(cfg: DetectorConfig) -> tuple[tuple[float, ...], ...]:
    """Per-level anchor sizes: each level's base size times every scale."""
    return tuple(tuple(base * s for s in cfg.anchor_scales) for base in cfg.anchor_sizes)


def prior_bias(prior_probability: float) -> float:
    """The classification bias that makes every anchor start at ``prior_probability`` foreground."""
    return -math.log((1 - prior_probability) / prior_probability)


__all__ = ["DetectorConfig", "SegmenterConfig", "GraderConfig", "ModelConfig", "config_from_dict",
           "config_to_dict", "detector_anchor_sizes", "prior_bias", "field", "TASK_KIND_TO_MODEL"]
