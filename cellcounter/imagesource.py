"""An opened image: its shape, pixel size and a way to read it, whole or by region.

What opens it (:mod:`cellcounter.imageio` for PNG, JPEG and TIFF, :mod:`cellcounter.slides` for vendor
slides) fills the fields; everything that reads pixels goes through this one type.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cellcounter.errors import ImageReadError


@dataclass
class ImageSource:
    """``shape`` is ``(height, width)`` or ``(height, width, channels)``; ``_array`` a numpy array, numpy
    memmap, zarr array or slide level ``(H, W[, C])``, read only where asked when ``lazy``."""

    path: Path
    shape: tuple[int, ...]
    dtype: np.dtype
    pixel_size_um: float | None
    n_pages: int
    _array: Any
    lazy: bool
    #: arrays for display from the file's own pyramid (full resolution first), when it has one
    levels: list = field(default_factory=list)
    #: what :meth:`close` closes: the file, its zarr stores, the slide
    closers: list = field(default_factory=list)
    #: called before a decoding error is raised (a lazy TIFF settles zarr's pending reads)
    settle: Callable[[], None] | None = None
    objective_power: float | None = None  # slides: the scanner's objective
    vendor: str | None = None  # slides: OpenSlide's name for the format

    @classmethod
    def from_array(cls, path: str | Path, image: np.ndarray, pixel_size_um: float | None = None) -> ImageSource:
        """An image already in memory."""
        return cls(Path(path), tuple(image.shape), image.dtype, pixel_size_um, 1, image, lazy=False)

    @property
    def height(self) -> int:
        return int(self.shape[0])

    @property
    def width(self) -> int:
        return int(self.shape[1])

    def read_region(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """Pixels ``[y0:y1, x0:x1]`` (clipped to the image) as RGB or grey, never RGBA."""
        y0, x0 = max(0, y0), max(0, x0)
        y1, x1 = min(self.height, y1), min(self.width, x1)
        return drop_alpha(self._decoded((slice(y0, y1), slice(x0, x1))))

    def _decoded(self, key) -> np.ndarray:
        """``self._array[key]`` in memory; a tile that cannot be decoded (damaged compressed data in a lazily
        read TIFF or slide) is an :class:`ImageReadError` naming the file, not a decoder's traceback."""
        try:
            return np.asarray(self._array[key])
        except (ImageReadError, MemoryError, KeyboardInterrupt):
            raise
        except Exception as exc:  # noqa: BLE001 - codecs, zarr and OpenSlide each raise their own
            if self.settle is not None:
                self.settle()
            raise ImageReadError(self.path, f"damaged: part of its image data cannot be decoded "
                                            f"({type(exc).__name__}: {exc})") from None

    def read(self) -> np.ndarray:
        """The whole image in memory (avoid for lazy images: use :meth:`read_region`)."""
        return self.read_region(0, self.height, 0, self.width)

    def display_levels(self, max_side: int = 2048) -> list:
        """Arrays for display, full resolution first: the image itself when in memory; for a large lazy
        TIFF, the file's own pyramid levels when it has them (OME/SVS sub-resolutions, read tile by tile),
        else views of level 0 taking every 2nd, 4th, ... pixel down to ``max_side``."""
        if not self.lazy:
            return [self.read()]
        if self.levels:
            return list(self.levels)
        out = [self._array]
        step = 1
        while max(self.height, self.width) // step > max_side:
            step *= 2
            out.append(self._decoded((slice(None, None, step), slice(None, None, step))))
        return out

    def close(self) -> None:
        for closer in self.closers:
            closer.close()
        self.closers = []

    def __enter__(self) -> ImageSource:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def drop_alpha(a: np.ndarray) -> np.ndarray:
    if a.ndim == 3 and a.shape[2] == 4:
        return a[:, :, :3]
    if a.ndim == 3 and a.shape[2] == 2:  # grey + alpha
        return a[:, :, 0]
    return a


