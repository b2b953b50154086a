"""Regions of an image (a drawn polygon or rectangle, or one imported from QuPath) and the counts inside them.

An object belongs to a region when its centre lies inside it: a box's centre, an instance's centroid, a
click mark. Density is objects per square millimetre of the region's own area, from the image's pixel
size. Regions are kept with an image's labels (:attr:`ImageAnnotation.regions`), in the project and in
QuPath GeoJSON (as ``annotation`` objects).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from cellcounter.errors import CellCounterError

if TYPE_CHECKING:
    from cellcounter.annotations import ImageAnnotation

REGION_CLASS = "Region"  # the QuPath classification of a region (an annotation object that is not a cell)


@dataclass
class Region:
    """A named polygon with vertices ``xy`` (``(N, 2)``, pixel-edge x and y of the image)."""

    name: str
    xy: np.ndarray

    def __post_init__(self) -> None:
        self.name = str(self.name)
        self.xy = np.asarray(self.xy, dtype=np.float64).reshape(-1, 2)
        if len(self.xy) < 3 or not np.isfinite(self.xy).all():
            raise CellCounterError(f"region {self.name!r} needs at least 3 finite vertices, got {len(self.xy)}")

    @classmethod
    def rectangle(cls, name: str, x0: float, y0: float, x1: float, y1: float) -> Region:
        return cls(name, [[x0, y0], [x1, y0], [x1, y1], [x0, y1]])

    @property
    def polygon(self):
        from shapely.geometry import Polygon

        poly = Polygon(self.xy)
        return poly if poly.is_valid else poly.buffer(0)  # a self-crossing outline: its filled area

    @property
    def area_px(self) -> float:
        return float(self.polygon.area)

    def bounds(self) -> tuple[float, float, float, float]:
        """``(x0, y0, x1, y1)``."""
        return tuple(float(v) for v in self.polygon.bounds)  # type: ignore[return-value]

    def contains(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        import shapely

        return shapely.contains_xy(self.polygon, np.asarray(x, float), np.asarray(y, float))

    def intersects_box(self, x0: float, y0: float, x1: float, y1: float) -> bool:
        from shapely.geometry import box

        return bool(self.polygon.intersects(box(x0, y0, x1, y1)))

    def to_dict(self) -> dict:
        return {"name": self.name, "xy": [[float(a), float(b)] for a, b in self.xy]}

    def equals(self, other: Region, atol: float = 1e-6) -> bool:
        return self.name == other.name and self.xy.shape == other.xy.shape and np.allclose(self.xy, other.xy,
                                                                                           atol=atol)


def regions_json(regions: list[Region]) -> str | None:
    return json.dumps([r.to_dict() for r in regions]) if regions else None


def json_regions(text: str | bytes | None) -> list[Region]:
    if not text:
        return []
    data = json.loads(text)
    if not isinstance(data, list) or not all(isinstance(d, dict) and "xy" in d for d in data):
        raise CellCounterError("regions must be a list of {name, xy}")
    return [Region(d.get("name", f"region {i + 1}"), d["xy"]) for i, d in enumerate(data)]


def _centres(ann: ImageAnnotation) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """x and y of every box's centre, instance's centroid and click mark, per part."""
    from scipy import ndimage

    b = ann.boxes.xyxy
    out = {"boxes": ((b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2),
           "points": (ann.points.rc[:, 1], ann.points.rc[:, 0])}
    m = ann.masks
    if m is not None and len(m):
        c = np.array(ndimage.center_of_mass(m.label_image > 0, m.label_image, m.ids), float).reshape(-1, 2)
        out["masks"] = (c[:, 1] + 0.5, c[:, 0] + 0.5)  # pixel centres in pixel-edge coordinates
    return out


def object_centres(ann: ImageAnnotation, score_threshold: float | None = None) -> tuple[np.ndarray, np.ndarray,
                                                                                           np.ndarray]:
    """x, y and class of every object that counts at ``score_threshold`` (boxes, instances, marks)."""
    centres = _centres(ann)
    parts = [("boxes", ann.boxes.above(score_threshold), ann.boxes.classes),
             ("points", np.ones(len(ann.points), bool), ann.points.classes)]
    if "masks" in centres:
        parts.append(("masks", ann.masks.above(score_threshold), ann.masks.classes))
    xs, ys, cls = [], [], []
    for part, keep, classes in parts:
        xs.append(centres[part][0][keep])
        ys.append(centres[part][1][keep])
        cls.append(classes[keep])
    return np.concatenate(xs), np.concatenate(ys), np.concatenate(cls).astype(np.int64)


@dataclass
class RegionCount:
    """One row of the per-region counts: objects per class, area and density (``None`` without a pixel size)."""

    region: str
    counts: dict[str, int]
    area_px: float
    area_mm2: float | None

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def densities_per_mm2(self) -> dict[str, float] | None:
        if not self.area_mm2:
            return None
        return {k: v / self.area_mm2 for k, v in self.counts.items()}


def region_counts(ann: ImageAnnotation, score_threshold: float | None = None) -> list[RegionCount]:
    """The counts in each of the image's regions, in their order."""
    if not ann.regions:
        return []
    x, y, cls = object_centres(ann, score_threshold)
    mm_per_px = ann.pixel_size_um / 1000.0 if ann.pixel_size_um else None
    rows = []
    for r in ann.regions:
        inside = r.contains(x, y)
        per_class = np.bincount(cls[inside], minlength=len(ann.class_names))[: len(ann.class_names)]
        area = r.area_px
        rows.append(RegionCount(r.name, {n: int(k) for n, k in zip(ann.class_names, per_class)}, area,
                                area * mm_per_px**2 if mm_per_px else None))
    return rows


def keep_inside(ann: ImageAnnotation, regions: list[Region]) -> ImageAnnotation:
    """``ann`` with only the objects whose centre lies in one of ``regions`` (the others dropped)."""
    import dataclasses

    if not regions:
        return ann

    def inside(part: str) -> np.ndarray:
        x, y = centres[part]
        out = np.zeros(len(x), bool)
        for r in regions:
            out |= r.contains(x, y)
        return out

    centres = _centres(ann)
    masks = ann.masks.subset(inside("masks")) if "masks" in centres else ann.masks
    return dataclasses.replace(ann, boxes=ann.boxes.subset(inside("boxes")), masks=masks,
                               points=ann.points.subset(inside("points")),
                               regions=list(regions), attributes=dict(ann.attributes))


__all__ = ["REGION_CLASS", "Region", "RegionCount", "json_regions", "keep_inside", "object_centres",
           "region_counts", "regions_json"]
