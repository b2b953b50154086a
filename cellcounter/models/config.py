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
class UNetConfig:
    """A U-Net that maps pixels to a foreground probability and a distance-to-edge map; instances are split by
    a marker-controlled watershed (the DIST / StarDist / HoVer-Net family, trained from scratch)."""

    kind: Literal["unet"] = "unet"
    num_classes: int = 1
    width: int = 32  # channels of the first level; each deeper level doubles them, up to 8x
    depth: int = 4  # down-sampling steps: inputs are padded to a multiple of 2**depth
    fg_threshold: float = 0.5  # foreground probability that makes a pixel part of an object
    marker_threshold: float = 0.5  # normalised distance to the edge that seeds an object (splits touching ones)
    min_area: int = 12  # pixels: smaller objects are dropped
    flip_average: bool = False  # average the maps of the image and its three flips (4 passes, smoother outlines)
    tile_size: int = 1024  # larger images are predicted in tiles of this size
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


ModelConfig = DetectorConfig | SegmenterConfig | UNetConfig | GraderConfig
_KINDS: dict[str, type] = {"detector": DetectorConfig, "segmenter": SegmenterConfig, "unet": UNetConfig,
                           "grader": GraderConfig}
INSTANCE_KINDS = ("segmenter", "unet")  # model kinds whose predictions are instance masks
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
    defaults = cls()
    kwargs = {k: _checked(k, v, getattr(defaults, k)) for k, v in d.items()}
    cfg = cls(**kwargs)
    for name, (low, high) in _RANGES.items():
        value = getattr(cfg, name, None)
        for x in value if isinstance(value, tuple) else () if value is None else (value,):
            if not low <= x <= high:
                raise CellCounterError(f"architecture.{name} must be between {low} and {high}, got {value!r}")
    for name in ("image_mean", "image_std"):
        if len(getattr(cfg, name)) != 3:
            raise CellCounterError(f"architecture.{name} must hold 3 numbers (R, G, B), got {getattr(cfg, name)!r}")
    check_size(cfg)
    return cfg


#: the largest network a card may describe (1 GB of float32 weights): each setting within its range can still
#: multiply into one that fills the memory before its weights are even read
MAX_PARAMETERS = 250_000_000
_BACKBONE = {"resnet18": (11.2e6, (128, 256, 512)), "resnet34": (21.3e6, (128, 256, 512)),
             "resnet50": (23.5e6, (512, 1024, 2048))}


def estimated_parameters(cfg: ModelConfig) -> float:
    """About how many weights the network ``cfg`` describes has (within a few percent for the bundled ones)."""
    if cfg.kind == "unet":
        chans = [cfg.width * min(2 ** level, 8) for level in range(cfg.depth + 1)]
        enc = sum(9 * (c_in + c) * c for c_in, c in zip([3] + chans[:-1], chans))
        dec = sum(9 * (2 * c + c) * c for c in chans[:-1])
        return float(enc + dec)
    trunk, outs = _BACKBONE[cfg.backbone]
    if cfg.kind == "grader":
        return trunk + outs[-1] * cfg.num_classes
    c = cfg.fpn_channels
    fpn = sum(ch * c + 9 * c * c for ch in outs)
    if cfg.kind == "detector":
        anchors = max(1, len(cfg.anchor_scales) or 3) * max(1, len(cfg.aspect_ratios) or 3)
        head = 2 * cfg.head_convs * 9 * c * c + 9 * c * anchors * (cfg.num_classes + 4)
        return trunk + fpn + 2 * 9 * c * c + head
    box_head = c * 49 * cfg.representation_size + cfg.representation_size ** 2
    mask_head = 4 * 9 * c * c + 4 * c * c
    return trunk + fpn + 9 * c * c + box_head + mask_head


def check_size(cfg: ModelConfig) -> None:
    """Refuse, before building it, a network too large to be a real model of this app."""
    n = estimated_parameters(cfg)
    if n > MAX_PARAMETERS:
        raise CellCounterError(f"the network this card describes would have about {n / 1e6:,.0f} million weights "
                               f"(at most {MAX_PARAMETERS / 1e6:,.0f} million): a damaged or hostile card")


BACKBONES = ("resnet18", "resnet34", "resnet50")
_BIG = 1 << 16
# what a sane card may say; anything outside is a damaged or hostile card, refused before a model is built
_RANGES: dict[str, tuple[float, float]] = {
    "num_classes": (1, 1000), "anchor_sizes": (1, _BIG), "anchor_scales": (1e-3, 1e3), "aspect_ratios": (1e-3, 1e3),
    "focal_alpha": (0, 1), "focal_gamma": (0, 100), "prior_probability": (1e-9, 1 - 1e-9), "score_thresh": (0, 1),
    "nms_thresh": (0, 1), "topk_candidates": (1, 1_000_000), "detections_per_img": (1, 1_000_000),
    "rpn_pre_nms_top_n_test": (1, 1_000_000), "rpn_post_nms_top_n_test": (1, 1_000_000),
    "box_batch_size_per_image": (1, 100_000), "representation_size": (1, 65536), "min_size": (0, 8192),
    "max_size": (0, 8192), "fpn_channels": (1, 4096), "tile_size": (64, 8192), "head_convs": (0, 16),
    "mask_threshold": (0, 1), "input_size": (16, 4096), "dropout": (0, 0.99), "local_contrast": (0, 10),
    "image_mean": (-10, 10), "image_std": (1e-6, 10), "width": (1, 512), "depth": (1, 7),
    "fg_threshold": (0, 1), "marker_threshold": (0, 1), "min_area": (0, _BIG),
}


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _checked(name: str, v: Any, default: Any) -> Any:
    """``v`` as the type of the field's default, or an error naming the field and what it must be."""
    where = f"architecture.{name}"
    if name == "backbone":
        if v not in BACKBONES:
            raise CellCounterError(f"{where} must be one of {', '.join(BACKBONES)}, got {v!r}")
        return v
    if isinstance(default, bool):
        if not isinstance(v, bool):
            raise CellCounterError(f"{where} must be true or false, got {v!r}")
        return v
    if isinstance(default, int):
        if not (_is_number(v) and float(v).is_integer()):
            raise CellCounterError(f"{where} must be a whole number, got {v!r}")
        return int(v)
    if isinstance(default, float):
        if not _is_number(v):
            raise CellCounterError(f"{where} must be a number, got {v!r}")
        return float(v)
    if isinstance(default, tuple):
        if not isinstance(v, (list, tuple)) or not v or not all(_is_number(x) for x in v):
            raise CellCounterError(f"{where} must be a list of numbers, got {v!r}")
        whole = default and all(isinstance(x, int) for x in default)
        if whole and not all(float(x).is_integer() for x in v):
            raise CellCounterError(f"{where} must be whole numbers, got {v!r}")
        return tuple(int(x) if whole else float(x) for x in v)
    if isinstance(default, str) and not isinstance(v, str):
        raise CellCounterError(f"{where} must be text, got {v!r}")
    return v


def detector_anchor_sizes(cfg: DetectorConfig) -> tuple[tuple[float, ...], ...]:
    """Per-level anchor sizes: each level's base size times every scale."""
    return tuple(tuple(base * s for s in cfg.anchor_scales) for base in cfg.anchor_sizes)


def prior_bias(prior_probability: float) -> float:
    """The classification bias that makes every anchor start at ``prior_probability`` foreground."""
    return -math.log((1 - prior_probability) / prior_probability)


__all__ = ["BACKBONES", "DetectorConfig", "SegmenterConfig", "UNetConfig", "GraderConfig", "INSTANCE_KINDS",
           "ModelConfig", "config_from_dict", "config_to_dict", "detector_anchor_sizes", "prior_bias", "field",
           "TASK_KIND_TO_MODEL"]
