"""Whole-slide images in vendor formats through OpenSlide (the ``openslide-bin`` wheel: nothing to install by
hand): Aperio SVS, Hamamatsu NDPI/VMS, MIRAX MRXS, Leica SCN, Ventana BIF, Philips and generic tiled TIFF.

A slide opens as an :class:`cellcounter.imagesource.ImageSource` like any image, read region by region at its
own pyramid levels, with microns per pixel and the objective power from the file; the app, ``info``,
``predict`` and the tiled predictor use it unchanged. Plain and OME-TIFFs keep the tifffile path.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cellcounter.errors import ImageReadError
from cellcounter.imagesource import ImageSource

# vendor whole-slide formats, read through OpenSlide; plain and OME-TIFF stay with tifffile (cellcounter.imageio)
SLIDE_SUFFIXES = (".svs", ".ndpi", ".vms", ".vmu", ".mrxs", ".scn", ".bif", ".svslide")


class SlideLevel:
    """One pyramid level of a slide as a read-only ``(H, W, 3)`` uint8 array: slicing reads only the region.

    Transparent pixels (outside the scanned area) come out white, as on glass.
    """

    def __init__(self, slide, level: int) -> None:
        self.slide, self.level = slide, level
        w, h = slide.level_dimensions[level]
        self.shape = (int(h), int(w), 3)
        self.dtype = np.dtype(np.uint8)
        self.ndim = 3
        self.downsample = float(slide.level_downsamples[level])

    @property
    def size(self) -> int:
        return self.shape[0] * self.shape[1] * 3

    def __len__(self) -> int:
        return self.shape[0]

    def __array__(self, dtype=None, copy=None):
        out = self[:, :]
        return out if dtype is None else out.astype(dtype)

    def __getitem__(self, key) -> np.ndarray:
        if not isinstance(key, tuple):
            key = (key,)
        key = key + (slice(None),) * (3 - len(key))
        ys, xs, cs = key
        if not isinstance(ys, slice) or not isinstance(xs, slice):
            raise IndexError("a slide level is read by rectangular regions (slices)")
        y0, y1, ystep = ys.indices(self.shape[0])
        x0, x1, xstep = xs.indices(self.shape[1])
        h, w = max(0, y1 - y0), max(0, x1 - x0)
        if h == 0 or w == 0:
            return np.zeros((h, w, 3), np.uint8)[::ystep, ::xstep][..., cs]
        origin = (int(round(x0 * self.downsample)), int(round(y0 * self.downsample)))  # level-0 coordinates
        rgba = np.asarray(self.slide.read_region(origin, self.level, (w, h)))
        alpha = rgba[..., 3:4].astype(np.float32) / 255.0
        rgb = (rgba[..., :3] * alpha + 255 * (1 - alpha)).round().astype(np.uint8)
        return rgb[::ystep, ::xstep][..., cs]


def is_slide(path: str | Path) -> bool:
    return Path(path).suffix.lower() in SLIDE_SUFFIXES


def open_slide(path: str | Path):
    """A slide as a lazy :class:`ImageSource` (level 0 for reading, every level for display)."""
    p = Path(path)
    try:
        import openslide
    except ImportError:  # pragma: no cover - a dependency; an installation without it says so
        raise ImageReadError(p, "reading slide formats needs openslide-python and openslide-bin") from None
    try:
        slide = openslide.OpenSlide(str(p))
    except (openslide.OpenSlideError, OSError, ValueError) as exc:
        raise ImageReadError(p, f"not a slide OpenSlide can read ({type(exc).__name__}: {exc})") from None
    props = slide.properties
    try:
        mpp = float(props.get(openslide.PROPERTY_NAME_MPP_X) or "nan")
    except ValueError:
        mpp = float("nan")
    levels = [SlideLevel(slide, k) for k in range(slide.level_count)]
    power = props.get(openslide.PROPERTY_NAME_OBJECTIVE_POWER)
    return ImageSource(p, levels[0].shape, levels[0].dtype, mpp if np.isfinite(mpp) and mpp > 0 else None, 1,
                       levels[0], lazy=True, levels=levels, closers=[slide],
                       objective_power=float(power) if power and power.replace(".", "", 1).isdigit() else None,
                       vendor=props.get(openslide.PROPERTY_NAME_VENDOR))


__all__ = ["SLIDE_SUFFIXES", "SlideLevel", "is_slide", "open_slide"]
