"""The augmentations torchvision lacks: Mosaic and GridMask; and the DropBlock schedule on an FPN level.

Everything else (flips, colour jitter, crops, resizes, rotations) is
torchvision.transforms.v2 acting on tv_tensors, so boxes and masks follow the
pixels without code of ours.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn
from torchvision import tv_tensors
from torchvision.ops import DropBlock2d
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F


class GridMask(v2.Transform):
    """Blank a rotated grid of squares in the image (Chen et al. 2020); boxes and masks are left as they are.

    Each grid cell has side ``d`` drawn from ``[d_min, d_max]``; the blanked square in it has side
    ``(1 - ratio) * d`` (``ratio`` is the kept fraction of each cell's side).
    """

    _transformed_types = (tv_tensors.Image,)

    def __init__(self, p: float = 0.5, ratio: float = 0.5, rotate: float = 0.0, d_min: int = 32, d_max: int = 96):
        super().__init__()
        self.p, self.ratio, self.rotate, self.d_min, self.d_max = p, ratio, rotate, d_min, d_max

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        apply = bool(torch.rand(()) < self.p)
        d = int(torch.randint(self.d_min, self.d_max + 1, ()))
        return {"apply": apply, "d": d, "dx": int(torch.randint(0, d, ())), "dy": int(torch.randint(0, d, ())),
                "angle": float(torch.empty(()).uniform_(-self.rotate, self.rotate)) if self.rotate else 0.0}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if not params["apply"]:
            return inpt
        h, w = inpt.shape[-2:]
        mask = grid_mask(h, w, params["d"], self.ratio, params["dx"], params["dy"], params["angle"])
        return tv_tensors.wrap(inpt * mask.to(inpt.dtype), like=inpt)


def grid_mask(h: int, w: int, d: int, ratio: float, dx: int, dy: int, angle: float) -> torch.Tensor:
    """``(H, W)`` of ones with zeros on the rotated grid of squares."""
    side = int(math.ceil(math.hypot(h, w)))
    ys = (torch.arange(side) + dy) % d
    xs = (torch.arange(side) + dx) % d
    keep = int(round(ratio * d))
    blank = (ys[:, None] >= keep) & (xs[None, :] >= keep)
    m = (~blank).float()[None]
    if angle:
        m = F.rotate(m, angle)
    top, left = (side - h) // 2, (side - w) // 2
    return m[0, top:top + h, left:left + w]


def mosaic(samples: list[tuple[torch.Tensor, dict]], out_size: int, rng: np.random.Generator,
           min_visible: float = 0.25) -> tuple[torch.Tensor, dict]:
    """Four ``(image, target)`` pairs into one ``out_size`` square image (Bochkovskiy et al. 2020).

    Each image is scaled to fit a ``2 * out_size`` canvas quadrant around a random centre, cropped to its
    quadrant, and the canvas scaled down to ``out_size``. Boxes are moved, clipped to their quadrant, and
    dropped when less than ``min_visible`` of their area survives. Targets carry ``boxes`` (x1 y1 x2 y2)
    and ``labels``.
    """
    s = out_size
    canvas = torch.zeros(3, 2 * s, 2 * s)
    cx, cy = int(rng.uniform(0.5 * s, 1.5 * s)), int(rng.uniform(0.5 * s, 1.5 * s))
    boxes, labels = [], []
    quads = [(0, 0, cx, cy), (cx, 0, 2 * s, cy), (0, cy, cx, 2 * s), (cx, cy, 2 * s, 2 * s)]
    for (img, tgt), (qx0, qy0, qx1, qy1) in zip(samples, quads):
        h, w = img.shape[-2:]
        scale = s / max(h, w)
        nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
        img = F.resize(img, [nh, nw], antialias=True)
        # anchor each image at the mosaic centre, on the side facing it
        ox = qx1 - nw if qx0 == 0 else qx0
        oy = qy1 - nh if qy0 == 0 else qy0
        x0, y0 = max(ox, qx0), max(oy, qy0)
        x1, y1 = min(ox + nw, qx1), min(oy + nh, qy1)
        if x1 <= x0 or y1 <= y0:
            continue
        canvas[:, y0:y1, x0:x1] = img[:, y0 - oy:y1 - oy, x0 - ox:x1 - ox]
        b = tgt["boxes"].reshape(-1, 4).float() * scale + torch.tensor([ox, oy, ox, oy])
        area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
        clipped = torch.stack([b[:, 0].clamp(x0, x1), b[:, 1].clamp(y0, y1), b[:, 2].clamp(x0, x1),
                               b[:, 3].clamp(y0, y1)], dim=1)
        carea = (clipped[:, 2] - clipped[:, 0]) * (clipped[:, 3] - clipped[:, 1])
        ok = (carea > 0) & (carea >= min_visible * area.clamp(min=1e-6))
        boxes.append(clipped[ok])
        labels.append(tgt["labels"][ok])
    canvas = F.resize(canvas, [s, s], antialias=True)
    b = torch.cat(boxes) / 2 if boxes else torch.zeros(0, 4)
    lab = torch.cat(labels) if labels else torch.zeros(0, dtype=torch.int64)
    return canvas, {"boxes": b, "labels": lab}


FPN_LEVELS = {"P3": "0", "P4": "1", "P5": "2", "P6": "p6", "P7": "p7"}


class ScheduledDropBlock:
    """DropBlock on one FPN level of a RetinaNet, its drop probability rising linearly over training.

    Uses torchvision's ``DropBlock2d`` through a forward hook on the backbone; only active in training.
    """

    def __init__(self, model: nn.Module, level: str, block_size: int, max_prob: float, total_steps: int) -> None:
        if level not in FPN_LEVELS:
            raise ValueError(f"DropBlock level must be one of {', '.join(FPN_LEVELS)}, got {level!r}")
        self.key = FPN_LEVELS[level]
        self.max_prob = max_prob
        self.total = max(1, total_steps)
        self.block = DropBlock2d(p=0.0, block_size=block_size)
        self.handle = model.backbone.register_forward_hook(self._hook)

    def set_step(self, step: int) -> None:
        self.block.p = self.max_prob * min(1.0, step / self.total)

    def _hook(self, module: nn.Module, args, output):
        if not module.training or self.block.p <= 0:
            return output
        self.block.train()
        output[self.key] = self.block(output[self.key])
        return output

    def remove(self) -> None:
        self.handle.remove()
