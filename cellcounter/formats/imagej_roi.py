"""ImageJ / Fiji ROI sets (``<image stem>_rois.zip``, as the ROI Manager saves them), read and written with
roifile.

Boxes become rectangle ROIs, instance masks traced polygons (their outline: an ImageJ polygon has no holes),
click marks one multi-point ROI per class. Each ROI carries its class in its name (``RBC-0001``) and in its
properties (``class``, ``score``, ``origin``), which ImageJ keeps. On import rectangles are boxes, polygons,
freehand, traced and oval ROIs masks, points marks; a ROI's class is its ``class`` property, else its name up
to the first ``-``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cellcounter.annotations import ImageAnnotation, Origin, Points
from cellcounter.errors import FormatError
from cellcounter.fileutil import atomic_write_with
from cellcounter.formats._common import find_image, output_targets, warn
from cellcounter.formats.qupath import objects_annotation
from cellcounter.imageio import MAX_SIDE, image_size

SUFFIX = "_rois"


def _roi_module():
    import roifile

    return roifile


# --- writing ----------------------------------------------------------------------------------------


def _props(name: str, score: float, origin: int) -> dict:
    props = {"class": name, "origin": Origin(int(origin)).name.lower()}
    if score is not None and np.isfinite(score):
        props["score"] = f"{float(score):.6g}"
    return props


def _entry(class_name: str) -> str:
    """A class name as it may appear in a ROI's name, which ImageJ also uses as the zip entry's file name:
    no folders, no '..' (a class called ``../../x`` must not unpack outside the folder). The class itself
    travels in the ROI's properties, unchanged."""
    safe = re.sub(r"[^\w+ -]+", "_", class_name).strip(" _") or "object"
    return safe[:80]


def rois(ann: ImageAnnotation) -> list:
    """The image's objects as roifile ``ImagejRoi`` objects."""
    rf = _roi_module()
    out = []
    for i in range(len(ann.boxes)):
        x1, y1, x2, y2 = ann.boxes.xyxy[i]
        name = ann.class_names[int(ann.boxes.classes[i])]
        corners = np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]])
        roi = rf.ImagejRoi.frompoints(corners, name=f"{_entry(name)}-{i + 1:04d}")
        roi.roitype = rf.ROI_TYPE.RECT
        roi.left, roi.top = int(np.floor(x1)), int(np.floor(y1))
        roi.right, roi.bottom = int(np.ceil(x2)), int(np.ceil(y2))
        roi.properties = _props(name, ann.boxes.scores[i], ann.boxes.origins[i])
        out.append(roi)
    if ann.masks is not None and len(ann.masks):
        from scipy import ndimage
        from shapely.geometry import shape

        from cellcounter.formats.qupath import _mask_geometry

        lab = ann.masks.label_image
        slices = ndimage.find_objects(lab)
        for i, k in enumerate(ann.masks.ids):
            sl = slices[int(k) - 1] if int(k) - 1 < len(slices) else None
            geom = None if sl is None else _mask_geometry(lab[sl] == k, sl[0].start, sl[1].start)
            if geom is None:
                continue
            poly = shape(geom)
            poly = max(getattr(poly, "geoms", [poly]), key=lambda p: p.area)  # its largest piece, no holes
            name = ann.class_names[int(ann.masks.classes[i])]
            roi = rf.ImagejRoi.frompoints(np.asarray(poly.exterior.coords)[:-1], name=f"{_entry(name)}-{int(k):04d}")
            roi.roitype = rf.ROI_TYPE.POLYGON
            roi.properties = _props(name, ann.masks.scores[i], ann.masks.origins[i])
            out.append(roi)
    for k, name in enumerate(ann.class_names):
        sel = ann.points.classes == k
        if sel.any():
            rc = ann.points.rc[sel]
            roi = rf.ImagejRoi.frompoints(rc[:, ::-1] + 0.5, name=f"{_entry(name)}-marks")  # mark at the pixel's centre
            roi.roitype = rf.ROI_TYPE.POINT
            roi.properties = {"class": name, "origin": "human"}
            out.append(roi)
    return out


def write_imagej_rois(anns: Sequence[ImageAnnotation], dst: Path) -> list[Path]:
    """``<stem>_rois.zip`` per image in folder ``dst`` (or ``dst`` itself, a ``.zip``, for one image)."""
    rf = _roi_module()
    dst = Path(dst)
    targets = output_targets(anns, dst, (".zip",), "one ROI set", lambda stem: dst / f"{stem}{SUFFIX}.zip")
    sets = [rois(a) for a in anns]  # all before writing
    for t, roiset in zip(targets, sets):
        if not roiset:
            raise FormatError(t, "no objects to write: an ImageJ ROI set cannot be empty")
    for t, roiset in zip(targets, sets):
        atomic_write_with(t, lambda tmp, r=roiset: rf.roiwrite(tmp, r, mode="w"))
    return targets


# --- reading ----------------------------------------------------------------------------------------


def _prop(roi, key: str) -> str | None:
    try:
        value = roi.properties.get(key)
    except Exception:  # noqa: BLE001 - a damaged props field costs the properties, not the ROI
        return None
    return None if value is None else str(value)


def _class_of(roi) -> str:
    name = _prop(roi, "class")
    if name:
        return name
    name = roi.name or ""
    return name.split("-")[0] if "-" in name else name


def _score(roi) -> float:
    try:
        v = float(_prop(roi, "score") or "nan")
    except ValueError:
        return np.nan
    return v if np.isfinite(v) and 0 <= v <= 1 else np.nan


def _image_for(path: Path) -> Path | None:
    stem = path.stem.removesuffix(SUFFIX)
    found = find_image(path.parent, stem) or find_image(path.parent / "images", stem)
    if found is None and path.stem.lower() == "roiset":  # the ROI Manager's default name: the folder's one image
        from cellcounter.imageio import IMAGE_SUFFIXES

        images = [f for f in path.parent.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file()]
        found = images[0] if len(images) == 1 else None
    return found


def read_roi_file(path: Path, class_names: Sequence[str] | None = None) -> ImageAnnotation:
    rf = _roi_module()
    try:
        loaded = rf.roiread(path, maxsize=64 << 20)
    except Exception as exc:  # noqa: BLE001 - roifile raises many kinds on damaged files
        raise FormatError(path, f"not a readable ImageJ ROI file ({type(exc).__name__}: {exc})") from None
    found = loaded if isinstance(loaded, list) else [loaded]
    image = _image_for(path)
    if image is None:
        raise FormatError(path, f"no image named {path.stem.removesuffix(SUFFIX)}.* beside it")
    width, height = image_size(image)
    names = list(class_names) if class_names else []
    boxes, outlines, marks = [], [], []
    for n, roi in enumerate(found):
        where = f"ROI {n + 1} ({roi.name or 'unnamed'})"
        name = _class_of(roi) or (names[0] if names else "object")
        if name not in names:
            if class_names:
                raise FormatError(path, f"{where}: class {name!r} is not one of {', '.join(class_names)}")
            names.append(name)
        cls = names.index(name)
        score = _score(roi)
        origin_text = (_prop(roi, "origin") or "human").upper()
        origin = Origin[origin_text] if origin_text in Origin.__members__ else Origin.HUMAN
        coords = np.asarray(roi.coordinates(), dtype=np.float64).reshape(-1, 2)
        if coords.size and (not np.isfinite(coords).all() or np.abs(coords).max() > MAX_SIDE):
            raise FormatError(path, f"{where}: coordinates outside any image")
        t = roi.roitype
        if roi.composite:
            warn(path, f"{where}: a composite (shape) ROI; its outline is not read")
        elif t == rf.ROI_TYPE.RECT:
            boxes.append(((roi.left, roi.top, roi.right, roi.bottom), cls, score, origin))
        elif t in (rf.ROI_TYPE.POLYGON, rf.ROI_TYPE.FREEHAND, rf.ROI_TYPE.TRACED, rf.ROI_TYPE.OVAL):
            if len(coords) >= 3:
                outlines.append((coords, cls, score, origin))
        elif t == rf.ROI_TYPE.POINT:
            marks += [((y - 0.5, x - 0.5), cls, origin) for x, y in coords]
        else:
            warn(path, f"{where}: a {t.name.lower()} ROI is not an object cellcounter holds; skipped")
    ann = objects_annotation(path, image, width, height, names, boxes,
                             [([[coords]], cls, score, origin) for coords, cls, score, origin in outlines])
    if marks:
        ann.points = Points(np.array([m[0] for m in marks]), [m[1] for m in marks], [m[2] for m in marks])
    return ann


def roi_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    files = sorted(f for f in path.iterdir() if f.suffix.lower() in (".zip", ".roi"))
    if not files:
        raise FormatError(path, "no ImageJ ROI sets (*_rois.zip, RoiSet.zip or *.roi)")
    return files


def read_imagej_rois(path: str | Path, class_names: Sequence[str] | None = None) -> list[ImageAnnotation]:
    return [read_roi_file(f, class_names) for f in roi_files(Path(path))]


__all__ = ["read_imagej_rois", "rois", "write_imagej_rois"]
