"""Image-level grade CSVs (IDRiD style) and the counts CSV export.

IDRiD quirks handled: a UTF-8 byte-order mark, header names with trailing
spaces, empty trailing columns, and images listed in the CSV but missing on
disk (skipped with a warning). Training and testing sets reuse ids, so images
are keyed by their path and the split is kept as an attribute.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cellcounter.annotations import Grade, ImageAnnotation, Origin
from cellcounter.errors import FormatError
from cellcounter.fileutil import atomic_write_text
from cellcounter.formats._common import find_image, warn
from cellcounter.imageio import ImageReadError, image_size
from cellcounter.tasks import TASKS

_ORIGINS = {o.name.lower(): o for o in Origin}


def idrid_pairs(path: Path) -> list[tuple[Path, Path, str | None]]:
    """``(csv, image folder, split)`` for an IDRiD folder, or for one CSV (images beside it or in ``images/``)."""
    if path.is_file():
        folder = path.parent / "images" if (path.parent / "images").is_dir() else path.parent
        return [(path, folder, None)]
    gt, orig = path / "2. Groundtruths", path / "1. Original Images"
    if gt.is_dir() and orig.is_dir():
        pairs, skipped = [], []
        for csv_path in sorted(gt.glob("*.csv")):
            low = csv_path.name.lower()
            split = "train" if "train" in low else "test" if "test" in low else None
            key = {"train": "training", "test": "testing"}.get(split or "", "")
            folders = [d for d in orig.iterdir() if d.is_dir() and key and key in d.name.lower()]
            if not folders:  # the official download ships both CSVs even where one split's images are left out
                skipped.append(csv_path.name)
                continue
            pairs.append((csv_path, folders[0], split))
        if not pairs:
            raise FormatError(gt, "no grade CSV with its image folder found" + (
                f" (no image folder under {orig} for {', '.join(skipped)})" if skipped else ""))
        for name in skipped:
            warn(gt / name, f"no image folder for this CSV under {orig}; its grades are not read")
        return pairs
    csvs = sorted(path.glob("*.csv"))
    if len(csvs) == 1:
        return idrid_pairs(csvs[0])
    raise FormatError(path, "not an IDRiD folder and not a folder with exactly one grade CSV")


def read_grade_csv(path: str | Path, class_names=None) -> list[ImageAnnotation]:
    names = tuple(class_names) if class_names else TASKS["retinopathy"].class_names
    out: list[ImageAnnotation] = []
    for csv_path, folder, split in idrid_pairs(Path(path)):
        out.extend(_read_one(csv_path, folder, split, names))
    return out


def _read_one(csv_path: Path, folder: Path, split: str | None, names: tuple[str, ...]) -> list[ImageAnnotation]:
    try:
        text = csv_path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise FormatError(csv_path, f"not UTF-8 text ({exc})") from None
    try:
        rows = list(csv.reader(io.StringIO(text, newline=None)))  # bare CR line endings (old Mac/Excel) too
    except csv.Error as exc:
        raise FormatError(csv_path, f"malformed CSV ({exc})") from None
    rows = [r for r in rows if any(c.strip() for c in r)]
    if not rows:
        raise FormatError(csv_path, "empty CSV")
    header = [h.strip().lower() for h in rows[0]]
    try:
        col_img = next(i for i, h in enumerate(header) if "image" in h)
        col_grade = next(i for i, h in enumerate(header) if "grade" in h)
    except StopIteration:
        raise FormatError(csv_path, f"header must name an image column and a grade column, got {rows[0]}") from None
    col_edema = next((i for i, h in enumerate(header) if "edema" in h), None)
    col_origin = header.index("origin") if "origin" in header else None
    col_split = header.index("split") if "split" in header else None
    prob_cols = [i for i, h in enumerate(header) if h.startswith("p") and h[1:].isdigit()]
    out = []
    missing: list[str] = []
    for line, row in enumerate(rows[1:], start=2):
        row = row + [""] * (len(header) - len(row))
        name = row[col_img].strip()
        if not name:
            raise FormatError(csv_path, f"line {line}: empty image name")
        grade_text = row[col_grade].strip()
        try:
            grade = int(grade_text)
        except ValueError:
            raise FormatError(csv_path, f"line {line} ({name}): grade {grade_text!r} is not a whole number") from None
        if not 0 <= grade < len(names):
            raise FormatError(csv_path, f"line {line} ({name}): grade {grade} outside 0-{len(names) - 1}")
        probs = None
        if prob_cols and any(row[i].strip() for i in prob_cols):
            try:
                probs = np.array([float(row[i]) for i in prob_cols])
            except ValueError:
                raise FormatError(csv_path, f"line {line} ({name}): probabilities must be numbers") from None
        origin = Origin.HUMAN
        if col_origin is not None and row[col_origin].strip():
            o = row[col_origin].strip().lower()
            if o not in _ORIGINS:
                raise FormatError(csv_path, f"line {line} ({name}): unknown origin {o!r}")
            origin = _ORIGINS[o]
        image_path = find_image(folder, Path(name).stem) if not (folder / name).is_file() else folder / name
        if image_path is None:
            missing.append(name)
            continue
        try:
            w, h = image_size(image_path)
        except ImageReadError as exc:
            warn(csv_path, f"line {line}: {exc}; skipped")
            continue
        attrs: dict = {}
        row_split = row[col_split].strip() if col_split is not None else ""
        if split or row_split:
            attrs["split"] = split or row_split
        if col_edema is not None and row[col_edema].strip():
            attrs["macular_edema_risk"] = row[col_edema].strip()
        out.append(ImageAnnotation(image_path=str(image_path), width=w, height=h, class_names=names,
                                   task="retinopathy", grade=Grade(grade, probs, origin), attributes=attrs))
    if missing:
        shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
        warn(csv_path, f"{len(missing)} listed image(s) not found in {folder} and skipped: {shown}")
    return out


def _csv_text(rows: list[list[str]]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue()


def write_grade_csv(anns: Sequence[ImageAnnotation], dst: str | Path) -> list[Path]:
    """One CSV of grades: ``dst`` when it ends in ``.csv``, else ``dst/grades.csv``. Images without a grade are
    left out."""
    dst = Path(dst)
    target = dst if dst.suffix.lower() == ".csv" else dst / "grades.csv"
    graded = [a for a in anns if a.grade is not None]
    n_probs = max((len(a.grade.probabilities) for a in graded if a.grade.probabilities is not None), default=0)
    has_edema = any("macular_edema_risk" in a.attributes for a in graded)
    has_split = any("split" in a.attributes for a in graded)
    header = ["Image name", "Retinopathy grade"] + (["Risk of macular edema"] if has_edema else [])
    header += ["split"] if has_split else []
    header += [f"p{i}" for i in range(n_probs)] + ["origin"]
    rows = [header]
    for a in graded:
        g = a.grade
        row = [a.stem, str(g.value)] + ([str(a.attributes.get("macular_edema_risk", ""))] if has_edema else [])
        row += [str(a.attributes.get("split", ""))] if has_split else []
        probs = [] if g.probabilities is None else [repr(float(p)) for p in g.probabilities]
        row += probs + [""] * (n_probs - len(probs)) + [g.origin.name.lower()]
        rows.append(row)
    atomic_write_text(target, _csv_text(rows))
    return [target]


def write_counts_csv(anns: Sequence[ImageAnnotation], dst: str | Path,
                     score_threshold: float | None = None) -> list[Path]:
    """One row per image, one column per class plus ``total``; a last ``TOTAL`` row sums them.

    When every image has a pixel size, ``<class>_per_mm2`` density columns follow (the
    ``TOTAL`` row then holds the density over all images' area). When images have regions, a ``region``
    column follows ``image``: each image's row (region empty) is followed by one row per region, counting the
    objects centred in it, with the region's area in ``area_mm2`` and densities over that area.
    """
    from cellcounter.regions import region_counts

    dst = Path(dst)
    target = dst if dst.suffix.lower() == ".csv" else dst / "counts.csv"
    classes: list[str] = []
    for a in anns:
        for n in a.class_names:
            if n not in classes:
                classes.append(n)
    with_grades = any(a.grade is not None for a in anns)
    object_classes = [c for c in classes] if any(a.n_objects() for a in anns) or not with_grades else []
    with_density = bool(object_classes) and all(a.pixel_size_um for a in anns)
    with_regions = bool(object_classes) and any(a.regions for a in anns)
    header = ["image"] + (["region"] if with_regions else []) + object_classes + (["total"] if object_classes else [])
    header += ["grade"] if with_grades else []
    header += (["area_mm2"] if with_regions and with_density else []) + (
        [f"{c}_per_mm2" for c in object_classes] if with_density else [])
    total_area = 0.0
    rows = [header]
    totals = np.zeros(len(object_classes), dtype=np.int64)
    for a in anns:
        c = a.counts(score_threshold=score_threshold)
        vals = [c.get(k, 0) for k in object_classes]
        totals += np.array(vals, dtype=np.int64) if vals else 0
        row = [a.name] + ([""] if with_regions else []) + [str(v) for v in vals] + (
            [str(sum(vals))] if object_classes else [])
        if with_grades:
            row.append("" if a.grade is None else str(a.grade.value))
        if with_density:
            area = a.width * a.height * (a.pixel_size_um / 1000.0) ** 2
            d = a.densities_per_mm2(score_threshold=score_threshold) or {}
            row += ([f"{area:.6g}"] if with_regions else []) + [f"{d.get(k, 0.0):.6g}" for k in object_classes]
            total_area += area
        rows.append(row)
        for rc in region_counts(a, score_threshold) if with_regions else []:
            rvals = [rc.counts.get(k, 0) for k in object_classes]
            rrow = [a.name, rc.region] + [str(v) for v in rvals] + [str(sum(rvals))] + ([""] if with_grades else [])
            if with_density:
                dens = rc.densities_per_mm2 or {}
                rrow += [f"{rc.area_mm2:.6g}"] + [f"{dens.get(k, 0.0):.6g}" for k in object_classes]
            rows.append(rrow)
    total_row = ["TOTAL"] + ([""] if with_regions else []) + [str(int(v)) for v in totals] + (
        [str(int(totals.sum()))] if object_classes else [])
    if with_grades:
        total_row.append("")
    if with_density:
        total_row += ([f"{total_area:.6g}"] if with_regions else []) + [f"{v / total_area:.6g}" for v in totals]
    rows.append(total_row)
    atomic_write_text(target, _csv_text(rows))
    return [target]
