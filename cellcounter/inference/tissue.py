"""Where the tissue is on a slide, from a low-resolution view: background tiles are never predicted.

Brightfield slides (H&E, smears) lie on bright, unsaturated glass; tissue is darker or coloured. The mask is
computed once per slide on a view of at most ``max_side`` pixels (the slide's own pyramid level when it has
one): saturation and darkness, an Otsu threshold between glass and tissue, small specks removed, and a margin
added so that cells on the tissue's edge keep their tile.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cellcounter.imagesource import ImageSource

GLASS_BRIGHTNESS = 200  # a view whose median is darker than this is not brightfield on glass: no skipping


@dataclass
class TissueMask:
    mask: np.ndarray  # (h, w) bool at the low resolution
    scale: float  # full-resolution pixels per mask pixel

    def covers(self, y0: int, y1: int, x0: int, x1: int) -> bool:
        """Whether the full-resolution region ``[y0:y1, x0:x1]`` touches tissue."""
        s = self.scale
        r0, r1 = int(np.floor(y0 / s)), int(np.ceil(y1 / s))
        c0, c1 = int(np.floor(x0 / s)), int(np.ceil(x1 / s))
        return bool(self.mask[max(0, r0):max(r0 + 1, r1), max(0, c0):max(c0 + 1, c1)].any())

    @property
    def fraction(self) -> float:
        return float(self.mask.mean()) if self.mask.size else 1.0


def _low_res_view(src: ImageSource, max_side: int) -> tuple[np.ndarray, float]:
    levels = src.display_levels(max_side) if src.lazy else [src.read()]
    view = levels[-1]
    for lv in levels:  # the largest level that fits, for the finest mask affordable
        if max(lv.shape[:2]) <= max_side:
            view = lv
            break
    arr = np.asarray(view[:, :] if not isinstance(view, np.ndarray) else view)
    if not src.lazy and max(arr.shape[:2]) > max_side:
        step = int(np.ceil(max(arr.shape[:2]) / max_side))
        arr = arr[::step, ::step]
    return arr, src.height / arr.shape[0]


def tissue_mask(src: ImageSource, max_side: int = 2048, margin_px: int = 64) -> TissueMask | None:
    """The tissue of an RGB brightfield image, or ``None`` when the image is not one (grey, fluorescence on a
    dark background, no clear glass): then every tile is predicted."""
    from scipy import ndimage
    from skimage.filters import threshold_otsu

    if len(src.shape) != 3 or src.shape[2] < 3 or src.dtype != np.uint8:
        return None
    rgb, scale = _low_res_view(src, max_side)
    rgb = rgb[..., :3].astype(np.float32)
    brightness = rgb.mean(axis=2)
    if np.median(brightness) < GLASS_BRIGHTNESS:
        return None
    saturation = rgb.max(axis=2) - rgb.min(axis=2)
    signal = saturation + (255.0 - brightness)  # coloured or dark: tissue; white and grey: glass
    if signal.max() - signal.min() < 20:
        return None  # one flat colour: nothing to tell apart
    tissue = signal > max(threshold_otsu(signal), 25.0)
    tissue = ndimage.binary_opening(tissue, iterations=1)
    labels, n = ndimage.label(tissue)
    if n:
        sizes = np.bincount(labels.ravel())
        tissue = (sizes >= 16)[labels] & tissue
    grow = max(1, int(np.ceil(margin_px / scale)))
    tissue = ndimage.binary_dilation(tissue, iterations=grow)
    return TissueMask(tissue, scale)


__all__ = ["TissueMask", "tissue_mask"]
