"""Aperio ImageScope XML polygons (MoNuSeg): one Region per nucleus, rasterised to instance masks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from skimage.draw import polygon as draw_polygon

from cellcounter.annotations import ImageAnnotation, InstanceMasks
from cellcounter.errors import FormatError
from cellcounter.formats._common import find_image, parse_xml, warn
from cellcounter.imageio import open_image
from cellcounter.tasks import TASKS


def aperio_pairs(path: Path) -> list[tuple[Path, Path | None]]:
    """``(xml, image)`` pairs from an XML file or a MoNuSeg folder (``annotations/`` + ``tissue_image/``)."""
    if path.is_file():
        xmls = [path]
    else:
        ann_dir = path / "annotations" if (path / "annotations").is_dir() else path
        xmls = sorted(ann_dir.glob("*.xml"))
    if not xmls:
        raise FormatError(path, "no Aperio XML files found (expected annotations/*.xml)")
    pairs = []
    for x in xmls:
        root_dir = x.parent.parent if x.parent.name == "annotations" else x.parent
        img = find_image(root_dir / "tissue_image", x.stem) or find_image(x.parent, x.stem)
        pairs.append((x, img))
    return pairs


def read_aperio(path: str | Path, class_names=None) -> list[ImageAnnotation]:
    names = tuple(class_names) if class_names else TASKS["nuclei"].class_names
    return [read_aperio_file(x, img, names) for x, img in aperio_pairs(Path(path))]


def read_aperio_file(xml_path: Path, image_path: Path | None, class_names: tuple[str, ...]) -> ImageAnnotation:
    root = parse_xml(xml_path)
    if root.tag != "Annotations":
        raise FormatError(xml_path, f"not an Aperio ImageScope file (root element is <{root.tag}>)")
    if image_path is None:
        raise FormatError(xml_path, "its image was not found (looked in tissue_image/ and beside the XML)")
    src = open_image(image_path, lazy=True)
    width, height, pixel_size = src.width, src.height, src.pixel_size_um
    src.close()
    mpp = root.get("MicronsPerPixel")
    if mpp:
        try:
            pixel_size = float(mpp) if float(mpp) > 0 else pixel_size
        except ValueError:
            warn(xml_path, f"MicronsPerPixel {mpp!r} is not a number; ignored")
    lab = np.zeros((height, width), dtype=np.int32)
    k = 0
    for region in root.iter("Region"):
        rid = region.get("Id", "?")
        xs, ys = [], []
        for v in region.iter("Vertex"):
            try:
                xs.append(float(v.get("X")))
                ys.append(float(v.get("Y")))
            except (TypeError, ValueError):
                raise FormatError(xml_path, f"Region {rid}: vertex with a missing or non-numeric X/Y") from None
        if len(xs) < 3:
            warn(xml_path, f"Region {rid}: fewer than 3 vertices; skipped")
            continue
        # Vertices are pixel coordinates of pixel centres; skimage fills pixels whose centre is inside.
        rr, cc = draw_polygon(np.array(ys), np.array(xs), shape=(height, width))
        if len(rr) == 0:
            warn(xml_path, f"Region {rid}: polygon covers no pixel inside the image; skipped")
            continue
        k += 1
        lab[rr, cc] = k
    # Later regions may have covered earlier ones completely.
    present = np.unique(lab)
    ids = present[present != 0]
    if len(ids) < k:
        warn(xml_path, f"{k - len(ids)} region(s) fully covered by later ones were dropped")
    return ImageAnnotation(
        image_path=str(image_path), width=width, height=height, class_names=class_names, task="nuclei",
        masks=InstanceMasks(lab, ids), pixel_size_um=pixel_size,
    )
