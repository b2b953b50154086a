"""Turning pixels into model inputs, identically for the torch and ONNX Runtime backends."""

from __future__ import annotations

import numpy as np
from PIL import Image

from cellcounter.errors import CellCounterError


def _rgb(image: np.ndarray) -> np.ndarray:
    a = np.asarray(image)
    if a.ndim == 2:
        a = np.stack([a] * 3, axis=-1)
    elif a.ndim == 3 and a.shape[2] == 4:
        a = a[:, :, :3]
    elif a.ndim == 3 and a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    if a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"expected a grey or RGB image, got shape {a.shape}")
    return a


def intensity_levels(image: np.ndarray) -> tuple[float, float] | None:
    """The ``(low, high)`` an image is stretched between to [0, 1]: its 0.1 and 99.9 percentiles (NaN left
    out), or ``None`` where the scaling is fixed (8-bit, boolean, float already in [0, 1]).

    Computed once per image (from the whole image or a subsampled view of it) and handed to
    :func:`to_float_rgb` for every tile, so that tiled and whole-image predictions see the same pixels.
    """
    a = np.asarray(image)
    if a.dtype == np.uint8 or a.dtype == np.bool_ or not a.size:
        return None
    f = a.astype(np.float32)
    finite = f[np.isfinite(f)]
    if not finite.size:
        return (0.0, 1.0)
    if np.issubdtype(a.dtype, np.floating) and 0.0 <= finite.min() and finite.max() <= 1.0:
        return None
    lo, hi = (float(v) for v in np.percentile(finite, (0.1, 99.9)))
    return (lo, hi if hi > lo else lo + 1.0)


def check_has_pixels(image: np.ndarray) -> None:
    """Refuse an image without one finite pixel (an all-NaN float TIFF): a model would still answer, with a
    confident grade of a black square."""
    a = np.asarray(image)
    if np.issubdtype(a.dtype, np.floating) and a.size and not np.isfinite(a).any():
        raise CellCounterError("the image holds no finite pixel values (all NaN or infinite): nothing to predict")


def to_float_rgb(image: np.ndarray, levels: tuple[float, float] | None | str = "auto") -> np.ndarray:
    """``(H, W, 3)`` float32 in [0, 1] from grey, RGB or RGBA pixels of any integer or float type.

    8-bit images are divided by 255. Deeper images (16-bit fluorescence, say) rarely use their full
    range, so they are stretched between ``levels`` (by default this image's own
    :func:`intensity_levels`). NaN and infinite pixels become 0.
    """
    a = _rgb(image)
    if a.dtype == np.uint8:
        return a.astype(np.float32) / 255.0
    if a.dtype == np.bool_:
        return a.astype(np.float32)
    if isinstance(levels, str):
        levels = intensity_levels(image)  # of the pixels as given: a grey image's levels, not its RGB copy's
    f = np.nan_to_num(a.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    if levels is None:
        return np.clip(f, 0.0, 1.0)
    lo, hi = levels
    return np.clip((f - np.float32(lo)) / np.float32(hi - lo), 0.0, 1.0).astype(np.float32, copy=False)


def to_chw(image: np.ndarray) -> np.ndarray:
    """``(3, H, W)`` float32, contiguous (detectors and segmenters normalise inside the model)."""
    return np.ascontiguousarray(to_float_rgb(image).transpose(2, 0, 1))


def _grader_geometry(h: int, w: int, size: int) -> tuple[float, int, int, int, int]:
    """Scale, resized height and width, and the crop's top-left corner in the resized image."""
    scale = size / min(h, w)
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    return scale, nh, nw, (nh - size) // 2, (nw - size) // 2


_DARK = 12  # 8-bit level below which a fundus photo's surround counts as black


def fundus_box(rgb: np.ndarray, level: int = _DARK) -> tuple[int, int, int, int]:
    """``(x1, y1, x2, y2)`` of the fundus in a photo: the rows and columns brighter than its black surround.

    The whole image when nothing stands out (a photo without a black border, or a blank one).
    """
    h, w = rgb.shape[:2]
    lit = rgb.max(axis=2) > level
    cols = np.flatnonzero(lit.sum(axis=0) > 0.02 * h)
    rows = np.flatnonzero(lit.sum(axis=1) > 0.02 * w)
    if len(cols) < 0.1 * w or len(rows) < 0.1 * h:
        return 0, 0, w, h
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def local_contrast(view: np.ndarray, sigma: float) -> np.ndarray:
    """Subtract the local average colour (a Gaussian of ``sigma`` px), as fundus graders do: lesions stand out
    whatever the illumination and pigmentation; the black surround stays mid-grey."""
    from scipy.ndimage import gaussian_filter

    blur = gaussian_filter(view, sigma=(sigma, sigma, 0), mode="nearest")
    out = np.clip(4.0 * (view - blur) + 0.5, 0.0, 1.0)
    out[view.max(axis=2) <= _DARK / 255] = 0.5
    return out.astype(np.float32)


def grader_view(image: np.ndarray, cfg) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """What a grader looks at before its centre crop, the same for training, prediction and heat maps.

    Returns ``(view, box)``: ``view`` is ``(H, W, 3)`` float32 in [0, 1] whose shorter side is
    ``cfg.input_size`` (the fundus cropped out of its black border first when ``cfg.fundus_crop``,
    the local average subtracted when ``cfg.local_contrast`` > 0), and ``box`` is the part of the
    image it shows, ``x1, y1, x2, y2`` in image pixels.
    """
    rgb = (to_float_rgb(image) * 255.0 + 0.5).astype(np.uint8)
    h, w = rgb.shape[:2]
    x1, y1, x2, y2 = fundus_box(rgb) if cfg.fundus_crop else (0, 0, w, h)
    part = rgb[y1:y2, x1:x2]
    size = cfg.input_size
    _, nh, nw, _, _ = _grader_geometry(part.shape[0], part.shape[1], size)
    view = np.asarray(Image.fromarray(part).resize((nw, nh), Image.BILINEAR), dtype=np.float32) / 255.0
    if cfg.local_contrast > 0:
        view = local_contrast(view, cfg.local_contrast * size)
    return view, (float(x1), float(y1), float(x2), float(y2))


def grader_crop_xyxy(box: tuple[float, float, float, float], cfg) -> tuple[float, float, float, float]:
    """The part of the image the grader sees (its centre crop), ``x1, y1, x2, y2`` in image pixels, from the
    ``box`` :func:`grader_view` returned."""
    x1, y1, x2, y2 = box
    size = cfg.input_size
    scale, _, _, r0, c0 = _grader_geometry(round(y2 - y1), round(x2 - x1), size)
    return x1 + c0 / scale, y1 + r0 / scale, x1 + (c0 + size) / scale, y1 + (r0 + size) / scale


def view_input(view: np.ndarray, cfg) -> np.ndarray:
    """``(1, 3, size, size)``: a :func:`grader_view` centre-cropped (no distortion) and normalised."""
    size = cfg.input_size
    r0, c0 = (view.shape[0] - size) // 2, (view.shape[1] - size) // 2
    crop = view[r0:r0 + size, c0:c0 + size]
    crop = (crop - np.asarray(cfg.image_mean, np.float32)) / np.asarray(cfg.image_std, np.float32)
    return np.ascontiguousarray(crop.transpose(2, 0, 1)[None])


def grader_input(image: np.ndarray, cfg) -> np.ndarray:
    """What the grader is fed for ``image``: :func:`view_input` of its :func:`grader_view`."""
    return view_input(grader_view(image, cfg)[0], cfg)


def resize_scale(height: int, width: int, min_size: int, max_size: int) -> float:
    """torchvision's policy: shorter side to ``min_size`` unless the longer side would pass ``max_size``.

    ``min_size <= 0`` keeps the native resolution (scale 1).
    """
    if min_size <= 0:
        return 1.0
    return min(min_size / min(height, width), max_size / max(height, width))


def _bilinear_taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each output index, the two input indices and the weight of the second, as torch's bilinear
    ``interpolate`` (``align_corners=False``, no antialias) takes them."""
    src = (np.arange(n_out, dtype=np.float32) + np.float32(0.5)) * np.float32(n_in / n_out) - np.float32(0.5)
    src = np.maximum(src, 0)
    i0 = np.minimum(src.astype(np.int64), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    return i0, i1, (src - i0).astype(np.float32)


def resize_bilinear(stack: np.ndarray, height: int, width: int) -> np.ndarray:
    """``(C, H, W)`` float planes resized to ``(C, height, width)`` by bilinear interpolation, pixel centres
    aligned and no antialias: torch's ``F.interpolate(mode="bilinear", align_corners=False)``, in numpy so
    prediction needs no torch (one resize for every backend)."""
    stack = np.asarray(stack, np.float32)
    r0, r1, wr = _bilinear_taps(stack.shape[1], height)
    c0, c1, wc = _bilinear_taps(stack.shape[2], width)
    # whole rows gathered, then whole columns of the transposed result: 4x faster than indexing columns
    rows = np.take(stack, r0, axis=1)
    rows *= (1 - wr)[None, :, None]
    rows += np.take(stack, r1, axis=1) * wr[None, :, None]
    cols = np.ascontiguousarray(rows.transpose(0, 2, 1))
    out = np.take(cols, c0, axis=1)
    out *= (1 - wc)[None, :, None]
    out += np.take(cols, c1, axis=1) * wc[None, :, None]
    return np.ascontiguousarray(out.transpose(0, 2, 1))


def detection_input(image: np.ndarray, min_size: int, max_size: int) -> tuple[np.ndarray, float]:
    """``(3, h, w)`` float32 resized by the detection resize policy, and the scale applied."""
    chw = to_chw(image)
    scale = resize_scale(chw.shape[1], chw.shape[2], min_size, max_size)
    if abs(scale - 1.0) < 1e-6:
        return chw, 1.0
    h, w = max(1, round(chw.shape[1] * scale)), max(1, round(chw.shape[2] * scale))
    return resize_bilinear(chw, h, w), scale
