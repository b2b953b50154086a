"""Instance label TIFFs: one integer image per image (0 background, k = instance k).

Compatible with napari's Labels layer and cellpose's ``*_masks.tif``. Classes,
scores and origins per instance travel in the TIFF's JSON description, which
other tools ignore; a plain label TIFF from elsewhere reads with every
instance in class 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import tifffile

from cellcounter.annotations import ImageAnnotation, InstanceMasks, Origin
from cellcounter.errors import FormatError
from cellcounter.fileutil import atomic_write_with
from cellcounter.formats._common import find_image, share_class_names, unique_stems, warn
from cellcounter.imageio import image_size, max_pixels

LABEL_SUFFIXES = ("_labels", "_masks", "_label", "_mask")


def label_tiff_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    files = sorted(
        f for f in path.iterdir()
        if f.suffix.lower() in (".tif", ".tiff") and any(f.stem.endswith(s) for s in LABEL_SUFFIXES)
    )
    if not files:
        raise FormatError(path, "no label TIFFs found (expected files named *_labels.tif or *_masks.tif)")
    return files


def _image_stem(label_path: Path) -> str:
    stem = label_path.stem
    for s in LABEL_SUFFIXES:
        if stem.endswith(s):
            return stem[: -len(s)]
    return stem


def read_label_tiff(path: str | Path, class_names: Sequence[str] | None = None) -> list[ImageAnnotation]:
    anns = [read_label_tiff_file(f) for f in label_tiff_files(Path(path))]
    return share_class_names(anns, class_names)


def read_label_tiff_file(path: Path) -> ImageAnnotation:
    try:
        with tifffile.TiffFile(path) as tif:
            shape = tif.series[0].shape
            if len(shape) >= 2 and int(np.prod(shape)) > max_pixels():  # a 271-byte file can claim 10^10 pixels
                raise FormatError(path, f"label image claims {' x '.join(map(str, shape))} pixels, more than the "
                                        f"{max_pixels() / 1e6:.0f} megapixels read into memory "
                                        "(CELLCOUNTER_MAX_PIXELS raises the limit)")
            lab = tif.series[0].asarray()
            try:
                meta = tif.shaped_metadata[0] if tif.shaped_metadata else {}
            except Exception as exc:  # noqa: BLE001 - damaged metadata costs the image's name, not the labels
                warn(path, f"its metadata is damaged and ignored ({type(exc).__name__}: {exc})")
                meta = {}
    except FormatError:
        raise
    except Exception as exc:  # noqa: BLE001 - reported with what failed
        raise FormatError(path, f"not a readable TIFF ({type(exc).__name__}: {exc})") from None
    while lab.ndim > 2 and lab.shape[0] == 1:  # leading page/channel axes of one; Y and X stay, even of size 1
        lab = lab[0]
    if lab.ndim == 3 and lab.shape[-1] == 1:
        lab = lab[..., 0]
    if lab.ndim != 2:
        raise FormatError(path, f"a label image must be 2-D, got shape {lab.shape}")
    if not np.issubdtype(lab.dtype, np.integer):
        if np.issubdtype(lab.dtype, np.floating) and np.all(np.mod(lab, 1) == 0) and lab.min() >= 0:
            if lab.max(initial=0) > np.iinfo(np.int32).max:  # before the cast, which would wrap it negative
                raise FormatError(path, f"label {lab.max():g} is too large")
            lab = lab.astype(np.int64)
        else:
            raise FormatError(path, f"a label image must hold whole numbers, got {lab.dtype} pixels")
    if lab.size and lab.min() < 0:
        raise FormatError(path, "a label image must not hold negative labels")
    if lab.max(initial=0) > np.iinfo(np.int32).max:
        raise FormatError(path, f"label {lab.max()} is too large")
    h, w = lab.shape
    meta = meta if isinstance(meta, dict) else {}
    image_name = meta.get("image")
    image_path = None
    if isinstance(image_name, str) and image_name:
        cand = path.parent / image_name
        image_path = cand if cand.is_file() else None
    stem = Path(image_name).stem if isinstance(image_name, str) and image_name else _image_stem(path)
    if image_path is None:
        image_path = find_image(path.parent, stem) or find_image(path.parent / "images", stem)
    if image_path is not None and image_path.resolve() != path.resolve():
        iw, ih = image_size(image_path)
        if (iw, ih) != (w, h):
            raise FormatError(path, f"label image is {w}x{h} but its image {image_path.name} is {iw}x{ih}")
    else:
        image_path = path.parent / (image_name if isinstance(image_name, str) and image_name else f"{stem}.png")
    ids = np.unique(lab)
    ids = ids[ids != 0]
    names = meta.get("class_names") or []
    n = len(ids)
    classes = scores = origins = None
    if "ids" in meta:
        try:
            meta_ids = np.asarray(meta["ids"], dtype=np.int64)
            order = {int(k): i for i, k in enumerate(meta_ids)}
            idx = np.array([order[int(k)] for k in ids], dtype=np.int64)
            classes = np.asarray(meta["classes"], dtype=np.int64)[idx]
            scores = np.asarray([np.nan if s is None else s for s in meta["scores"]], dtype=float)[idx]
            origins = np.asarray([Origin[o.upper()] for o in meta["origins"]], dtype=np.uint8)[idx]
        except (KeyError, ValueError, TypeError, IndexError, AttributeError) as exc:
            raise FormatError(path, f"inconsistent per-instance metadata ({type(exc).__name__}: {exc})") from None
        if len(classes) and (not isinstance(names, list) or classes.max() >= len(names) or classes.min() < 0):
            raise FormatError(path, "per-instance classes do not match class_names")
    if not names:
        names = ["object"] if n else []
    masks = InstanceMasks(lab.astype(np.int32), ids, classes, scores, origins)
    return ImageAnnotation(image_path=str(image_path), width=w, height=h, class_names=tuple(names), masks=masks,
                           task=meta.get("task") if isinstance(meta.get("task"), str) else None)


def write_label_tiff(anns: Sequence[ImageAnnotation], dst: str | Path) -> list[Path]:
    """One ``<stem>_labels.tif`` per image in folder ``dst`` (or ``dst`` itself for one image)."""
    dst = Path(dst)
    if dst.suffix.lower() in (".tif", ".tiff"):
        if len(anns) != 1:
            raise FormatError(dst, f"a single TIFF holds one image, not {len(anns)}; give a folder")
        targets = [dst]
    else:
        targets = [dst / f"{s}_labels.tif" for s in unique_stems(anns, dst)]
    payloads = []
    for a, target in zip(anns, targets):
        m = (a.masks if a.masks is not None else InstanceMasks.empty(a.height, a.width)).relabelled()
        dtype = np.uint16 if len(m) < 65535 else np.uint32
        meta = {
            "image": a.name,
            "task": a.task,
            "class_names": list(a.class_names),
            "ids": [int(k) for k in m.ids],
            "classes": [int(c) for c in m.classes],
            "scores": [None if np.isnan(s) else float(s) for s in m.scores],
            "origins": [Origin(int(o)).name.lower() for o in m.origins],
        }
        payloads.append((target, m.label_image.astype(dtype), meta))
    for target, data, meta in payloads:
        atomic_write_with(
            target, lambda tmp, d=data, md=meta: tifffile.imwrite(tmp, d, metadata=md, compression="zlib")
        )
    return targets
