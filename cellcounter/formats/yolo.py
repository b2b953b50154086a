"""The YOLO detection layout (Ultralytics, Roboflow, CVAT, Label Studio, X-AnyLabeling).

A folder holds ``images/`` and ``labels/``, either flat or with one sub-folder per split
(``images/train/a.png`` + ``labels/train/a.txt``), and names its classes in ``data.yaml``
(``names``: a list or an ``{id: name}`` mapping) or ``classes.txt`` (one name a line). Each label file
has a line per box, ``CLASS CX CY W H`` with the centre and size as fractions of the image; an image
without a label file, or with an empty one, has no boxes. A sixth column is read as a confidence
(Ultralytics' ``save_conf``); a longer line of coordinate pairs is a polygon, read as its bounding box.

Class names are mapped by meaning onto the task's (``White Blood Cell (WBC)`` and ``Platelet`` are the
blood task's ``WBC`` and ``Platelets``), so a data set that numbers its classes differently reads right.
"""

from __future__ import annotations

import math
import os
import re
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cellcounter.annotations import Boxes, ImageAnnotation
from cellcounter.errors import FormatError
from cellcounter.fileutil import atomic_write_bytes, atomic_write_text
from cellcounter.formats._common import share_class_names, unique_stems, warn
from cellcounter.imageio import IMAGE_SUFFIXES, MAX_SIDE, image_size
from cellcounter.tasks import TASKS

_EDGE_SLACK = 1e-3  # fractions this far past 0 or 1 are rounding of a box touching the edge, not an error
_MAX_LINES = 1_000_000  # boxes per label file: past this a file is not a label file


def is_yolo_layout(path: Path) -> bool:
    return path.is_dir() and ((path / "data.yaml").is_file()
                              or ((path / "images").is_dir() and (path / "labels").is_dir()))


def _key(name: str) -> str:
    k = re.sub(r"[^a-z0-9]", "", name.lower())
    return k[:-1] if k.endswith("s") and len(k) > 3 else k


def canonical_name(name: str) -> str:
    """A task's own class name for ``name`` when one means the same, else ``name`` as written."""
    name = name.strip()
    cands = [name] + re.findall(r"\(([^)]+)\)", name)  # "White Blood Cell (WBC)" -> also "WBC"
    for task in TASKS.values():
        if task.kind == "grade":
            continue
        for known in task.class_names:
            if any(_key(c) == _key(known) for c in cands):
                return known
    return name


def _yaml_names(path: Path) -> list[str] | None:
    import yaml

    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise FormatError(path, f"cannot read the YAML ({exc})") from None
    if not isinstance(doc, dict) or "names" not in doc:
        return None
    names = doc["names"]
    if isinstance(names, dict):
        try:
            ids = sorted(int(k) for k in names)
        except (TypeError, ValueError):
            raise FormatError(path, "names: the keys of a names mapping must be class numbers") from None
        if ids != list(range(len(ids))):
            raise FormatError(path, f"names: class numbers must run 0..{len(ids) - 1}, got {ids[:10]}")
        names = [names[k] if k in names else names[str(k)] for k in ids]
    if not isinstance(names, list) or not all(isinstance(n, (str, int, float)) for n in names):
        raise FormatError(path, "names must be a list of class names or a mapping of numbers to names")
    return [str(n) for n in names]


def _txt_names(path: Path) -> list[str]:
    try:
        lines = [ln.strip() for ln in path.read_text(encoding="utf-8-sig").splitlines() if ln.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise FormatError(path, f"cannot read the class names ({exc})") from None
    numbered = [re.match(r"^(\d+)\s+(.+)$", ln) for ln in lines]
    if lines and all(m and int(m.group(1)) == i for i, m in enumerate(numbered)):  # "0 White Blood Cell (WBC)"
        return [m.group(2).strip() for m in numbered]
    return lines


def yolo_class_names(root: Path) -> list[str]:
    """The data set's class names in id order, from ``data.yaml`` (preferred) or ``classes.txt``."""
    for cand in (root / "data.yaml", root / "dataset.yaml"):
        if cand.is_file():
            names = _yaml_names(cand)
            if names is not None:
                return names
    for cand in (root / "classes.txt", root / "obj.names", root / "labels" / "classes.txt"):
        if cand.is_file():
            return _txt_names(cand)
    raise FormatError(root, "no class names: a YOLO folder needs data.yaml (names: [...]) or classes.txt")


def yolo_splits(root: Path) -> list[str]:
    """The split sub-folders of ``images/`` (``[""]`` for a flat layout)."""
    images = root / "images"
    if not images.is_dir():
        raise FormatError(root, "no images/ folder beside labels/")
    subs = sorted(d.name for d in images.iterdir() if d.is_dir())
    flat = any(f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES for f in images.iterdir())
    return ([""] if flat or not subs else []) + subs


def split_stems(root: Path, split: str) -> set[str]:
    """Image ids (``split/stem``) of one split folder, as :func:`cellcounter.evaluate.image_id` writes them."""
    folder = root / "images" / split
    return {f"{split}/{f.stem}" for f in folder.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES}


def read_yolo(path: str | Path, class_names: Sequence[str] | None = None) -> list[ImageAnnotation]:
    """Read a YOLO folder (every split in it); each annotation records its split in ``attributes``."""
    root = Path(path)
    names = [canonical_name(n) for n in yolo_class_names(root)]
    anns = []
    for split in yolo_splits(root):
        img_dir, lab_dir = root / "images" / split, root / "labels" / split
        for img in sorted(f for f in img_dir.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES):
            ann = _read_one(img, lab_dir / f"{img.stem}.txt", names)
            if split:
                ann.attributes["split"] = split
            anns.append(ann)
    if not anns:
        raise FormatError(root, "no images found under images/")
    return share_class_names(anns, class_names)


def _read_one(image: Path, label: Path, names: list[str]) -> ImageAnnotation:
    width, height = image_size(image)
    xyxy, classes, scores = [], [], []
    if label.exists():
        if not label.is_file():
            raise FormatError(label, "is not a regular file")
        if label.stat().st_size > _MAX_LINES * 64:
            raise FormatError(label, f"is {label.stat().st_size:,} bytes: too large for a label file")
        try:
            text = label.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError:
            raise FormatError(label, "is not a text file") from None
        for n, line in enumerate(text.splitlines(), 1):
            fields = line.split()
            if not fields:
                continue
            box = _parse_line(label, n, fields, len(names))
            if box is None:
                continue
            cls, (cx, cy, w, h), score = box
            x1, y1 = max(0.0, (cx - w / 2)) * width, max(0.0, (cy - h / 2)) * height
            x2, y2 = min(1.0, (cx + w / 2)) * width, min(1.0, (cy + h / 2)) * height
            if x2 <= x1 or y2 <= y1:
                warn(label, f"line {n}: box of no area dropped")
                continue
            xyxy.append((x1, y1, x2, y2))
            classes.append(cls)
            scores.append(score)
    return ImageAnnotation(image_path=str(image), width=width, height=height, class_names=tuple(names),
                           boxes=Boxes(np.array(xyxy, dtype=float).reshape(-1, 4), np.array(classes, dtype=np.int64),
                                       np.array(scores, dtype=float)))


def _parse_line(label: Path, n: int, fields: list[str], n_classes: int):
    where = f"line {n}"
    try:
        cls_f = float(fields[0])
        values = [float(v) for v in fields[1:]]
    except ValueError:
        raise FormatError(label, f"{where}: expected numbers, got {' '.join(fields)[:80]!r}") from None
    if not cls_f.is_integer() or not 0 <= cls_f < n_classes:
        raise FormatError(label, f"{where}: class {fields[0]} is not one of the {n_classes} named classes "
                                 f"(0..{n_classes - 1})")
    if not all(math.isfinite(v) for v in values):
        raise FormatError(label, f"{where}: coordinates must be finite numbers")
    score = math.nan
    if len(values) in (4, 5):
        cx, cy, w, h = values[:4]
        if len(values) == 5:
            score = values[4]
        if w < 0 or h < 0:
            raise FormatError(label, f"{where}: negative width or height")
    elif len(values) >= 6 and len(values) % 2 == 0:  # a segment: x1 y1 x2 y2 ... -> its bounding box
        xs, ys = values[0::2], values[1::2]
        cx, cy, w, h = (min(xs) + max(xs)) / 2, (min(ys) + max(ys)) / 2, max(xs) - min(xs), max(ys) - min(ys)
    else:
        raise FormatError(label, f"{where}: expected 'class cx cy w h', got {len(fields)} values")
    lo, hi = cx - w / 2, cx + w / 2
    lo_y, hi_y = cy - h / 2, cy + h / 2
    if max(abs(v) for v in (cx, cy, w, h)) > 1.5:  # pixels where fractions belong: a common export mistake
        raise FormatError(label, f"{where}: coordinates must be fractions of the image (0 to 1), "
                                 f"got {' '.join(fields[1:5])}")
    if min(lo, lo_y) < -_EDGE_SLACK or max(hi, hi_y) > 1 + _EDGE_SLACK:
        if hi <= 0 or lo >= 1 or hi_y <= 0 or lo_y >= 1:
            warn(label, f"{where}: box lies outside the image; dropped")
            return None
        warn(label, f"{where}: box reaches past the image edge; clipped")
    return int(cls_f), (cx, cy, w, h), score


def _line(ann: ImageAnnotation, i: int, lut: np.ndarray) -> str:
    x1, y1, x2, y2 = (float(v) for v in ann.boxes.xyxy[i])
    w, h = ann.width, ann.height
    vals = ((x1 + x2) / 2 / w, (y1 + y2) / 2 / h, (x2 - x1) / w, (y2 - y1) / h)
    return f"{int(lut[int(ann.boxes.classes[i])])} " + " ".join(f"{min(max(v, 0.0), 1.0):.6f}" for v in vals)


def write_yolo(anns: Sequence[ImageAnnotation], dst: str | Path) -> list[Path]:
    """Write ``dst/labels/<stem>.txt`` per image, ``dst/data.yaml`` and ``classes.txt`` naming the classes, and
    the images into ``dst/images/`` (linked where the disk allows, else copied), so that ``dst`` is a
    complete data set YOLO tools and :func:`read_yolo` open. Confidences are not written (training tools
    expect five columns)."""
    dst = Path(dst)
    if dst.suffix:
        raise FormatError(dst, "a YOLO data set is a folder; give a folder name without a suffix")
    stems = unique_stems(anns, dst)
    names: list[str] = []
    for a in anns:
        for n in a.class_names:
            if n not in names:
                names.append(n)
    payloads = []
    for a in anns:
        if max(a.width, a.height) > MAX_SIDE or a.width <= 0 or a.height <= 0:
            raise FormatError(a.image_path, f"image size {a.width} x {a.height} cannot be written as fractions")
        lut = np.array([names.index(n) for n in a.class_names] or [0], dtype=np.int64)
        payloads.append("".join(_line(a, i, lut) + "\n" for i in range(len(a.boxes))))
    written: list[Path] = []
    for a, stem, text in zip(anns, stems, payloads):
        target = dst / "labels" / f"{stem}.txt"
        atomic_write_text(target, text)
        written.append(target)
        src = Path(a.image_path)
        if src.is_file():
            img_target = dst / "images" / f"{stem}{src.suffix.lower()}"
            if not img_target.exists() or not os.path.samefile(src, img_target):
                _place_image(src, img_target)
            written.append(img_target)
        else:
            warn(dst, f"image {src} not found; its labels are written without it")
    atomic_write_text(dst / "classes.txt", "".join(n + "\n" for n in names))
    yaml_names = "[" + ", ".join(_yaml_quote(n) for n in names) + "]"
    atomic_write_bytes(dst / "data.yaml", (f"path: .\ntrain: images\nval: images\nnc: {len(names)}\n"
                                           f"names: {yaml_names}\n").encode())
    return [dst / "data.yaml", dst / "classes.txt"] + written


def _yaml_quote(name: str) -> str:
    return "'" + name.replace("'", "''") + "'"


def _place_image(src: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copyfile(src, tmp)
    os.replace(tmp, target)
