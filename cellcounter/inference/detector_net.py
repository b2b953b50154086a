"""A RetinaNet's network alone, as every backend runs it and as it is exported to ONNX.

Its post-processing (anchors, box decoding, top-k, NMS) runs after it in numpy, the same after every
backend: :mod:`cellcounter.inference.detector_post`. A graph holding that tail could not be quantised (the
calibrator stopped on NMS) and ran it slower than outside.
"""

from __future__ import annotations

import torch
from torch import nn


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
