"""Turning pixels into model inputs, identically for the torch and ONNX Runtime backends."""

from __future__ import annotations

import numpy as np
from PIL import Image


def to_float_rgb(image: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` float32 in [0, 1] from grey, RGB or RGBA pixels of any integer or float type.

    8-bit images are divided by 255. Deeper images (16-bit fluorescence, say) rarely use
    their full range, so they are stretched between their 0.1 and 99.9 percentiles.
    """
    a = np.asarray(image)
    if a.ndim == 2:
        a = np.stack([a] * 3, axis=-1)
    elif a.ndim == 3 and a.shape[2] == 4:
        a = a[:, :, :3]
    elif a.ndim == 3 and a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    if a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"expected a grey or RGB image, got shape {a.shape}")
    if a.dtype == np.uint8:
        return a.astype(np.float32) / 255.0
    if a.dtype == np.bool_:
        return a.astype(np.float32)
    f = a.astype(np.float32)
    if np.issubdtype(a.dtype, np.floating) and f.size and 0.0 <= f.min() and f.max() <= 1.0:
        return f
    lo, hi = np.percentile(f, (0.1, 99.9)) if f.size else (0.0, 1.0)
    if hi <= lo:
        hi = lo + 1.0
    return np.clip((f - lo) / (hi - lo), 0.0, 1.0)


def to_chw(image: np.ndarray) -> np.ndarray:
    """``(3, H, W)`` float32, contiguous (detectors and segmenters normalise inside the model)."""
    return np.ascontiguousarray(to_float_rgb(image).transpose(2, 0, 1))


def _grader_geometry(h: int, w: int, size: int) -> tuple[float, int, int, int, int]:
    """Scale, resized height and width, and the crop's top-left corner in the resized image."""
    scale = size / min(h, w)
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    return scale, nh, nw, (nh - size) // 2, (nw - size) // 2


def grader_crop_xyxy(h: int, w: int, size: int) -> tuple[float, float, float, float]:
    """The part of an ``h`` x ``w`` image the grader sees (its centre crop), in image pixels ``x1, y1, x2, y2``."""
    scale, _, _, y0, x0 = _grader_geometry(h, w, size)
    return x0 / scale, y0 / scale, (x0 + size) / scale, (y0 + size) / scale


def grader_input(image: np.ndarray, size: int, mean, std) -> np.ndarray:
    """``(1, 3, size, size)``: shorter side resized to ``size`` then centre-cropped (no distortion), normalised."""
    rgb = (to_float_rgb(image) * 255.0 + 0.5).astype(np.uint8)
    h, w = rgb.shape[:2]
    scale, nh, nw, y0, x0 = _grader_geometry(h, w, size)
    resized = np.asarray(Image.fromarray(rgb).resize((nw, nh), Image.BILINEAR), dtype=np.float32) / 255.0
    crop = resized[y0:y0 + size, x0:x0 + size]
    crop = (crop - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(crop.transpose(2, 0, 1)[None])


def resize_scale(height: int, width: int, min_size: int, max_size: int) -> float:
    """torchvision's policy: shorter side to ``min_size`` unless the longer side would pass ``max_size``.

    ``min_size <= 0`` keeps the native resolution (scale 1).
    """
    if min_size <= 0:
        return 1.0
    return min(min_size / min(height, width), max_size / max(height, width))


def detection_input(image: np.ndarray, min_size: int, max_size: int) -> tuple[np.ndarray, float]:
    """``(3, h, w)`` float32 resized by the detection resize policy, and the scale applied."""
    import torch
    import torch.nn.functional as F

    chw = to_chw(image)
    scale = resize_scale(chw.shape[1], chw.shape[2], min_size, max_size)
    if abs(scale - 1.0) < 1e-6:
        return chw, 1.0
    h, w = max(1, round(chw.shape[1] * scale)), max(1, round(chw.shape[2] * scale))
    t = F.interpolate(torch.from_numpy(chw)[None], size=(h, w), mode="bilinear", align_corners=False)[0]
    return np.ascontiguousarray(t.numpy()), scale
