"""Fiji's Cell Counter plugin markers (``CellCounter_<image>.xml``): click-counts, marker types as classes.

The plugin numbers its marker types from 1 and (in recent versions) names them; a type whose name is a class
of the task is that class, otherwise type ``k`` is the task's class ``k - 1``. Positions are pixel coordinates
(``MarkerX``, ``MarkerY``; ``MarkerZ`` is the slice, from 1).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cellcounter.annotations import ImageAnnotation, Origin, Points
from cellcounter.errors import FormatError
from cellcounter.fileutil import atomic_write_bytes
from cellcounter.formats._common import find_image, format_number, output_targets, parse_xml, warn
from cellcounter.imageio import MAX_SIDE, image_size

PREFIX = "CellCounter_"
ROOT = "CellCounter_Marker_File"


def counter_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    files = sorted(path.glob(f"{PREFIX}*.xml"))
    if not files:
        raise FormatError(path, f"no Cell Counter marker files ({PREFIX}*.xml)")
    return files


def _number(path: Path, where: str, text: str | None) -> float:
    try:
        v = float((text or "").strip())
    except ValueError:
        raise FormatError(path, f"{where}: expected a number, got {text!r}") from None
    if not np.isfinite(v) or abs(v) > MAX_SIDE:
        raise FormatError(path, f"{where}: {v:g} is outside any image")
    return v


def read_counter_file(path: Path, class_names: Sequence[str] | None = None) -> ImageAnnotation:
    root = parse_xml(path)
    if root.tag != ROOT:
        raise FormatError(path, f"not a Cell Counter marker file (root element <{root.tag}>, expected <{ROOT}>)")
    filename = (root.findtext("Image_Properties/Image_Filename") or "").strip()
    stem = Path(filename).stem if filename else path.stem.removeprefix(PREFIX)
    image = (path.parent / Path(filename).name if filename and (path.parent / Path(filename).name).is_file()
             else find_image(path.parent, stem) or find_image(path.parent / "images", stem))
    if image is None:
        raise FormatError(path, f"its image {filename or stem} was not found beside it")
    width, height = image_size(image)
    names = list(class_names) if class_names else []
    rc, classes = [], []
    for t, mtype in enumerate(root.iter("Marker_Type")):
        type_text = (mtype.findtext("Type") or str(t + 1)).strip()
        try:
            number = int(type_text)
        except ValueError:
            raise FormatError(path, f"Marker_Type {t + 1}: <Type> must be a whole number, got {type_text!r}") from None
        label = (mtype.findtext("Name") or "").strip()
        markers = mtype.findall("Marker")
        if not markers:
            if label and not class_names and label not in names:  # a named type keeps its place in the order
                names.append(label)
            continue
        if label in names:
            cls = names.index(label)
        elif class_names:
            if not 1 <= number <= len(names):
                raise FormatError(path, f"marker type {number} ({label or 'unnamed'}) has no class: the task's "
                                        f"classes are {', '.join(f'{i + 1} {n}' for i, n in enumerate(names))}")
            cls = number - 1
        else:
            names.append(label or f"Type {number}")
            cls = len(names) - 1
        for m in markers:
            where = f"marker type {number}"
            x, y = _number(path, where, m.findtext("MarkerX")), _number(path, where, m.findtext("MarkerY"))
            if not (0 <= x < width and 0 <= y < height):  # a click off the image counts nothing on it
                warn(path, f"{where}: marker at ({x:g}, {y:g}) lies outside the {width} x {height} image; dropped")
                continue
            rc.append((y, x))
            classes.append(cls)
    ann = ImageAnnotation(str(image), width, height, tuple(names) or ("Type 1",))
    if rc:
        ann.points = Points(np.array(rc), classes, np.full(len(rc), Origin.HUMAN, np.uint8))
    return ann


def read_fiji_counter(path: str | Path, class_names: Sequence[str] | None = None) -> list[ImageAnnotation]:
    return [read_counter_file(f, class_names) for f in counter_files(Path(path))]


def counter_xml(ann: ImageAnnotation) -> bytes:
    """The image's click marks as a Cell Counter file, a marker type per class (whole-pixel positions)."""
    root = ET.Element(ROOT)
    props = ET.SubElement(root, "Image_Properties")
    ET.SubElement(props, "Image_Filename").text = ann.name
    data = ET.SubElement(root, "Marker_Data")
    ET.SubElement(data, "Current_Type").text = "0"  # Fiji reads it as a 0-based index into the marker types
    for k, name in enumerate(ann.class_names):
        mtype = ET.SubElement(data, "Marker_Type")
        ET.SubElement(mtype, "Type").text = str(k + 1)
        ET.SubElement(mtype, "Name").text = name
        for r, c in ann.points.rc[ann.points.classes == k]:
            m = ET.SubElement(mtype, "Marker")
            ET.SubElement(m, "MarkerX").text = format_number(round(float(c)))
            ET.SubElement(m, "MarkerY").text = format_number(round(float(r)))
            ET.SubElement(m, "MarkerZ").text = "1"
    ET.indent(root)
    return ET.tostring(root, encoding="UTF-8", xml_declaration=True)


def write_fiji_counter(anns: Sequence[ImageAnnotation], dst: Path) -> list[Path]:
    """``CellCounter_<stem>.xml`` per image in folder ``dst`` (or ``dst`` itself for one image)."""
    dst = Path(dst)
    targets = output_targets(anns, dst, (".xml",), "one marker file", lambda stem: dst / f"{PREFIX}{stem}.xml")
    docs = [counter_xml(a) for a in anns]
    for t, doc in zip(targets, docs):
        atomic_write_bytes(t, doc)
    return targets


__all__ = ["read_fiji_counter", "write_fiji_counter", "counter_xml"]
