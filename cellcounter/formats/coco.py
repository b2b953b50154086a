"""COCO JSON: boxes, instance masks (RLE, polygons on read), categories and image-level attributes.

Files written load in ``pycocotools.coco.COCO`` and evaluate with ``COCOeval``.
What COCO has no field for (grades, click-count points, review status, pixel
size, origins) goes into an ``attributes`` object of the image and extra keys
of each annotation; other tools ignore them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from cellcounter.annotations import Boxes, Grade, ImageAnnotation, InstanceMasks, Origin, Points, ReviewStatus
from cellcounter.errors import FormatError
from cellcounter.fileutil import atomic_write_text
from cellcounter.formats._common import infer_class_names, warn
from cellcounter.imageio import max_pixels

_ORIGIN_NAMES = {o.name.lower(): o for o in Origin}


def _expect(cond: bool, path: Path, where: str, what: str) -> None:
    if not cond:
        raise FormatError(path, f"{where}: {what}")


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v)


def _origin(path: Path, where: str, value: Any) -> Origin:
    if value is None:
        return Origin.HUMAN
    _expect(isinstance(value, str) and value in _ORIGIN_NAMES, path, where,
            f"unknown origin {value!r} (expected one of {sorted(_ORIGIN_NAMES)})")
    return _ORIGIN_NAMES[value]


def coco_file(path: Path) -> Path:
    if path.is_file():
        return path
    files = sorted(path.glob("*.json"))
    if len(files) != 1:
        raise FormatError(path, f"expected one COCO .json file in the folder, found {len(files)}")
    return files[0]


def read_coco(path: str | Path, class_names: Sequence[str] | None = None) -> list[ImageAnnotation]:
    """Read a COCO JSON file (or the one ``.json`` in a folder)."""
    path = coco_file(Path(path))
    try:
        doc = json.loads(path.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise FormatError(path, f"malformed JSON ({exc})") from None
    except RecursionError:
        raise FormatError(path, "JSON nested too deeply to be a COCO file") from None
    _expect(isinstance(doc, dict), path, "top level", "expected a JSON object with 'images' and 'annotations'")
    images = doc.get("images")
    _expect(isinstance(images, list), path, "images", "missing or not a list")
    anns_in = doc.get("annotations", [])
    _expect(isinstance(anns_in, list), path, "annotations", "not a list")
    cats = doc.get("categories", [])
    _expect(isinstance(cats, list), path, "categories", "not a list")

    cat_name: dict[int, str] = {}
    for i, c in enumerate(cats):
        where = f"categories[{i}]"
        _expect(isinstance(c, dict), path, where, "not an object")
        _expect(isinstance(c.get("id"), int) and not isinstance(c.get("id"), bool), path, where,
                "'id' must be an integer")
        _expect(isinstance(c.get("name"), str) and c["name"] != "", path, where, "'name' must be a non-empty string")
        _expect(c["id"] not in cat_name, path, where, f"duplicate category id {c['id']}")
        cat_name[c["id"]] = c["name"]
    if class_names is None:
        task, names = infer_class_names(cat_name[k] for k in sorted(cat_name))
    else:
        task, names = None, tuple(class_names)
    names = list(names)
    for n in (cat_name[k] for k in sorted(cat_name)):
        if n not in names:
            names.append(n)
    cat_index = {cid: names.index(n) for cid, n in cat_name.items()}

    per_image: dict[int, dict[str, Any]] = {}
    order: list[int] = []
    for i, im in enumerate(images):
        where = f"images[{i}]"
        _expect(isinstance(im, dict), path, where, "not an object")
        iid = im.get("id")
        _expect(isinstance(iid, int) and not isinstance(iid, bool), path, where, "'id' must be an integer")
        _expect(iid not in per_image, path, where, f"duplicate image id {iid}")
        _expect(isinstance(im.get("file_name"), str) and im["file_name"] != "", path, where,
                "'file_name' must be a non-empty string")
        _expect("\0" not in im["file_name"], path, where, "'file_name' holds a NUL character: no file is named so")
        w, h = im.get("width"), im.get("height")
        _expect(isinstance(w, int) and isinstance(h, int) and not isinstance(w, bool) and not isinstance(h, bool),
                path, where, f"'width' and 'height' must be integers, got {w!r} x {h!r}")
        _expect(w > 0 and h > 0, path, where, f"image size must be positive, got {w} x {h}")
        _expect(w * h <= max_pixels(), path, where, f"image size {w} x {h} is more than the {max_pixels() / 1e6:.0f} "
                "megapixels a mask is decoded at (CELLCOUNTER_MAX_PIXELS raises the limit)")
        per_image[iid] = {"im": im, "boxes": [], "masks": []}
        order.append(iid)

    for i, a in enumerate(anns_in):
        where = f"annotations[{i}]"
        _expect(isinstance(a, dict), path, where, "not an object")
        iid = a.get("image_id")
        _expect(iid in per_image, path, where, f"image_id {iid!r} is not among the images")
        cid = a.get("category_id")
        _expect(cid in cat_index, path, where, f"category_id {cid!r} is not among the categories")
        if a.get("iscrowd", 0):
            warn(path, f"{where}: crowd region skipped (it is not one object)")
            continue
        entry = per_image[iid]
        h, w = entry["im"]["height"], entry["im"]["width"]
        score = a.get("score")
        _expect(score is None or _is_number(score), path, where, f"'score' must be a number, got {score!r}")
        origin = _origin(path, where, a.get("origin"))
        seg = a.get("segmentation")
        rec = (cat_index[cid], np.nan if score is None else float(score), origin)
        if seg:
            entry["masks"].append((_decode_segmentation(path, where, seg, h, w), *rec))
        else:
            bbox = a.get("bbox")
            _expect(isinstance(bbox, list) and len(bbox) == 4 and all(_is_number(v) for v in bbox), path, where,
                    f"'bbox' must be 4 numbers [x, y, width, height], got {bbox!r}")
            x, y, bw, bh = (float(v) for v in bbox)
            if bw <= 0 or bh <= 0:
                warn(path, f"{where}: box of size {bw:g} x {bh:g} dropped")
                continue
            if x >= w or y >= h or x + bw <= 0 or y + bh <= 0:  # as VOC: nothing of it on the image
                warn(path, f"{where}: box [{x:g}, {y:g}, {bw:g}, {bh:g}] lies outside the {w} x {h} image; dropped")
                continue
            entry["boxes"].append(((x, y, x + bw, y + bh), *rec))

    info = doc.get("info")
    root_text = info.get("image_root") if isinstance(info, dict) else None
    root = Path(root_text) if isinstance(root_text, str) and root_text and "\0" not in root_text else None
    out = []
    for iid in order:
        e = per_image[iid]
        out.append(_build_image(path, e, list(names), task, root))
    return out


def _decode_segmentation(path: Path, where: str, seg: Any, h: int, w: int) -> np.ndarray:
    try:
        if isinstance(seg, dict):
            size = seg.get("size")
            _expect(isinstance(size, list) and len(size) == 2, path, where, "RLE without a [height, width] 'size'")
            _expect(list(size) == [h, w], path, where,
                    f"mask is {size[1]}x{size[0]} but its image is {w}x{h}")
            counts = seg.get("counts")
            if isinstance(counts, list):
                rle = mask_utils.frPyObjects(seg, h, w)
            else:
                _expect(isinstance(counts, str), path, where, "RLE 'counts' must be a string or a list")
                rle = {"size": size, "counts": counts.encode("ascii")}
            return mask_utils.decode(rle).astype(bool)
        _expect(isinstance(seg, list) and all(isinstance(p, list) for p in seg), path, where,
                "'segmentation' must be an RLE object or a list of polygons")
        polys = [p for p in seg if len(p) >= 6 and len(p) % 2 == 0 and all(_is_number(v) for v in p)]
        _expect(len(polys) == len(seg), path, where, "each polygon must be an even list of at least 6 numbers")
        for poly in polys:  # a little outside the image is common; a vertex at 1e9 is not a polygon of it
            xs, ys = np.asarray(poly[0::2], float), np.asarray(poly[1::2], float)
            _expect(np.isfinite(xs).all() and np.isfinite(ys).all() and xs.min() >= -w and xs.max() <= 2 * w
                    and ys.min() >= -h and ys.max() <= 2 * h, path, where,
                    f"polygon vertices reach ({xs.max():g}, {ys.max():g}) / ({xs.min():g}, {ys.min():g}), far "
                    f"outside the {w} x {h} image")
        rles = mask_utils.frPyObjects(polys, h, w)
        return mask_utils.decode(mask_utils.merge(rles)).astype(bool)
    except FormatError:
        raise
    except Exception as exc:  # noqa: BLE001 - pycocotools raises bare Exceptions and TypeErrors on bad input
        raise FormatError(path, f"{where}: undecodable segmentation ({exc})") from None


def _build_image(path: Path, e: dict[str, Any], names: list[str], task: str | None,
                 root: Path | None = None) -> ImageAnnotation:
    im = e["im"]
    h, w = im["height"], im["width"]
    file_name = im["file_name"]
    image_path = Path(file_name) if Path(file_name).is_absolute() else Path(os.path.normpath(path.parent / file_name))
    # where it is not beside the JSON: under the image root the writer recorded, else in images/
    for other in ([root / file_name] if root is not None else []) + [path.parent / "images" / Path(file_name).name]:
        if not image_path.exists() and other.exists():
            image_path = Path(os.path.normpath(other))
    attrs = im.get("attributes") or {}
    where = f"image {im['id']} attributes"
    if not isinstance(attrs, dict):
        raise FormatError(path, f"{where}: not an object")
    boxes = Boxes()
    if e["boxes"]:
        xyxy, cls, sc, org = zip(*e["boxes"])
        boxes = Boxes(np.array(xyxy), cls, sc, org)
    masks = None
    if e["masks"]:
        ms, cls, sc, org = zip(*e["masks"])
        masks = InstanceMasks.from_binary_masks(ms, (h, w), cls, sc, org)
        if len(masks) < len(ms):
            warn(path, f"image {im['id']}: {len(ms) - len(masks)} instance(s) fully covered by others were dropped")
    points = Points()
    if "points" in attrs:
        pts = attrs["points"]
        ok = isinstance(pts, list) and all(
            isinstance(p, list) and len(p) in (3, 4) and all(_is_number(v) for v in p[:3]) for p in pts
        )
        _expect(ok, path, where, "'points' must be a list of [x, y, class] or [x, y, class, origin]")
        for p in pts:
            _expect(0 <= int(p[2]) < len(names), path, where, f"point class {p[2]} has no category")
        points = Points.from_xy(
            np.array([p[:2] for p in pts], dtype=float).reshape(-1, 2),
            [int(p[2]) for p in pts],
            [_origin(path, where, p[3]) if len(p) == 4 else Origin.HUMAN for p in pts],
        )
    grade = None
    if attrs.get("grade") is not None:
        g = attrs["grade"]
        _expect(isinstance(g, int) and not isinstance(g, bool) and g >= 0, path, where,
                f"'grade' must be a non-negative integer, got {g!r}")
        probs = attrs.get("grade_probabilities")
        _expect(probs is None or (isinstance(probs, list) and all(_is_number(v) for v in probs)), path, where,
                "'grade_probabilities' must be a list of numbers")
        grade = Grade(g, None if probs is None else np.array(probs), _origin(path, where, attrs.get("grade_origin")))
    review = attrs.get("review", "unreviewed")
    _expect(review in {s.value for s in ReviewStatus}, path, where, f"unknown review status {review!r}")
    pixel_size = attrs.get("pixel_size_um")
    _expect(pixel_size is None or (_is_number(pixel_size) and pixel_size > 0), path, where,
            "'pixel_size_um' must be a positive number")
    grade_task = attrs.get("task")
    return ImageAnnotation(
        image_path=str(image_path),
        width=w,
        height=h,
        class_names=tuple(names),
        task=grade_task if isinstance(grade_task, str) else task,
        boxes=boxes,
        masks=masks,
        points=points,
        grade=grade,
        content_hash=attrs.get("content_hash") if isinstance(attrs.get("content_hash"), str) else None,
        pixel_size_um=pixel_size,
        review=ReviewStatus(review),
    )


def encode_mask(binary: np.ndarray) -> dict[str, Any]:
    """A binary mask as a COCO RLE with a string ``counts`` (JSON-serialisable)."""
    rle = mask_utils.encode(np.asfortranarray(binary.astype(np.uint8)))
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": rle["counts"].decode("ascii")}


def encode_crop(crop: np.ndarray, top: int, left: int, height: int, width: int) -> dict[str, Any]:
    """The COCO RLE of a full ``height`` x ``width`` mask that is zero outside ``crop`` (placed at ``top``,
    ``left``), built from the crop alone: an instance costs its bounding box, not the whole image (5,000 nuclei on
    a 2048 x 2048 tile took minutes when each was encoded from a full-image mask)."""
    h, w = crop.shape
    cols = np.zeros((w, h + 2), dtype=np.int8)
    cols[:, 1:-1] = crop.T.astype(bool)  # column-major, as COCO counts run
    j, i = np.nonzero(np.diff(cols, axis=1))  # per column: where a run of ones starts, then where it ends
    pos = (left + j).astype(np.int64) * height + top + i
    if len(pos) > 2:  # a run ending at a column's last row and going on at the next column's first row is one
        keep = np.ones(len(pos), dtype=bool)
        same = np.nonzero(pos[1:-1:2] == pos[2::2])[0] * 2 + 1  # an end equal to the next start
        keep[same] = keep[same + 1] = False
        pos = pos[keep]
    counts = np.diff(np.concatenate([[0], pos, [height * width]])).tolist()
    if len(counts) > 1 and counts[-1] == 0:  # ones to the very end: no closing run of zeros, as pycocotools
        counts.pop()
    rle = mask_utils.frPyObjects({"size": [height, width], "counts": counts}, height, width)
    return {"size": [height, width], "counts": rle["counts"].decode("ascii")}


def coco_document(anns: Sequence[ImageAnnotation], base: Path, image_root: Path | None = None) -> dict[str, Any]:
    """Build the COCO document. ``file_name`` is relative to an image root, as COCO tools take it (pycocotools,
    detectron2's ``image_root``, CVAT): ``image_root`` when given, else the folder the images share (one
    folder: the bare file names); the root is recorded in ``info.image_root`` for reading back. Images outside
    the root keep a path relative to ``base`` (the JSON's folder)."""
    root = Path(image_root).resolve() if image_root is not None else _shared_folder(anns)
    class_names: list[str] = []
    for a in anns:
        for n in a.class_names:
            if n not in class_names:
                class_names.append(n)
    images, annotations = [], []
    ann_id = 1
    for img_id, a in enumerate(anns, start=1):
        lut = [class_names.index(n) + 1 for n in a.class_names]
        images.append({"id": img_id, "file_name": _under(a.image_path, root) or _relative(a.image_path, base),
                       "width": a.width,
                       "height": a.height, "attributes": _attributes(a, lut)})
        b = a.boxes
        for i in range(len(b)):
            x1, y1, x2, y2 = (float(v) for v in b.xyxy[i])
            rec = {"id": ann_id, "image_id": img_id, "category_id": lut[int(b.classes[i])],
                   "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1), "iscrowd": 0}
            _score_origin(rec, b.scores[i], b.origins[i])
            annotations.append(rec)
            ann_id += 1
        if a.masks is not None and len(a.masks):
            m = a.masks
            bbs = m.bounding_boxes().xyxy
            areas = m.areas()
            lab = m.label_image
            for i in range(len(m)):
                x1, y1, x2, y2 = (float(v) for v in bbs[i])
                r0, c0, r1, c1 = int(y1), int(x1), int(np.ceil(y2)), int(np.ceil(x2))
                crop = lab[r0:r1, c0:c1] == m.ids[i]
                rec = {"id": ann_id, "image_id": img_id, "category_id": lut[int(m.classes[i])],
                       "bbox": [x1, y1, x2 - x1, y2 - y1], "area": int(areas[i]), "iscrowd": 0,
                       "segmentation": encode_crop(crop, r0, c0, *lab.shape)}
                _score_origin(rec, m.scores[i], m.origins[i])
                annotations.append(rec)
                ann_id += 1
    categories = [{"id": i + 1, "name": n, "supercategory": "cell"} for i, n in enumerate(class_names)]
    info = {"description": "written by cellcounter"} | ({"image_root": root.as_posix()} if root else {})
    return {"info": info, "images": images, "annotations": annotations, "categories": categories}


def _shared_folder(anns: Sequence[ImageAnnotation]) -> Path | None:
    """The deepest folder holding every image (all paths absolute), else ``None``."""
    paths = [Path(a.image_path) for a in anns]
    if not paths or not all(p.is_absolute() for p in paths):
        return None
    try:
        return Path(os.path.commonpath([str(p.parent) for p in paths]))
    except ValueError:  # another drive on Windows
        return None


def _under(image_path: str, root: Path | None) -> str | None:
    """``image_path`` relative to ``root`` when it lies under it."""
    p = Path(image_path)
    if root is None or not p.is_absolute():
        return None
    try:
        return p.relative_to(root).as_posix()
    except ValueError:
        return None


def _score_origin(rec: dict[str, Any], score: float, origin: int) -> None:
    if not np.isnan(score):
        rec["score"] = float(score)
    if origin != Origin.HUMAN:
        rec["origin"] = Origin(int(origin)).name.lower()


def _attributes(a: ImageAnnotation, lut: list[int]) -> dict[str, Any]:
    attrs: dict[str, Any] = {"review": ReviewStatus(a.review).value}
    if a.task:
        attrs["task"] = a.task
    if a.pixel_size_um:
        attrs["pixel_size_um"] = a.pixel_size_um
    if a.content_hash:
        attrs["content_hash"] = a.content_hash
    if len(a.points):
        xy = a.points.xy
        attrs["points"] = [
            [float(xy[i, 0]), float(xy[i, 1]), lut[int(a.points.classes[i])] - 1]
            + ([Origin(int(a.points.origins[i])).name.lower()] if a.points.origins[i] != Origin.HUMAN else [])
            for i in range(len(a.points))
        ]
    if a.grade is not None:
        attrs["grade"] = a.grade.value
        if a.grade.probabilities is not None:
            attrs["grade_probabilities"] = [float(v) for v in a.grade.probabilities]
        attrs["grade_origin"] = a.grade.origin.name.lower()
    return attrs


def _relative(image_path: str, base: Path) -> str:
    p = Path(image_path)
    if not p.is_absolute():
        return p.as_posix()
    try:
        return Path(os.path.relpath(p, base)).as_posix()
    except ValueError:  # another drive on Windows
        return p.as_posix()


def write_coco(anns: Sequence[ImageAnnotation], dst: str | Path, image_root: str | Path | None = None) -> list[Path]:
    """Write one COCO file: ``dst`` when it ends in ``.json``, else ``dst/annotations.json``; ``file_name``
    relative to ``image_root`` (default: the images' shared folder, see :func:`coco_document`)."""
    dst = Path(dst)
    target = dst if dst.suffix.lower() == ".json" else dst / "annotations.json"
    doc = coco_document(anns, target.parent.resolve(), image_root)
    atomic_write_text(target, json.dumps(doc))
    return [target]
