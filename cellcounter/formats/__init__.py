"""Label formats: one reader and one writer each, all going through :class:`ImageAnnotation`.

``read_labels(path)`` recognises a known file type or folder layout by itself;
``write_labels(anns, dst, fmt)`` checks that the target can hold the data before
writing anything.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cellcounter.annotations import Boxes, ImageAnnotation
from cellcounter.errors import FormatError, missing_reason
from cellcounter.fileutil import not_regular_reason
from cellcounter.formats._common import warn
from cellcounter.formats.aperio import read_aperio
from cellcounter.formats.coco import read_coco, write_coco
from cellcounter.formats.cvppp import read_colour_mask, read_cvppp, write_colour_mask, write_cvppp
from cellcounter.formats.dsb import is_dsb_sample, read_dsb
from cellcounter.formats.fiji_counter import read_fiji_counter, write_fiji_counter
from cellcounter.formats.grade_csv import read_grade_csv, write_counts_csv, write_grade_csv
from cellcounter.formats.imagej_roi import read_imagej_rois, write_imagej_rois
from cellcounter.formats.label_tiff import LABEL_SUFFIXES, read_label_tiff, write_label_tiff
from cellcounter.formats.qupath import read_qupath, write_qupath
from cellcounter.formats.voc import read_voc, write_voc
from cellcounter.formats.yolo import is_yolo_layout, read_yolo, write_yolo

Reader = Callable[..., list[ImageAnnotation]]
Writer = Callable[[Sequence[ImageAnnotation], Path], list[Path]]


@dataclass(frozen=True)
class LabelFormat:
    name: str
    description: str
    holds: frozenset[str]  # which of boxes, masks, points, grade the format can store
    reader: Reader | None
    writer: Writer | None


FORMATS: dict[str, LabelFormat] = {
    f.name: f
    for f in (
        LabelFormat("voc", "Pascal VOC XML boxes (LabelImg, BCCD)", frozenset({"boxes"}), read_voc, write_voc),
        LabelFormat("yolo", "YOLO layout: images/ + labels/*.txt + data.yaml (Ultralytics, Roboflow, CVAT)",
                    frozenset({"boxes"}), read_yolo, write_yolo),
        LabelFormat("coco", "COCO JSON: boxes, RLE/polygon masks, grades and points as attributes",
                    frozenset({"boxes", "masks", "points", "grade"}), read_coco, write_coco),
        LabelFormat("label-tiff", "instance label TIFF per image (napari, cellpose)", frozenset({"masks"}),
                    read_label_tiff, write_label_tiff),
        LabelFormat("dsb", "DSB 2018: images/ plus one PNG per instance in masks/ (import only)",
                    frozenset({"masks"}), read_dsb, None),
        LabelFormat("aperio", "Aperio ImageScope XML polygons, MoNuSeg (import only)", frozenset({"masks"}),
                    read_aperio, None),
        LabelFormat("cvppp", "CVPPP indexed label PNGs (plantNNN_label.png)", frozenset({"masks"}), read_cvppp,
                    write_cvppp),
        LabelFormat("colour-mask", "colour-coded instance mask PNG, one colour per instance",
                    frozenset({"masks"}), read_colour_mask, write_colour_mask),
        LabelFormat("grade-csv", "image-level grade CSV (IDRiD)", frozenset({"grade"}), read_grade_csv,
                    write_grade_csv),
        LabelFormat("qupath-geojson", "QuPath GeoJSON objects: boxes and outlines as polygons, marks as points",
                    frozenset({"boxes", "masks", "points"}), read_qupath, write_qupath),
        LabelFormat("fiji-cell-counter", "Fiji Cell Counter markers (CellCounter_<image>.xml): click-counts",
                    frozenset({"points"}), read_fiji_counter, write_fiji_counter),
        LabelFormat("imagej-roi", "ImageJ/Fiji ROI sets (<image>_rois.zip): rectangles, outlines, points",
                    frozenset({"boxes", "masks", "points"}), read_imagej_rois, write_imagej_rois),
        LabelFormat("counts-csv", "per-image, per-class counts with totals (export only)",
                    frozenset({"boxes", "masks", "points", "grade"}), None, write_counts_csv),
    )
}


def get_format(name: str) -> LabelFormat:
    try:
        return FORMATS[name]
    except KeyError:
        raise FormatError(None, f"unknown format {name!r}; known formats: {', '.join(FORMATS)}") from None


def detect_format(path: str | Path) -> str:
    """The format of a label file or of a folder in a known layout."""
    p = Path(path)
    if not p.exists():
        raise FormatError(p, missing_reason(p))
    if not p.is_dir() and not_regular_reason(p):  # a device or a pipe: reading it would never end
        raise FormatError(p, not_regular_reason(p))
    if p.is_file():
        suffix, stem = p.suffix.lower(), p.stem
        if suffix == ".geojson":
            return "qupath-geojson"
        if suffix in (".zip", ".roi"):
            return "imagej-roi"
        if suffix == ".json":
            with open(p, "rb") as fh:
                head = fh.read(4096)
            if b'"FeatureCollection"' in head or b'"Feature"' in head:
                return "qupath-geojson"
            return "coco"
        if suffix == ".csv":
            return "grade-csv"
        if suffix == ".xml":
            with open(p, "rb") as fh:
                head = fh.read(4096)
            if b"<Annotations" in head:
                return "aperio"
            if b"<CellCounter_Marker_File" in head:
                return "fiji-cell-counter"
            return "voc"
        if suffix in (".tif", ".tiff") and any(stem.endswith(s) for s in LABEL_SUFFIXES):
            return "label-tiff"
        if suffix == ".png" and stem.endswith("_label"):
            return "cvppp"
        if suffix == ".png" and stem.endswith(("_mask", "_colour", "_color")):
            return "colour-mask"
        raise FormatError(p, "cannot tell the label format of this file; name it with --from")
    if (p / "Annotations").is_dir():
        return "voc"
    if is_yolo_layout(p):
        return "yolo"
    if (p / "stage1_train").is_dir() or is_dsb_sample(p) or any(is_dsb_sample(d) for d in _subdirs(p)):
        return "dsb"
    if (p / "tissue_image").is_dir() and (p / "annotations").is_dir():
        return "aperio"
    if (p / "1. Original Images").is_dir() and (p / "2. Groundtruths").is_dir():
        return "grade-csv"
    names = [f.name for f in p.iterdir() if f.is_file()]
    if any(n.endswith("_label.png") for n in names):
        return "cvppp"
    if any(n.lower().endswith((".tif", ".tiff")) and Path(n).stem.endswith(LABEL_SUFFIXES) for n in names):
        return "label-tiff"
    if any(n.lower().endswith(".geojson") for n in names):
        return "qupath-geojson"
    if any(n.lower().endswith(("_rois.zip", ".roi")) or n.lower() == "roiset.zip" for n in names):
        return "imagej-roi"
    if sum(n.endswith(".json") for n in names) == 1:
        return "coco"
    if any(n.endswith(".xml") for n in names):
        xml = next(f for f in sorted(p.iterdir()) if f.name.endswith(".xml"))
        return detect_format(xml)
    if sum(n.endswith(".csv") for n in names) == 1:
        return "grade-csv"
    if any(n.endswith(("_mask.png", "_colour.png", "_color.png")) for n in names) or (p / "masks").is_dir():
        return "colour-mask"
    raise FormatError(p, "folder is in no known label layout; name the format with --from")


def _subdirs(p: Path, limit: int = 5) -> list[Path]:
    out = []
    for d in sorted(p.iterdir()):
        if d.is_dir():
            out.append(d)
            if len(out) >= limit:
                break
    return out


def read_labels(path: str | Path, fmt: str | None = None, class_names: Sequence[str] | None = None
                ) -> list[ImageAnnotation]:
    """Read labels in format ``fmt`` (recognised from the path when ``None``)."""
    name = fmt or detect_format(path)
    spec = get_format(name)
    if spec.reader is None:
        raise FormatError(path, f"{name} is an export-only format and cannot be read")
    if not Path(path).exists():
        raise FormatError(path, missing_reason(path))
    return spec.reader(Path(path), class_names)


def _adapt(anns: Sequence[ImageAnnotation], spec: LabelFormat, dst: Path) -> list[ImageAnnotation]:
    """Check what the target can hold; derive boxes from masks for box-only formats."""
    has = set()
    for a in anns:
        if len(a.boxes):
            has.add("boxes")
        if a.masks is not None and len(a.masks):
            has.add("masks")
        if len(a.points):
            has.add("points")
        if a.grade is not None:
            has.add("grade")
    out = list(anns)
    if "masks" in has and "masks" not in spec.holds and "boxes" in spec.holds:
        warn(dst, f"{spec.name} cannot hold masks; writing their bounding boxes instead")
        out = []
        for a in anns:
            b = copy.copy(a)
            if a.masks is not None and len(a.masks):
                b.boxes = a.boxes.concat(a.masks.bounding_boxes()) if len(a.boxes) else a.masks.bounding_boxes()
                b.masks = None
            out.append(b)
        has = (has - {"masks"}) | {"boxes"}
    lost = has - spec.holds
    if has and not (has & spec.holds):
        raise FormatError(dst, f"{spec.name} cannot hold {', '.join(sorted(has))}; choose another target format")
    if lost:
        warn(dst, f"{spec.name} cannot hold {', '.join(sorted(lost))}; they are left out")
    return out


def write_labels(anns: Sequence[ImageAnnotation], dst: str | Path, fmt: str,
                 image_root: str | Path | None = None) -> list[Path]:
    """Write ``anns`` in format ``fmt``; returns the files written. ``image_root`` (COCO only) is the folder
    its ``file_name`` entries are relative to."""
    spec = get_format(fmt)
    if spec.writer is None:
        raise FormatError(dst, f"{fmt} is an import-only format and cannot be written")
    dst = Path(dst)
    if image_root is not None:
        if fmt != "coco":
            raise FormatError(dst, f"an image root applies to COCO files only, not {fmt}")
        return spec.writer(_adapt(anns, spec, dst), dst, image_root)
    return spec.writer(_adapt(anns, spec, dst), dst)


__all__ = ["FORMATS", "LabelFormat", "Boxes", "detect_format", "get_format", "image_files", "is_label_file",
           "read_labels", "write_labels"]

_LABEL_FOLDERS = {"masks", "labels", "annotations", "2. groundtruths", "groundtruth", "ground_truth"}
_LABEL_STEMS = ("_label", "_labels", "_mask", "_masks", "_colour", "_color") + tuple(LABEL_SUFFIXES)


def is_label_file(path: str | Path) -> bool:
    """Whether an image-suffixed file is a label in one of the known layouts, not an image to count: DSB's
    ``masks/*.png``, YOLO's ``labels/``, ``*_label.png``, ``*_labels.tif``, ``*_mask.png`` and the like."""
    p = Path(path)
    if any(part.lower() in _LABEL_FOLDERS for part in p.parts[:-1]):
        return True
    return p.stem.lower().endswith(_LABEL_STEMS)


def image_files(folder: str | Path) -> list[Path]:
    """The images of a folder, in name order, whatever layout it has: the one rule for ``predict``, ``info`` and
    ``project create/add`` (label files with image suffixes are not images)."""
    from cellcounter.imageio import IMAGE_SUFFIXES

    root = Path(folder)
    return sorted(f for f in root.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file()
                  and not is_label_file(f.relative_to(root)))


def labels_for_image(image_path: str | Path, class_names: Sequence[str] | None = None) -> ImageAnnotation | None:
    """Find and read the labels stored beside an image, or ``None`` when there are none.

    Looked for: ``<stem>.xml`` beside the image or in ``../Annotations`` or ``../annotations`` (VOC, or
    Aperio as MoNuSeg ships it, told apart by content), ``<stem>_labels.tif``/``_masks.tif`` beside it, the
    DSB ``../masks`` folder, ``<stem>_label.png`` (CVPPP) and ``<stem>_mask.png`` (colour mask).
    """
    img = Path(image_path)
    stem, folder = img.stem, img.parent
    candidates: list[tuple[str, Path]] = [
        ("xml", folder / f"{stem}.xml"),
        ("xml", folder.parent / "Annotations" / f"{stem}.xml"),
        ("xml", folder.parent / "annotations" / f"{stem}.xml"),
    ]
    candidates += [("label-tiff", folder / f"{stem}{s}.tif") for s in LABEL_SUFFIXES]
    candidates += [("cvppp", folder / f"{stem}_label.png"), ("colour-mask", folder / f"{stem}_mask.png")]
    if folder.name == "images" and (folder.parent / "masks").is_dir():
        candidates.append(("dsb", folder.parent))
    for fmt, cand in candidates:
        if cand.exists():
            if fmt == "xml":
                fmt = detect_format(cand)
            anns = read_labels(cand, fmt, class_names)
            match = [a for a in anns if Path(a.image_path).name == img.name] or anns
            if match:
                ann = match[0]
                ann.image_path = str(img)
                return ann
    return None
