"""Tiled inference for images larger than a tile, with bounded memory.

Tiles overlap by ``overlap`` pixels. Each tile owns a *core*: the part of the
image closer to it than to its neighbours (the overlap is split down the
middle). A detection is kept only by the tile whose core holds its centre, so
an object up to ``overlap`` pixels across is seen whole by exactly that tile
and reported once; a final class-wise NMS removes the rare duplicate whose
centre moved across the split. Masks are pasted lowest score first and a
pasted instance that mostly duplicates an existing one is dropped.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from cellcounter.annotations import Boxes, ImageAnnotation, Origin
from cellcounter.errors import CellCounterError
from cellcounter.imagesource import ImageSource
from cellcounter.inference.detector_post import batched_nms
from cellcounter.inference.predictor import Cancelled, InstancePainter, Predictor, check_predictable
from cellcounter.inference.preprocess import check_has_pixels, intensity_levels, to_float_rgb
from cellcounter.models.config import INSTANCE_KINDS
from cellcounter.regions import Region, keep_inside


def _region(tile) -> tuple[int, int, int, int]:
    y0, x0, y1, x1 = tile[:4]
    return y0, y1, x0, x1


def _border_distance(cx: np.ndarray, cy: np.ndarray, core_y: tuple, core_x: tuple, h: int, w: int) -> np.ndarray:
    """How far each centre lies from its tile's core border with another tile (image edges do not count)."""
    far = np.full(len(cx), np.inf)
    for lo, hi, v, end in ((core_x[0], core_x[1], cx, w), (core_y[0], core_y[1], cy, h)):
        if lo > 0:
            far = np.minimum(far, v - lo)
        if hi < end:
            far = np.minimum(far, hi - v)
    return far


Progress = Callable[[int, int], None]
ShouldStop = Callable[[], bool]


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets covering ``[0, length)`` with tiles of ``tile`` overlapping by at least ``overlap``."""
    if length <= tile:
        return [0]
    step = tile - overlap
    starts = list(range(0, length - tile, step))
    starts.append(length - tile)
    return starts


def core_bounds(starts: list[int], tile: int, length: int) -> list[tuple[float, float]]:
    """The slice of the axis each tile owns: boundaries halfway through each overlap."""
    bounds = []
    for i, s in enumerate(starts):
        lo = 0.0 if i == 0 else (s + starts[i - 1] + tile) / 2.0
        hi = float(length) if i == len(starts) - 1 else (starts[i + 1] + s + tile) / 2.0
        bounds.append((lo, hi))
    return bounds


def tile_geometry(predictor: Predictor, tile: int = 0, overlap: int = -1) -> tuple[int, int]:
    """The tile size and overlap ``predictor`` will use: ``tile`` 0 is its card's (1024 when it has none),
    ``overlap`` -1 is 128 pixels or a quarter of a tile when tiles are smaller than 512. Raises on an overlap
    the tiles cannot take, and for graders (they see the whole image)."""
    if predictor.config.kind == "grader":
        raise CellCounterError("graders look at the whole image; tiling does not apply")
    tile = tile or int(getattr(predictor.config, "tile_size", 0) or 1024)
    if overlap == -1:  # a card may give small tiles: the default must still fit inside one
        overlap = min(128, tile // 4)
    if overlap < 0 or overlap > tile // 2:  # more: tiles step by a few pixels, for hours
        raise CellCounterError(f"the tile overlap must be between 0 and half the tile size ({tile // 2}), "
                               f"got {overlap}")
    return tile, overlap


@dataclass
class TiledPredictor:
    predictor: Predictor
    tile_size: int = 0  # 0: the model's own (its card's tile_size; 1024 when it has none)
    overlap: int = -1  # -1: 128 pixels, or a quarter of a tile when tiles are smaller than 512
    nms_iou: float = 0.5
    duplicate_iou: float = 0.5
    # skip tiles without tissue (a low-resolution tissue mask): None decides, on for slides read lazily
    skip_background: bool | None = None
    skipped_tiles: int = 0  # of the last prediction
    # predict and keep only inside these (objects whose centre lies in one); tiles outside all are skipped
    regions: list[Region] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.tile_size, self.overlap = tile_geometry(self.predictor, self.tile_size, self.overlap)

    def tiles(self, height: int, width: int) -> list[tuple[int, int, int, int, tuple, tuple]]:
        ys, xs = tile_starts(height, self.tile_size, self.overlap), tile_starts(width, self.tile_size, self.overlap)
        cy, cx = core_bounds(ys, self.tile_size, height), core_bounds(xs, self.tile_size, width)
        return [(y, x, min(y + self.tile_size, height), min(x + self.tile_size, width), cy[i], cx[j])
                for i, y in enumerate(ys) for j, x in enumerate(xs)]

    def predict_array(self, image: np.ndarray, image_path: str = "image", progress: Progress | None = None,
                      should_stop: ShouldStop | None = None) -> ImageAnnotation:
        src = ImageSource.from_array(image_path, image)
        return self.predict_source(src, progress, should_stop)

    def predict_source(self, src: ImageSource, progress: Progress | None = None,
                       should_stop: ShouldStop | None = None) -> ImageAnnotation:
        h, w = src.height, src.width
        check_predictable(h, w)
        kind = self.predictor.config.kind
        tiles = self.tiles(h, w)
        self.skipped_tiles = 0
        if len(tiles) > 1 and (self.skip_background or (self.skip_background is None and src.lazy)):
            from cellcounter.inference.tissue import tissue_mask

            tissue = tissue_mask(src)
            if tissue is not None:
                kept = [t for t in tiles if tissue.covers(t[0], t[2], t[1], t[3])]
                self.skipped_tiles = len(tiles) - len(kept)
                tiles = kept
        if self.regions:
            kept = [t for t in tiles if any(r.intersects_box(t[1], t[0], t[3], t[2]) for r in self.regions)]
            self.skipped_tiles += len(tiles) - len(kept)
            tiles = kept
        boxes, scores, classes, border = [], [], [], []
        painter = InstancePainter((h, w), self.duplicate_iou) if kind in INSTANCE_KINDS else None
        mask_threshold = getattr(self.predictor.config, "mask_threshold", 0.5)
        levels = source_levels(src)  # one intensity stretch for the whole image: tiles agree with each other
        # the next tile is read (decompressed) in a thread while the model works on this one
        reader = ThreadPoolExecutor(max_workers=1)
        pending = reader.submit(src.read_region, *_region(tiles[0])) if tiles else None
        try:
            for done, (y0, x0, _y1, _x1, (cy0, cy1), (cx0, cx1)) in enumerate(tiles):
                if should_stop is not None and should_stop():
                    raise Cancelled("prediction cancelled")
                pixels = pending.result()
                if levels is not None:
                    pixels = to_float_rgb(pixels, levels)
                if done + 1 < len(tiles):
                    pending = reader.submit(src.read_region, *_region(tiles[done + 1]))
                det = self.predictor.raw(pixels)
                b = det.boxes + np.array([x0, y0, x0, y0], dtype=np.float64)
                ctr_x, ctr_y = (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2
                keep = (ctr_x >= cx0) & (ctr_x < cx1) & (ctr_y >= cy0) & (ctr_y < cy1)
                if painter is not None:
                    for i, mask, my, mx in det.instance_masks(mask_threshold):  # surest first
                        if keep[i]:
                            painter.paste(mask, y0 + my, x0 + mx, det.classes[i], det.scores[i])
                else:
                    boxes.append(b[keep])
                    scores.append(det.scores[keep])
                    classes.append(det.classes[keep])
                    border.append(_border_distance(ctr_x[keep], ctr_y[keep], (cy0, cy1), (cx0, cx1), h, w))
                if progress is not None:
                    progress(done + 1, len(tiles))
        finally:
            reader.shutdown(wait=True, cancel_futures=True)
        ann = ImageAnnotation(str(src.path), w, h, tuple(self.predictor.card.class_names),
                              task=self.predictor.card.task, model_version=self.predictor.model_version,
                              pixel_size_um=src.pixel_size_um)
        if painter is not None:
            ann.masks = painter.result()
            return keep_inside(ann, self.regions)
        b = np.concatenate(boxes) if boxes else np.zeros((0, 4))
        s = np.concatenate(scores) if scores else np.zeros(0)
        c = np.concatenate(classes) if classes else np.zeros(0, np.int64)
        if len(tiles) > 1 and len(b):
            # Tiles own the boxes centred in their cores, so a duplicate pair straddles a core border, and
            # two boxes that overlap at all have centres less than the larger box side apart: only boxes
            # that close to a border between tiles can be duplicates (NMS over all 100,000 boxes of a
            # slide took 8 s; over the border band a fraction of that).
            side = np.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1])
            near = np.concatenate(border) < side.max()
            if near.any():
                idx = np.nonzero(near)[0]
                kept = batched_nms(b[idx], s[idx], c[idx], self.nms_iou)
                drop = np.ones(len(idx), bool)
                drop[kept] = False
                keep = np.ones(len(b), bool)
                keep[idx[drop]] = False
                b, s, c = b[keep], s[keep], c[keep]
        ann.boxes = Boxes(b, c, s, np.full(len(s), Origin.MODEL, np.uint8))
        return keep_inside(ann, self.regions)


def source_levels(src: ImageSource, max_side: int = 2048) -> tuple[float, float] | None:
    """:func:`intensity_levels` of a whole image, from a subsampled view when it is large or lazy."""
    if src.dtype == np.uint8 or src.dtype == np.bool_:
        return None
    view = np.asarray(src.display_levels(max_side)[-1]) if src.lazy else src.read()
    check_has_pixels(view)
    return intensity_levels(view)
