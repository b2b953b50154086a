"""DSB 2018 layout: ``<id>/images/<id>.png`` plus ``<id>/masks/*.png``, one binary PNG per instance."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cellcounter.annotations import ImageAnnotation, InstanceMasks
from cellcounter.errors import FormatError, ImageReadError
from cellcounter.formats._common import warn
from cellcounter.imageio import IMAGE_SUFFIXES, image_size, read_image
from cellcounter.tasks import TASKS


def is_dsb_sample(folder: Path) -> bool:
    return (folder / "images").is_dir() and (folder / "masks").is_dir()


def dsb_samples(path: Path) -> list[Path]:
    """Sample folders under ``path``: ``path`` itself, its children, or ``path/stage1_train``'s children."""
    if is_dsb_sample(path):
        return [path]
    root = path / "stage1_train" if (path / "stage1_train").is_dir() else path
    samples = sorted(d for d in root.iterdir() if d.is_dir() and is_dsb_sample(d)) if root.is_dir() else []
    if not samples:
        raise FormatError(path, "no DSB samples found (expected <id>/images/<id>.png and <id>/masks/*.png)")
    return samples


def read_dsb(path: str | Path, class_names=None) -> list[ImageAnnotation]:
    names = tuple(class_names) if class_names else TASKS["nuclei"].class_names
    return [read_dsb_sample(s, names) for s in dsb_samples(Path(path))]


def read_dsb_sample(folder: Path, class_names: tuple[str, ...]) -> ImageAnnotation:
    images = sorted(f for f in (folder / "images").iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise FormatError(folder / "images", "no image file in the sample's images/ folder")
    image_path = images[0]
    width, height = image_size(image_path)
    mask_files = sorted(f for f in (folder / "masks").iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
    lab = np.zeros((height, width), dtype=np.int32)
    k = 0
    for f in mask_files:
        try:
            m = read_image(f)
        except ImageReadError:
            raise
        if m.ndim == 3:
            m = m.max(axis=2)
        if m.shape != (height, width):
            raise FormatError(f, f"mask is {m.shape[1]}x{m.shape[0]} but the image is {width}x{height}")
        on = m > 0
        if not on.any():
            warn(f, "empty mask skipped")
            continue
        overlap = on & (lab > 0)
        if overlap.any():
            warn(f, f"overlaps an earlier mask on {int(overlap.sum())} pixel(s); "
                    "those pixels stay with the earlier one")
            on &= ~overlap
            if not on.any():
                continue
        k += 1
        lab[on] = k
    return ImageAnnotation(
        image_path=str(image_path), width=width, height=height, class_names=class_names, task="nuclei",
        masks=InstanceMasks(lab, np.arange(1, k + 1)),
    )
