"""Helpers shared by the format readers and writers."""

from __future__ import annotations

import warnings
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np

from cellcounter.annotations import ImageAnnotation
from cellcounter.errors import CellCounterWarning, FormatError
from cellcounter.imageio import IMAGE_SUFFIXES
from cellcounter.tasks import TASKS


def warn(path: str | Path, message: str) -> None:
    warnings.warn(f"{path}: {message}", CellCounterWarning, stacklevel=3)


def parse_xml(path: Path) -> ET.Element:
    """Parse an XML file, turning every parser failure into a :class:`FormatError` naming the file."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise FormatError(path, f"cannot read file ({exc.strerror})") from None
    try:
        return ET.fromstring(data)
    except ET.ParseError as exc:
        raise FormatError(path, f"malformed XML ({exc})") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise FormatError(path, f"malformed XML ({exc})") from None


def infer_class_names(names: Iterable[str]) -> tuple[str, tuple[str, ...]] | tuple[None, tuple[str, ...]]:
    """Pick the task whose classes cover ``names`` (keeping the task's order), else first-seen order."""
    seen: list[str] = []
    for n in names:
        if n not in seen:
            seen.append(n)
    for task in TASKS.values():
        if task.kind != "grade" and seen and set(seen) <= set(task.class_names):
            return task.name, task.class_names
    return None, tuple(seen)


def unify_class_names(anns: Sequence[ImageAnnotation], class_names: Sequence[str]) -> None:
    """Re-map every annotation's class ids onto one shared list of names (in place)."""
    target = list(class_names)
    for ann in anns:
        if tuple(ann.class_names) == tuple(target):
            continue
        for name in ann.class_names:
            if name not in target:
                target.append(name)
        lut = np.array([target.index(n) for n in ann.class_names] or [0], dtype=np.int64)
        if len(ann.boxes):
            ann.boxes.classes = lut[ann.boxes.classes]
        if ann.masks is not None and len(ann.masks):
            ann.masks.classes = lut[ann.masks.classes]
        if len(ann.points):
            ann.points.classes = lut[ann.points.classes]
    for ann in anns:
        ann.class_names = tuple(target)


def share_class_names(anns: list[ImageAnnotation], class_names: Sequence[str] | None) -> list[ImageAnnotation]:
    """Give all images of a data set one class list (the task's when the names fit one) and that task."""
    if class_names is None:
        task, class_names = infer_class_names(n for a in anns for n in a.class_names)
    else:
        task = None
    unify_class_names(anns, class_names)
    for a in anns:
        a.task = a.task or task
    return anns


def find_image(folder: Path, stem: str) -> Path | None:
    """The image file called ``stem`` with any known image suffix in ``folder``."""
    for suffix in IMAGE_SUFFIXES + tuple(s.upper() for s in IMAGE_SUFFIXES):
        cand = folder / f"{stem}{suffix}"
        if cand.is_file():
            return cand
    return None


def format_number(v: float) -> str:
    """Integers without a decimal point, other values exactly (so a round trip is lossless)."""
    f = float(v)
    return str(int(f)) if f.is_integer() else repr(f)


def output_targets(anns: Sequence[ImageAnnotation], dst: Path, single_suffixes: tuple[str, ...], what: str,
                   per_image: Callable[[str], Path]) -> list[Path]:
    """Where a writer puts each image's file: ``dst`` itself when its suffix is one of ``single_suffixes`` (one
    image only; ``what`` names that file in the error), else ``per_image(stem)`` for each image."""
    if dst.suffix.lower() in single_suffixes:
        if len(anns) != 1:
            raise FormatError(dst, f"{what} holds one image, not {len(anns)}; give a folder")
        return [dst]
    return [per_image(stem) for stem in unique_stems(anns, dst)]


def unique_stems(anns: Sequence[ImageAnnotation], dst: Path) -> list[str]:
    """Output stems, one per annotation; two images with the same name would overwrite each other."""
    stems = [a.stem for a in anns]
    dupes = {s for s in stems if stems.count(s) > 1}
    if dupes:
        raise FormatError(dst, f"several images share the name(s) {sorted(dupes)[:5]}; "
                               "their label files would overwrite each other")
    return stems
