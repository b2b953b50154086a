"""Synthetic Arabidopsis rosettes with colour-coded leaf masks, as the leaf study trained on.

Elliptical leaves radiate from a centre with golden-angle phyllotaxis, younger
(inner, smaller) leaves drawn over older ones, on textured soil. Every image is
fully determined by its seed. Masks are written colour-coded, one colour per
leaf, and read back through the core's colour-mask importer.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from cellcounter.annotations import ImageAnnotation, InstanceMasks
from cellcounter.fileutil import atomic_write_with
from cellcounter.formats.cvppp import instance_palette
from cellcounter.tasks import TASKS

GOLDEN_ANGLE = math.pi * (3 - math.sqrt(5))
MIN_VISIBLE_PIXELS = 20


def _soil(rng: np.random.Generator, size: int) -> np.ndarray:
    base = np.array([96, 72, 48], np.float32) * rng.uniform(0.7, 1.2)
    noise = ndimage.gaussian_filter(rng.normal(0, 1, (size, size)), rng.uniform(1.0, 3.0))
    grain = rng.normal(0, 1, (size, size)) * 0.35
    tex = (noise / (noise.std() + 1e-6) + grain)[..., None] * 14.0
    pebbles = ndimage.gaussian_filter((rng.random((size, size)) > 0.997).astype(np.float32), 1.2)[..., None]
    return np.clip(base + tex + pebbles * 400.0, 0, 255)


def make_rosette(seed: int, size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """An RGB rosette image and its instance label image (leaves numbered 1..N, all visible)."""
    rng = np.random.default_rng(seed)
    img = _soil(rng, size)
    lab = np.zeros((size, size), np.int32)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    cy, cx = size / 2 + rng.normal(0, size * 0.04, 2)
    n = int(rng.integers(5, 21))
    max_len = size * rng.uniform(0.22, 0.4)
    hue_shift = rng.uniform(-0.15, 0.15)
    start_angle = rng.uniform(0, 2 * math.pi)
    for k in range(n):  # oldest (outer, longest) first, so younger leaves lie on top
        age = 1.0 - k / max(1, n)
        length = max_len * (0.35 + 0.65 * age) * rng.uniform(0.85, 1.15)
        width = length * rng.uniform(0.3, 0.5)
        theta = start_angle + k * GOLDEN_ANGLE + rng.normal(0, 0.1)
        # the leaf is an ellipse whose near end sits close to the centre
        mx, my = cx + math.cos(theta) * length * 0.55, cy + math.sin(theta) * length * 0.55
        c, s = math.cos(theta), math.sin(theta)
        u = (xx - mx) * c + (yy - my) * s
        v = -(xx - mx) * s + (yy - my) * c
        inside = (u / (length / 2)) ** 2 + (v / (width / 2)) ** 2 <= 1.0
        if not inside.any():
            continue
        green = np.array([60, 150, 50], np.float32) * rng.uniform(0.75, 1.2)
        green[0] += hue_shift * 120
        shade = 0.75 + 0.35 * np.clip(1 - (u / (length / 2)) ** 2, 0, 1)  # lighter mid-blade
        vein = np.exp(-(v / (width * 0.06 + 1e-3)) ** 2) * 25.0
        leaf = green[None, None, :] * shade[..., None] + vein[..., None]
        img[inside] = np.clip(leaf[inside], 0, 255)
        lab[inside] = k + 1
    # a soft dark rim where leaves overlap soil or each other
    edges = ndimage.grey_erosion(lab, size=3) != lab
    img[edges] *= 0.8
    # leaves hidden below others, or left as slivers, are not leaves a person could count
    ids, counts = np.unique(lab[lab > 0], return_counts=True)
    small = ids[counts < MIN_VISIBLE_PIXELS]
    lab[np.isin(lab, small)] = 0
    remaining = np.unique(lab[lab > 0])
    lut = np.zeros(n + 1, np.int32)
    lut[remaining] = np.arange(1, len(remaining) + 1)
    return img.astype(np.uint8), lut[lab]


def rosette_annotation(seed: int, size: int = 256, name: str | None = None) -> tuple[np.ndarray, ImageAnnotation]:
    img, lab = make_rosette(seed, size)
    ann = ImageAnnotation(name or f"rosette_{seed:06d}.png", size, size, TASKS["leaves"].class_names,
                          task="leaves", masks=InstanceMasks(lab))
    return img, ann


VALIDATION_SEED = 999_999_000  # the fixed validation set: rosettes VALIDATION_SEED + i


def write_rosettes(folder: str | Path, count: int, seed: int = 0, size: int = 256) -> list[Path]:
    """Write ``rosette_NNNNNN.png`` and ``rosette_NNNNNN_mask.png`` (colour-coded) pairs."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(count):
        img, lab = make_rosette(seed + i, size)
        stem = f"rosette_{seed + i:06d}"
        colours = instance_palette(int(lab.max()), seed=seed + i)[lab]
        atomic_write_with(folder / f"{stem}.png", lambda t, a=img: Image.fromarray(a).save(t, format="PNG"))
        atomic_write_with(folder / f"{stem}_mask.png", lambda t, a=colours: Image.fromarray(a).save(t, format="PNG"))
        out.append(folder / f"{stem}.png")
    return out


def main(argv=None) -> int:
    """``python -m training.synthetic_leaves OUT``: write rosettes with colour-coded masks (CVPPP-like).

    ``--validation`` writes the fixed validation set that leaves training uses (``--synthetic-val`` of them),
    for ``cellcounter evaluate --task leaves --data OUT``.
    """
    import argparse

    ap = argparse.ArgumentParser(prog="python -m training.synthetic_leaves", description=main.__doc__)
    ap.add_argument("out", type=Path)
    ap.add_argument("--count", type=int, default=100)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--validation", action="store_true", help=f"seeds from {VALIDATION_SEED} (training's val set)")
    args = ap.parse_args(argv)
    written = write_rosettes(args.out, args.count, VALIDATION_SEED if args.validation else args.seed, args.size)
    print(f"wrote {len(written)} rosettes to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
