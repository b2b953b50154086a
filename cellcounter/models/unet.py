"""A U-Net that predicts, per pixel, a foreground probability and a normalised distance to the object's edge.

Instances are not in the network: :mod:`cellcounter.inference.instances` splits the foreground by a
watershed seeded where the distance map is high (the DIST / StarDist / HoVer-Net family of nucleus
segmenters, all trained from scratch). Like torchvision's detection models, the module returns its losses
when given targets in training mode and its outputs otherwise, so one training loop serves every kind.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cellcounter.models.config import UNetConfig

MAPS = ("foreground", "distance")  # the output channels, in order


def _norm(channels: int) -> nn.GroupNorm:
    # GroupNorm: trained from scratch and fine-tuned on a handful of crops, batch statistics would be noise
    return nn.GroupNorm(min(8, channels), channels)


class ResBlock(nn.Module):
    """Two 3x3 convolutions with GroupNorm and a residual connection (1x1 where the width changes)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(cin, cout, 3, padding=1, bias=False), _norm(cout), nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False), _norm(cout))
        self.skip = nn.Identity() if cin == cout else nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), _norm(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + self.skip(x))


class UNet(nn.Module):
    """``forward(x)``: ``x`` is ``(B, 3, H, W)`` RGB in [0, 1] with ``H`` and ``W`` multiples of
    ``2 ** depth``; returns ``(B, 2, H, W)`` probabilities (foreground, distance) in eval mode, or the
    loss dict when ``targets`` (``{"foreground", "distance", "weight"}``, each ``(B, H, W)``) are given."""

    def __init__(self, cfg: UNetConfig) -> None:
        super().__init__()
        self.cfg = cfg
        widths = [cfg.width * 2 ** min(i, 3) for i in range(cfg.depth + 1)]
        self.register_buffer("mean", torch.tensor(cfg.image_mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(cfg.image_std, dtype=torch.float32).view(1, 3, 1, 1))
        self.down = nn.ModuleList([ResBlock(3, widths[0])] + [ResBlock(widths[i], widths[i + 1])
                                                              for i in range(cfg.depth)])
        self.up = nn.ModuleList([ResBlock(widths[i + 1] + widths[i], widths[i]) for i in reversed(range(cfg.depth))])
        self.head = nn.Conv2d(widths[0], len(MAPS), 1)

    @property
    def multiple(self) -> int:
        return 2 ** self.cfg.depth

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.mean) / self.std
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        for block, skip in zip(self.up, reversed(skips[:-1])):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = block(torch.cat([x, skip], 1))
        return self.head(x)

    def forward(self, x: torch.Tensor, targets: dict[str, torch.Tensor] | None = None):
        out = self.logits(x)
        if targets is None:
            return torch.sigmoid(out)
        return unet_losses(out, targets)


def unet_losses(logits: torch.Tensor, targets: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Foreground: cross entropy plus soft Dice; distance: squared error on the sigmoid, weighted towards
    object pixels (where the map decides how touching objects are split)."""
    fg, dist = logits[:, 0], logits[:, 1]
    t_fg, t_dist, w = targets["foreground"], targets["distance"], targets["weight"]
    bce = (F.binary_cross_entropy_with_logits(fg, t_fg, reduction="none") * w).sum() / w.sum().clamp(min=1)
    p = torch.sigmoid(fg)
    inter = (p * t_fg * w).sum()
    dice = 1 - (2 * inter + 1) / ((p * w).sum() + (t_fg * w).sum() + 1)
    dw = w * (1 + 2 * t_fg)
    mse = (((torch.sigmoid(dist) - t_dist) ** 2) * dw).sum() / dw.sum().clamp(min=1)
    return {"foreground_bce": bce, "foreground_dice": dice, "distance_mse": 4 * mse}


__all__ = ["MAPS", "UNet", "unet_losses"]
