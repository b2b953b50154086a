"""Training samples for the U-Net segmenter: crops of an image with its foreground and distance maps.

The maps are made once per image from its instance labels (:func:`instance_maps`), so a crop that cuts a
nucleus still sees the distance to the nucleus's real edge. Augmentation: scale jitter, a random crop,
flips and quarter turns (maps follow the pixels), stain jitter in HED space (the colour of H&E varies
between organs and labs), then brightness, contrast, saturation and hue.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from torchvision.transforms import v2

from cellcounter.inference.preprocess import to_float_rgb
from training.config import TrainConfig
from training.data import _colour, _Seeded


def instance_maps(label: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Foreground (0/1) and each object's distance to its own edge divided by its largest, as float32."""
    label = np.asarray(label)
    fg = (label > 0).astype(np.float32)
    dist = np.zeros(label.shape, np.float32)
    for k, sl in enumerate(ndimage.find_objects(label), start=1):
        if sl is None:
            continue
        y0, x0 = max(0, sl[0].start - 1), max(0, sl[1].start - 1)
        y1, x1 = min(label.shape[0], sl[0].stop + 1), min(label.shape[1], sl[1].stop + 1)
        own = label[y0:y1, x0:x1] == k
        d = ndimage.distance_transform_edt(np.pad(own, 1))[1:-1, 1:-1]  # the image border is an edge too
        top = d.max()
        if top > 0:
            region = dist[y0:y1, x0:x1]
            region[own] = (d[own] / top).astype(np.float32)
    return fg, dist


def hed_jitter(rgb: np.ndarray, rng: np.random.Generator, amount: float) -> np.ndarray:
    """Scale and shift the haematoxylin, eosin and DAB optical densities by up to ``amount`` (Tellez et al.)."""
    from skimage.color import hed2rgb, rgb2hed

    hed = rgb2hed(np.clip(rgb, 1e-6, 1))
    hed = hed * (1 + rng.uniform(-amount, amount, 3)) + rng.uniform(-amount, amount, 3) * 0.05
    return np.clip(hed2rgb(hed), 0, 1).astype(np.float32)


class DenseDataset(_Seeded):
    """``(image (3, S, S) in [0, 1], {"foreground", "distance", "weight"} each (S, S))``; ``weight`` is 0 on
    padding (an image smaller than the crop)."""

    def __init__(self, loaders, cfg: TrainConfig, train: bool) -> None:
        super().__init__(loaders, cfg, train)
        self.size = cfg.random_crop or 256
        self._maps: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self.colour = v2.Compose(_colour(cfg))

    def _targets(self, ann) -> tuple[np.ndarray, np.ndarray]:
        if ann.image_path not in self._maps:
            if ann.masks is None:
                shape = (ann.height, ann.width)
                self._maps[ann.image_path] = (np.zeros(shape, np.float32), np.zeros(shape, np.float32))
            else:
                self._maps[ann.image_path] = instance_maps(ann.masks.label_image)
        return self._maps[ann.image_path]

    def sample(self, i, rng):
        img, ann = self.loaders[i]()
        rgb = to_float_rgb(img)
        fg, dist = self._targets(ann)
        cfg, s = self.cfg, self.size
        scale = float(np.exp(rng.uniform(-1, 1) * np.log1p(cfg.scale_jitter))) if self.train else 1.0
        win = max(8, round(s / scale))
        h, w = fg.shape
        y0 = int(rng.integers(0, max(1, h - win + 1)))
        x0 = int(rng.integers(0, max(1, w - win + 1)))
        stack = np.concatenate([rgb, fg[..., None], dist[..., None], np.ones((h, w, 1), np.float32)], axis=2)
        crop = stack[y0:y0 + win, x0:x0 + win]
        if crop.shape[0] < win or crop.shape[1] < win:  # a small image: pad, and weigh the padding 0
            crop = np.pad(crop, ((0, win - crop.shape[0]), (0, win - crop.shape[1]), (0, 0)))
        t = torch.from_numpy(np.ascontiguousarray(crop.transpose(2, 0, 1)))
        if win != s:
            t = F.interpolate(t[None], size=(s, s), mode="bilinear", align_corners=False)[0]
        if self.train:
            if cfg.hflip and rng.random() < cfg.hflip:
                t = t.flip(2)
            if cfg.vflip and rng.random() < cfg.vflip:
                t = t.flip(1)
            if cfg.rot90:
                t = torch.rot90(t, int(rng.integers(0, 4)), (1, 2))
        image = t[:3]
        if self.train and cfg.stain_jitter:
            image = torch.from_numpy(hed_jitter(image.permute(1, 2, 0).numpy(), rng, cfg.stain_jitter)).permute(2, 0, 1)
        if self.train:
            image = self.colour(image)
        weight = (t[5] > 0.5).float()
        return image.contiguous(), {"foreground": (t[3] > 0.5).float() * weight, "distance": t[4] * weight,
                                    "weight": weight}


def collate_dense(batch):
    return (torch.stack([b[0] for b in batch]),
            {k: torch.stack([b[1][k] for b in batch]) for k in batch[0][1]})


__all__ = ["DenseDataset", "collate_dense", "hed_jitter", "instance_maps"]
