"""Pascal VOC XML boxes, as written by LabelImg and shipped by BCCD.

The ``<path>`` element is ignored (it points at the annotator's disk); images are
looked up by ``<filename>`` in ``JPEGImages/`` beside ``Annotations/`` or next to
the XML file. Scores and origins of predictions are kept in extra ``<score>`` and
``<origin>`` elements that other VOC tools ignore.

``<bndbox>`` is written in whole pixels, as LabelImg and CVAT read it (the box
widened to the pixels it touches); a box with fractional corners (a model's)
also carries them exactly in ``<bndbox_exact>``, read back only while it still
agrees with ``<bndbox>`` (a box moved in another tool drops or outdates it).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cellcounter.annotations import Boxes, ImageAnnotation, Origin
from cellcounter.errors import FormatError
from cellcounter.fileutil import atomic_write_bytes
from cellcounter.formats._common import find_image, format_number, output_targets, parse_xml, share_class_names, warn
from cellcounter.imageio import MAX_SIDE, image_size


def voc_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    ann_dir = path / "Annotations" if (path / "Annotations").is_dir() else path
    files = sorted(ann_dir.glob("*.xml"))
    if not files:
        raise FormatError(path, "no VOC XML files found (expected Annotations/*.xml or *.xml)")
    return files


def read_voc(path: str | Path, class_names: Sequence[str] | None = None) -> list[ImageAnnotation]:
    """Read one VOC XML file or a folder of them (``Annotations/`` + ``JPEGImages/`` or flat)."""
    path = Path(path)
    anns = [read_voc_file(f) for f in voc_files(path)]
    return share_class_names(anns, class_names)


def _number(path: Path, el: ET.Element, tag: str, where: str) -> float:
    child = el.find(tag)
    if child is None or child.text is None or not child.text.strip():
        raise FormatError(path, f"{where}: missing <{tag}>")
    try:
        v = float(child.text.strip())
    except ValueError:
        raise FormatError(path, f"{where}: <{tag}> is not a number ({child.text.strip()!r})") from None
    if not np.isfinite(v):
        raise FormatError(path, f"{where}: <{tag}> is not finite ({child.text.strip()!r})")
    return v


def _whole_pixels(xyxy: tuple[float, ...]) -> tuple[float, ...]:
    """A box widened to the whole pixels it touches."""
    x1, y1, x2, y2 = xyxy
    return float(np.floor(x1)), float(np.floor(y1)), float(np.ceil(x2)), float(np.ceil(y2))


def read_voc_file(path: Path) -> ImageAnnotation:
    root = parse_xml(path)
    if root.tag != "annotation":
        raise FormatError(path, f"not a VOC annotation (root element is <{root.tag}>, expected <annotation>)")
    filename = (root.findtext("filename") or "").strip() or path.stem
    folder = path.parent.parent / "JPEGImages" if path.parent.name == "Annotations" else path.parent
    image_path = folder / filename
    if not image_path.is_file():
        found = find_image(folder, Path(filename).stem) or find_image(path.parent, Path(filename).stem)
        image_path = found or image_path
    size = root.find("size")
    if size is not None and size.find("width") is not None:
        width = _number(path, size, "width", "<size>")
        height = _number(path, size, "height", "<size>")
        if width <= 0 or height <= 0 or not float(width).is_integer() or not float(height).is_integer():
            if width == 0 and height == 0 and image_path.is_file():
                width, height = image_size(image_path)  # LabelImg writes 0x0 when it could not read the image
            else:
                raise FormatError(path, f"<size> must be positive whole numbers, got {width} x {height}")
    elif image_path.is_file():
        width, height = image_size(image_path)
    else:
        raise FormatError(path, "no <size> element and the image file was not found")
    if max(width, height) > MAX_SIDE:
        raise FormatError(path, f"<size> {width:g} x {height:g} is larger than any image "
                                f"({MAX_SIDE:,} pixels a side at most)")
    width, height = int(width), int(height)

    names: list[str] = []
    xyxy, classes, scores, origins = [], [], [], []
    for i, obj in enumerate(root.iter("object")):
        name = (obj.findtext("name") or "").strip()
        where = f"object {i}" + (f" ({name})" if name else "")
        if not name:
            raise FormatError(path, f"{where}: missing <name>")
        box = obj.find("bndbox")
        if box is None:
            raise FormatError(path, f"{where}: missing <bndbox>")
        x1, y1, x2, y2 = (_number(path, box, t, where) for t in ("xmin", "ymin", "xmax", "ymax"))
        exact = obj.find("bndbox_exact")
        if exact is not None:
            ex = tuple(_number(path, exact, t, where) for t in ("xmin", "ymin", "xmax", "ymax"))
            if _whole_pixels(ex) == (x1, y1, x2, y2):
                x1, y1, x2, y2 = ex
        if x2 <= x1 or y2 <= y1:
            warn(path, f"{where}: degenerate box ({x1:g}, {y1:g}, {x2:g}, {y2:g}) dropped")
            continue
        cx1, cy1, cx2, cy2 = min(max(x1, 0), width), min(max(y1, 0), height), min(max(x2, 0), width), min(
            max(y2, 0), height
        )
        if (cx1, cy1, cx2, cy2) != (x1, y1, x2, y2):
            if cx2 <= cx1 or cy2 <= cy1:
                warn(path, f"{where}: box ({x1:g}, {y1:g}, {x2:g}, {y2:g}) lies outside the "
                           f"{width}x{height} image; dropped")
                continue
            warn(path, f"{where}: box ({x1:g}, {y1:g}, {x2:g}, {y2:g}) clipped to the {width}x{height} image")
        if name not in names:
            names.append(name)
        xyxy.append((cx1, cy1, cx2, cy2))
        classes.append(names.index(name))
        score_text = obj.findtext("score")
        try:
            scores.append(float(score_text) if score_text is not None else np.nan)
        except ValueError:
            raise FormatError(path, f"{where}: <score> is not a number ({score_text!r})") from None
        origin_text = (obj.findtext("origin") or "human").strip().upper()
        if origin_text not in Origin.__members__:
            raise FormatError(path, f"{where}: unknown <origin> {origin_text.lower()!r}")
        origins.append(Origin[origin_text])
    return ImageAnnotation(
        image_path=str(image_path),
        width=width,
        height=height,
        class_names=tuple(names),
        boxes=Boxes(np.array(xyxy).reshape(-1, 4), classes, scores, origins),
    )


def voc_xml(ann: ImageAnnotation) -> bytes:
    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = "JPEGImages"
    ET.SubElement(root, "filename").text = ann.name
    ET.SubElement(root, "path").text = ann.image_path
    size = ET.SubElement(root, "size")
    ET.SubElement(size, "width").text = str(ann.width)
    ET.SubElement(size, "height").text = str(ann.height)
    ET.SubElement(size, "depth").text = "3"
    ET.SubElement(root, "segmented").text = "0"
    b = ann.boxes
    for i in range(len(b)):
        obj = ET.SubElement(root, "object")
        ET.SubElement(obj, "name").text = ann.class_names[int(b.classes[i])]
        ET.SubElement(obj, "pose").text = "Unspecified"
        x1, y1, x2, y2 = b.xyxy[i]
        truncated = x1 <= 0 or y1 <= 0 or x2 >= ann.width or y2 >= ann.height
        ET.SubElement(obj, "truncated").text = "1" if truncated else "0"
        ET.SubElement(obj, "difficult").text = "0"
        box = ET.SubElement(obj, "bndbox")
        corners = tuple(float(v) for v in b.xyxy[i])
        whole = _whole_pixels(corners)
        for tag, v in zip(("xmin", "ymin", "xmax", "ymax"), whole):
            ET.SubElement(box, tag).text = str(int(v))
        if whole != corners:
            exact = ET.SubElement(obj, "bndbox_exact")
            for tag, v in zip(("xmin", "ymin", "xmax", "ymax"), corners):
                ET.SubElement(exact, tag).text = format_number(v)
        if not np.isnan(b.scores[i]):
            ET.SubElement(obj, "score").text = repr(float(b.scores[i]))
        if b.origins[i] != Origin.HUMAN:
            ET.SubElement(obj, "origin").text = Origin(int(b.origins[i])).name.lower()
    ET.indent(root, "\t")
    return ET.tostring(root, encoding="utf-8")


def write_voc(anns: Sequence[ImageAnnotation], dst: str | Path) -> list[Path]:
    """Write one XML per image: to ``dst`` itself when it ends in ``.xml`` (one image), else ``dst/Annotations/``."""
    dst = Path(dst)
    targets = output_targets(anns, dst, (".xml",), "a single .xml file", lambda s: dst / "Annotations" / f"{s}.xml")
    payloads = [voc_xml(a) for a in anns]  # build everything before writing anything
    for target, data in zip(targets, payloads):
        atomic_write_bytes(target, data)
    return targets
