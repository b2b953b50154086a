"""QuPath GeoJSON: what QuPath's "Export objects as GeoJSON" writes and its "Import objects" reads.

One ``<image stem>.geojson`` per image, a FeatureCollection (a bare list of
features or a single Feature reads too). Each feature carries
``properties.objectType`` (``detection``, ``cell`` or ``annotation``),
``properties.classification`` ``{name, color}`` and ``properties.measurements``
(``score``, ``area``). Boxes are exported as rectangles, instance masks as
their traced outlines (holes kept, a split instance as a MultiPolygon), click
marks as Points, regions as ``annotation`` polygons classified ``Region``. On
import, polygons that are axis-aligned rectangles become boxes and other
polygons instance masks; Points and MultiPoints become marks; annotations
classified ``Region`` become regions.
Coordinates are QuPath's: pixel ``(x, y)`` covers ``[x, x + 1)``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cellcounter.annotations import Boxes, ImageAnnotation, InstanceMasks, Origin, Points
from cellcounter.errors import FormatError
from cellcounter.fileutil import atomic_write_text
from cellcounter.formats._common import find_image, output_targets, warn
from cellcounter.imageio import MAX_SIDE, image_size, max_pixels
from cellcounter.regions import REGION_CLASS, Region
from cellcounter.tasks import class_colours

SUFFIXES = (".geojson",)
_OBJECT_TYPES = {"detection", "cell", "annotation", "tile", "tma_core", "root"}


# --- writing ----------------------------------------------------------------------------------------


def _rgb(hex_colour: str) -> list[int]:
    h = hex_colour.lstrip("#")
    return [int(h[i:i + 2], 16) for i in (0, 2, 4)]


def _properties(ann: ImageAnnotation, cls: int, score: float, origin: int, object_type: str,
                area: float | None = None) -> dict:
    name = ann.class_names[int(cls)] if 0 <= int(cls) < len(ann.class_names) else "object"
    props: dict[str, Any] = {"objectType": object_type,
                             "classification": {"name": name, "color": _rgb(class_colours(ann.class_names)[name])
                                                if name in ann.class_names else [200, 200, 200]}}
    measurements = {}
    if score is not None and np.isfinite(score):
        measurements["score"] = float(score)
    if area is not None:
        measurements["area"] = float(area)
    if measurements:
        props["measurements"] = measurements
    if int(origin) != Origin.HUMAN:
        props["origin"] = Origin(int(origin)).name.lower()  # QuPath keeps unknown properties
    return props


def _mask_geometry(mask: np.ndarray, y0: int, x0: int) -> dict | None:
    """The outline of one instance (a binary crop whose top-left pixel is ``(x0, y0)``) as GeoJSON, holes kept.

    Traced with marching squares at 0.5 on the padded crop; each contour becomes a ring, rings nested in an odd
    number of others are holes of the ring around them.
    """
    from shapely.geometry import MultiPolygon, Polygon, mapping
    from skimage.measure import find_contours

    padded = np.pad(mask.astype(np.float32), 1)
    rings = []
    for c in find_contours(padded, 0.5):
        if len(c) < 4:
            continue
        xy = np.column_stack([c[:, 1] - 1 + x0 + 0.5, c[:, 0] - 1 + y0 + 0.5])  # back to image pixel edges
        poly = Polygon(xy)
        if poly.area > 0:
            rings.append(poly if poly.is_valid else poly.buffer(0))
    if not rings:
        return None
    rings.sort(key=lambda p: p.area, reverse=True)
    shells: list[tuple[Any, list]] = []
    for ring in rings:
        depth = sum(1 for s, _ in shells if s.contains(ring.representative_point()))
        holes_of = [h for s, h in shells if s.contains(ring.representative_point())]
        if depth % 2 == 1 and holes_of:
            holes_of[-1].append(ring)  # the innermost shell containing it
        else:
            shells.append((ring, []))
    polys = []
    for shell, holes in shells:
        p = Polygon(shell.exterior.coords, [h.exterior.coords for h in holes])
        polys.append(p if p.is_valid else p.buffer(0))
    geom = polys[0] if len(polys) == 1 else MultiPolygon(polys)
    return mapping(geom)


def features(ann: ImageAnnotation) -> list[dict]:
    """The image's objects as QuPath GeoJSON features."""
    out = []
    for i in range(len(ann.boxes)):
        x1, y1, x2, y2 = (float(v) for v in ann.boxes.xyxy[i])
        geom = {"type": "Polygon", "coordinates": [[[x1, y1], [x2, y1], [x2, y2], [x1, y2], [x1, y1]]]}
        out.append({"type": "Feature", "geometry": geom,
                    "properties": _properties(ann, ann.boxes.classes[i], ann.boxes.scores[i], ann.boxes.origins[i],
                                              "detection", (x2 - x1) * (y2 - y1))})
    if ann.masks is not None and len(ann.masks):
        from scipy import ndimage

        lab = ann.masks.label_image
        slices = ndimage.find_objects(lab)
        for i, k in enumerate(ann.masks.ids):
            sl = slices[int(k) - 1] if int(k) - 1 < len(slices) else None
            if sl is None:
                continue
            crop = lab[sl] == k
            geom = _mask_geometry(crop, sl[0].start, sl[1].start)
            if geom is None:
                continue
            out.append({"type": "Feature", "geometry": geom,
                        "properties": _properties(ann, ann.masks.classes[i], ann.masks.scores[i],
                                                  ann.masks.origins[i], "detection", float(crop.sum()))})
    for i in range(len(ann.points)):
        r, c = (float(v) for v in ann.points.rc[i])
        # a mark is at its pixel's centre; QuPath's coordinates (as ImageJ's) run along pixel edges: + 0.5
        out.append({"type": "Feature", "geometry": {"type": "Point", "coordinates": [c + 0.5, r + 0.5]},
                    "properties": _properties(ann, ann.points.classes[i], np.nan, ann.points.origins[i],
                                              "annotation")})
    for region in ann.regions:  # QuPath's own regions are annotation objects
        ring = [[float(x), float(y)] for x, y in region.xy] + [[float(region.xy[0, 0]), float(region.xy[0, 1])]]
        out.append({"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [ring]},
                    "properties": {"objectType": "annotation", "name": region.name,
                                   "classification": {"name": REGION_CLASS, "color": [255, 200, 0]},
                                   "measurements": {"area": region.area_px}}})
    return out


def write_qupath(anns: Sequence[ImageAnnotation], dst: Path) -> list[Path]:
    """One ``<stem>.geojson`` per image in folder ``dst``, or ``dst`` itself for one image."""
    dst = Path(dst)
    targets = output_targets(anns, dst, SUFFIXES, "a single GeoJSON file", lambda stem: dst / f"{stem}.geojson")
    docs = [json.dumps({"type": "FeatureCollection", "features": features(a)}) for a in anns]  # all before writing
    for t, doc in zip(targets, docs):
        atomic_write_text(t, doc)
    return targets


# --- reading ----------------------------------------------------------------------------------------


def _load(path: Path) -> list[dict]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FormatError(path, f"not a readable GeoJSON file ({exc})") from None
    except RecursionError:
        raise FormatError(path, "not a readable GeoJSON file (nested too deeply)") from None
    if isinstance(doc, dict) and doc.get("type") == "FeatureCollection":
        feats = doc.get("features")
    elif isinstance(doc, dict) and doc.get("type") == "Feature":
        feats = [doc]
    elif isinstance(doc, list):
        feats = doc
    else:
        raise FormatError(path, "not GeoJSON: expected a FeatureCollection, a Feature or a list of features")
    if not isinstance(feats, list) or not all(isinstance(f, dict) for f in feats):
        raise FormatError(path, "'features' must be a list of objects")
    return feats


def _coords(path: Path, where: str, value: Any, depth: int) -> np.ndarray | list:
    """Nested coordinate lists checked: numbers, finite, inside the largest image there can be."""
    if depth == 0:
        if (not isinstance(value, list) or len(value) < 2
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value[:2])):
            raise FormatError(path, f"{where}: a position must be [x, y] numbers, got {str(value)[:60]}")
        x, y = float(value[0]), float(value[1])
        if not (np.isfinite(x) and np.isfinite(y)) or max(abs(x), abs(y)) > MAX_SIDE:
            raise FormatError(path, f"{where}: position ({x:g}, {y:g}) is outside any image")
        return [x, y]
    if not isinstance(value, list):
        raise FormatError(path, f"{where}: coordinates must be nested lists")
    out = [_coords(path, where, v, depth - 1) for v in value]
    return np.asarray(out, dtype=np.float64) if depth == 1 else out


def _rectangle(ring: np.ndarray) -> tuple[float, float, float, float] | None:
    """``x1, y1, x2, y2`` when a closed ring is an axis-aligned rectangle."""
    pts = ring[:-1] if len(ring) > 1 and np.allclose(ring[0], ring[-1]) else ring
    if len(pts) != 4:
        return None
    xs, ys = np.unique(np.round(pts[:, 0], 6)), np.unique(np.round(pts[:, 1], 6))
    if len(xs) != 2 or len(ys) != 2:
        return None
    corners = {(round(x, 6), round(y, 6)) for x, y in pts}
    if corners != {(x, y) for x in xs for y in ys}:
        return None
    return float(xs[0]), float(ys[0]), float(xs[1]), float(ys[1])


def _paint(lab: np.ndarray, polygons: list[list[np.ndarray]], value: int) -> None:
    from skimage.draw import polygon as fill

    for rings in polygons:
        shape = lab.shape
        inside = np.zeros(shape, dtype=bool)
        for j, ring in enumerate(rings):  # the first ring is the outline, the others its holes
            rr, cc = fill(ring[:, 1] - 0.5, ring[:, 0] - 0.5, shape)  # pixel centres inside the ring
            inside[rr, cc] = j == 0
        lab[inside & (lab == 0)] = value


def objects_annotation(path: Path, image: Path, width: int, height: int, names: list[str], boxes: list[tuple],
                       outlines: list[tuple]) -> ImageAnnotation:
    """An image's boxes ``((x1, y1, x2, y2), class, score, origin)`` and outlines ``(polygons, class, score,
    origin)`` (each polygon a list of rings, outline first, holes after, in pixel-edge coordinates) as one
    annotation; outlines are painted in order, an earlier one keeping the pixels two share. Shared by the
    readers of drawn objects (QuPath GeoJSON, ImageJ ROIs)."""
    ann = ImageAnnotation(str(image), width, height, tuple(names) or ("object",))
    if boxes:
        xyxy = np.clip(np.array([b[0] for b in boxes], float), 0, [width, height, width, height])
        ann.boxes = Boxes(xyxy, [b[1] for b in boxes], [b[2] for b in boxes], [b[3] for b in boxes])
    if outlines:
        if width * height > max_pixels():
            raise FormatError(path, f"outlines on a {width} x {height} image are more pixels than are rasterised "
                                    "at once (CELLCOUNTER_MAX_PIXELS raises the limit)")
        lab = np.zeros((height, width), np.int32)
        for k, (polygons, _, _, _) in enumerate(outlines, start=1):
            _paint(lab, polygons, k)
        present = np.isin(np.arange(1, len(outlines) + 1), np.unique(lab))
        if not present.all():
            warn(path, f"{int((~present).sum())} outline(s) cover no pixel inside the image; skipped")
        keep = [o for o, ok in zip(outlines, present) if ok]
        ann.masks = InstanceMasks(lab, np.flatnonzero(present) + 1, [o[1] for o in keep], [o[2] for o in keep],
                                  [o[3] for o in keep])
    return ann


def _classification(path: Path, where: str, props: dict) -> str:
    c = props.get("classification")
    if c is None:
        return ""
    if isinstance(c, dict) and isinstance(c.get("name", ""), str):
        return c.get("name", "")
    if isinstance(c, str):  # some scripts write the name alone
        return c
    raise FormatError(path, f"{where}: 'classification' must be an object with a name")


def _score(props: dict) -> float:
    m = props.get("measurements")
    if isinstance(m, list):  # QuPath 0.2 wrote a list of {name, value}
        m = {d.get("name"): d.get("value") for d in m if isinstance(d, dict)}
    if not isinstance(m, dict):
        return np.nan
    for key in ("score", "Detection probability", "Probability"):
        v = m.get(key)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v):
            return float(v)
    return np.nan


def read_qupath_file(path: Path, class_names: Sequence[str] | None = None, image_path: Path | None = None,
                     ) -> ImageAnnotation:
    feats = _load(path)
    image = image_path or find_image(path.parent, path.stem) or find_image(path.parent / "images", path.stem)
    if image is None:
        raise FormatError(path, f"no image named {path.stem}.* beside it or in images/: QuPath GeoJSON does not "
                                "name its image")
    width, height = image_size(image)
    names = list(class_names) if class_names else []
    boxes: list[tuple] = []
    polygons: list[tuple] = []
    points: list[tuple] = []
    regions: list[Region] = []
    for n, f in enumerate(feats):
        where = f"feature {n}"
        geom, props = f.get("geometry"), f.get("properties") or {}
        if not isinstance(geom, dict) or not isinstance(props, dict):
            raise FormatError(path, f"{where}: 'geometry' and 'properties' must be objects")
        otype = str(props.get("objectType", "annotation"))
        if otype not in _OBJECT_TYPES:
            raise FormatError(path, f"{where}: unknown objectType {otype!r}")
        if otype in ("tile", "tma_core", "root"):
            continue
        if otype == "annotation" and _classification(path, where, props) == REGION_CLASS:
            regions += _regions(path, where, geom, props, len(regions))
            continue
        name = _classification(path, where, props) or (names[0] if names else "object")
        if name not in names:
            if class_names:
                raise FormatError(path, f"{where}: class {name!r} is not one of {', '.join(class_names)}")
            names.append(name)
        cls, score = names.index(name), _score(props)
        origin = Origin[str(props["origin"]).upper()] if str(props.get("origin", "")).upper() in Origin.__members__ \
            else Origin.HUMAN
        gtype = geom.get("type")
        if gtype == "Point":
            x, y = _coords(path, where, geom.get("coordinates"), 0)
            points.append((y - 0.5, x - 0.5, cls, origin))
        elif gtype == "MultiPoint":
            for x, y in _coords(path, where, geom.get("coordinates"), 1):
                points.append((y - 0.5, x - 0.5, cls, origin))
        elif gtype in ("Polygon", "MultiPolygon"):
            rings_list = _polygons(path, where, geom)
            if any(len(r) < 3 for rings in rings_list for r in rings) or any(not rings for rings in rings_list):
                warn(path, f"{where}: a ring with fewer than 3 vertices; skipped")
                continue
            rect = _rectangle(rings_list[0][0]) if len(rings_list) == 1 and len(rings_list[0]) == 1 else None
            if rect is not None and otype != "cell":
                boxes.append((rect, cls, score, origin))
            else:
                polygons.append((rings_list, cls, score, origin))
        else:
            warn(path, f"{where}: {gtype} geometry is not an object cellcounter holds; skipped")
    ann = objects_annotation(path, image, width, height, names, boxes, polygons)
    ann.regions = regions
    if points:
        ann.points = Points(np.array([[p[0], p[1]] for p in points]), [p[2] for p in points],
                            [p[3] for p in points])
    return ann


def _polygons(path: Path, where: str, geom: dict) -> list:
    """A Polygon's or MultiPolygon's polygons, each a list of checked rings (outline first, holes after)."""
    gtype = geom.get("type")
    parts = [geom.get("coordinates")] if gtype == "Polygon" else geom.get("coordinates")
    if not isinstance(parts, list) or not parts:
        raise FormatError(path, f"{where}: a {gtype} needs coordinates")
    return [_coords(path, where, p, 2) for p in parts]


def _regions(path: Path, where: str, geom: dict, props: dict, n_before: int) -> list[Region]:
    """A region per polygon of an annotation feature (a hole is not kept: a region counts its whole outline)."""
    gtype = geom.get("type")
    if gtype not in ("Polygon", "MultiPolygon"):
        warn(path, f"{where}: a region must be a Polygon, got {gtype}; skipped")
        return []
    parts = _polygons(path, where, geom)
    out = []
    base = props.get("name") if isinstance(props.get("name"), str) and props.get("name") else None
    for rings in parts:
        if not rings or len(rings[0]) < 4:
            warn(path, f"{where}: a region ring with fewer than 3 vertices; skipped")
            continue
        name = base or f"region {n_before + len(out) + 1}"
        if base and len(parts) > 1:
            name = f"{base} {len(out) + 1}"
        out.append(Region(name, rings[0][:-1] if np.allclose(rings[0][0], rings[0][-1]) else rings[0]))
    return out


def read_regions(path: str | Path) -> list[Region]:
    """Every annotation polygon of a GeoJSON file as a region, whatever its classification (QuPath users draw
    regions as annotations and often classify them: Tumor, Stroma); detections and cells are left out."""
    path = Path(path)
    out: list[Region] = []
    for n, f in enumerate(_load(path)):
        geom, props = f.get("geometry"), f.get("properties") or {}
        if not isinstance(geom, dict) or not isinstance(props, dict):
            raise FormatError(path, f"feature {n}: 'geometry' and 'properties' must be objects")
        if str(props.get("objectType", "annotation")) != "annotation" or geom.get("type") not in (
                "Polygon", "MultiPolygon"):
            continue
        props = dict(props)
        if not props.get("name"):
            cls = _classification(path, f"feature {n}", props)
            if cls and cls != REGION_CLASS:
                props["name"] = cls
        out += _regions(path, f"feature {n}", geom, props, len(out))
    return out


def qupath_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    files = sorted(f for f in path.iterdir() if f.suffix.lower() in SUFFIXES)
    if not files:
        raise FormatError(path, "no QuPath GeoJSON files (*.geojson)")
    return files


def read_qupath(path: str | Path, class_names: Sequence[str] | None = None) -> list[ImageAnnotation]:
    anns = [read_qupath_file(f, class_names) for f in qupath_files(Path(path))]
    if not class_names and len({a.class_names for a in anns}) > 1:  # one class order for the whole set
        order: list[str] = []
        for a in anns:
            order += [n for n in a.class_names if n not in order]
        anns = [read_qupath_file(f, order) for f in qupath_files(Path(path))]
    return anns


__all__ = ["features", "objects_annotation", "read_qupath", "read_qupath_file", "read_regions", "write_qupath"]
