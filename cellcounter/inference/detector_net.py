"""A RetinaNet split in two: the network, which every backend runs, and its post-processing, run the same way
after any of them.

The network (backbone, FPN, heads) is what costs: it is what is exported to ONNX, quantised to int8 and
compiled by OpenVINO. Anchors, box decoding, per-level top-k, the score threshold and NMS are torchvision
RetinaNet's own code, run in torch outside the graph; a graph holding them could not be quantised (the
calibrator stopped on NMS) and ran them slower than torch does.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torchvision.models.detection.image_list import ImageList

PAD = 32  # the FPN's coarsest stride that the backbone's levels divide without remainder


def network_input(chw: np.ndarray, mean, std) -> np.ndarray:
    """``(1, 3, H, W)`` float32: ``chw`` (RGB in [0, 1], resized) normalised, then zero-padded at the bottom and
    right to multiples of :data:`PAD`, as torchvision's detection transform does."""
    h, w = chw.shape[1:]
    out = np.zeros((1, 3, math.ceil(h / PAD) * PAD, math.ceil(w / PAD) * PAD), np.float32)
    m = np.asarray(mean, np.float32)[:, None, None]
    s = np.asarray(std, np.float32)[:, None, None]
    out[0, :, :h, :w] = (chw - m) / s
    return out


class DetectorNetwork(nn.Module):
    """RetinaNet's network: a normalised, padded batch in, class logits ``(N, anchors, C)`` and box deltas
    ``(N, anchors, 4)`` for every anchor of every level out. Shares its modules with ``model``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.backbone = model.backbone
        self.head = model.head

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = list(self.backbone(x).values())
        out = self.head(features)
        return out["cls_logits"], out["bbox_regression"]


def level_sizes(height: int, width: int, levels: int = 5) -> list[tuple[int, int]]:
    """The feature map sizes of P3 to P7 for a padded input: each stride-2 step rounds up."""
    sizes = []
    h, w = height, width
    for step in range(2 + levels):  # stem (x4 in two steps), then P3 (x8) ... P7 (x128)
        h, w = math.ceil(h / 2), math.ceil(w / 2)
        if step >= 2:
            sizes.append((h, w))
    return sizes


class DetectorPostprocess:
    """torchvision RetinaNet's inference tail over the network's outputs: anchors for the padded size, box
    decoding, per-level top-k above the score threshold, per-class NMS, boxes clipped to the image."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model  # its anchor generator, box coder and thresholds (no weights are used)

    @torch.inference_mode()
    def __call__(self, cls_logits: np.ndarray, bbox_regression: np.ndarray, padded: tuple[int, int],
                 image: tuple[int, int]) -> dict[str, np.ndarray]:
        logits = torch.from_numpy(np.ascontiguousarray(cls_logits, np.float32))
        deltas = torch.from_numpy(np.ascontiguousarray(bbox_regression, np.float32))
        sizes = level_sizes(*padded)
        features = [torch.empty((1, 0, h, w)) for h, w in sizes]
        images = ImageList(torch.empty((1, 0, *padded)), [tuple(image)])
        anchors = self.model.anchor_generator(images, features)
        per_location = sum(h * w for h, w in sizes)
        if logits.shape[1] % per_location:
            raise ValueError(f"the network gave {logits.shape[1]} anchors for a {padded[1]} x {padded[0]} input, "
                             f"not a multiple of its {per_location} locations")
        a = logits.shape[1] // per_location
        counts = [h * w * a for h, w in sizes]
        heads = {"cls_logits": list(logits.split(counts, dim=1)), "bbox_regression": list(deltas.split(counts, dim=1))}
        split_anchors = [list(x.split(counts)) for x in anchors]
        (det,) = self.model.postprocess_detections(heads, split_anchors, images.image_sizes)
        return {k: v.numpy() for k, v in det.items()}
