"""Overlay PNGs a person can look at: boxes, mask outlines and fills, the grade, on the image."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from cellcounter.annotations import ImageAnnotation
from cellcounter.fileutil import atomic_write_with
from cellcounter.inference.preprocess import to_float_rgb

PALETTE = [(255, 59, 48), (0, 122, 255), (255, 204, 0), (52, 199, 89), (175, 82, 222), (255, 149, 0)]
MAX_SIDE = 2048


def render_overlay(image: np.ndarray, ann: ImageAnnotation, score_threshold: float | None = None) -> Image.Image:
    rgb = (to_float_rgb(image) * 255).astype(np.uint8)
    if ann.masks is not None and len(ann.masks):
        lab = ann.masks.label_image
        keep = ann.masks.above(score_threshold)
        colour_of = np.zeros((int(lab.max()) + 1, 3), np.uint8)
        for k, c, ok in zip(ann.masks.ids, ann.masks.classes, keep):
            if ok:
                colour_of[k] = PALETTE[int(c) % len(PALETTE)]
        fill = colour_of[lab]
        inside = fill.any(axis=2)
        rgb[inside] = (0.6 * rgb[inside] + 0.4 * fill[inside]).astype(np.uint8)
        edge = (ndimage.grey_erosion(lab, size=3) != lab) & inside
        rgb[edge] = fill[edge]
    im = Image.fromarray(rgb)
    scale = min(1.0, MAX_SIDE / max(im.size))
    if scale < 1.0:
        im = im.resize((round(im.width * scale), round(im.height * scale)), Image.BILINEAR)
    draw = ImageDraw.Draw(im)
    b = ann.boxes
    for i in np.nonzero(b.above(score_threshold))[0]:
        x1, y1, x2, y2 = (float(v) * scale for v in b.xyxy[i])
        colour = PALETTE[int(b.classes[i]) % len(PALETTE)]
        draw.rectangle([x1, y1, x2, y2], outline=colour, width=2)
        label = ann.class_names[int(b.classes[i])]
        if not np.isnan(b.scores[i]):
            label += f" {b.scores[i]:.2f}"
        draw.text((x1 + 2, y1 + 1), label, fill=colour)
    for (r, c), k in zip(ann.points.rc * scale, ann.points.classes):
        draw.ellipse([c - 4, r - 4, c + 4, r + 4], fill=PALETTE[int(k) % len(PALETTE)])
    if ann.grade is not None:
        name = ann.class_names[ann.grade.value] if ann.grade.value < len(ann.class_names) else str(ann.grade.value)
        text = f"grade {ann.grade.value}: {name}"
        if ann.grade.probabilities is not None:
            text += f" (p={ann.grade.probabilities[ann.grade.value]:.2f})"
        draw.rectangle([0, 0, 12 + 7 * len(text), 22], fill=(0, 0, 0))
        draw.text((6, 5), text, fill=(255, 255, 255))
    return im


def save_overlay(path: str | Path, image: np.ndarray, ann: ImageAnnotation,
                 score_threshold: float | None = None) -> Path:
    im = render_overlay(image, ann, score_threshold)
    atomic_write_with(path, lambda tmp: im.save(tmp, format="PNG"))
    return Path(path)
