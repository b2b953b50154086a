"""Compact, code-free serialisation of annotation parts for the project store.

Arrays go through ``numpy.savez_compressed`` and are read back with
``allow_pickle=False``, so a project file can never make the app run code.
"""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np

from cellcounter.annotations import Boxes, Grade, InstanceMasks, Origin, Points


def pack(**arrays: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def unpack(blob: bytes) -> dict[str, np.ndarray]:
    """The arrays of a :func:`pack` blob. Each array's declared size is checked against what the blob holds
    and against the largest label image the app reads, before anything is decompressed: a damaged or hostile
    blob of a few kilobytes claiming gigabytes is refused, not allocated."""
    _check_sizes(blob)
    with np.load(io.BytesIO(blob), allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _check_sizes(blob: bytes) -> None:
    from cellcounter.imageio import max_pixels

    limit = 8 * max_pixels()  # an int32 label image at the pixel limit, with room to spare
    with zipfile.ZipFile(io.BytesIO(blob)) as zf:
        for info in zf.infolist():
            with zf.open(info) as fh:
                version = np.lib.format.read_magic(fh)
                read = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
                    np.lib.format.read_array_header_2_0
                shape, _, dtype = read(fh)
            n = int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
            if n > limit or n > info.file_size:
                raise ValueError(f"the stored array {info.filename} claims {n:,} bytes "
                                 f"({'more than it holds' if n > info.file_size else 'more than any label image'})")


def _id_steps(ids: np.ndarray) -> np.ndarray:
    # ids mostly rise by one: their steps compress to almost nothing, at a fraction of the ids' own cost
    return np.diff(ids, prepend=0)


def _ids(d: dict[str, np.ndarray]) -> np.ndarray | None:
    return np.cumsum(d["id_steps"]) if "id_steps" in d else None  # none: saved by an older version (1..N)


def boxes_blob(b: Boxes) -> bytes:
    return pack(xyxy=b.xyxy, classes=b.classes, scores=b.scores, origins=b.origins, id_steps=_id_steps(b.ids))


def blob_boxes(blob: bytes | None) -> Boxes:
    if not blob:
        return Boxes()
    d = unpack(blob)
    return Boxes(d["xyxy"], d["classes"], d["scores"], d["origins"], _ids(d))


def points_blob(p: Points) -> bytes:
    return pack(rc=p.rc, classes=p.classes, origins=p.origins, id_steps=_id_steps(p.ids))


def blob_points(blob: bytes | None) -> Points:
    if not blob:
        return Points()
    d = unpack(blob)
    return Points(d["rc"], d["classes"], d["origins"], _ids(d))


def masks_blob(m: InstanceMasks | None) -> bytes | None:
    if m is None:
        return None
    return pack(label_image=m.label_image, ids=m.ids, classes=m.classes, scores=m.scores, origins=m.origins)


def blob_masks(blob: bytes | None) -> InstanceMasks | None:
    if not blob:
        return None
    d = unpack(blob)
    return InstanceMasks(d["label_image"], d["ids"], d["classes"], d["scores"], d["origins"])


def grade_json(g: Grade | None) -> str | None:
    if g is None:
        return None
    return json.dumps({
        "value": g.value,
        "probabilities": None if g.probabilities is None else [float(v) for v in g.probabilities],
        "origin": g.origin.name.lower(),
    })


def json_grade(text: str | None) -> Grade | None:
    if not text:
        return None
    d = json.loads(text)
    return Grade(d["value"], d["probabilities"], Origin[d["origin"].upper()])


def mask_diff(before: InstanceMasks | None, after: InstanceMasks | None) -> bytes:
    """A reversible diff of two mask states: the changed window of the label image plus both instance tables.

    A brush stroke on a 1000 x 1000 tile stores a few hundred pixels, not two full images.
    """
    shape = (after or before).shape  # type: ignore[union-attr]
    empty = np.zeros(shape, dtype=np.int32)
    a = before.label_image if before is not None else empty
    b = after.label_image if after is not None else empty
    changed = np.nonzero(a != b)
    if len(changed[0]):
        y0, y1, x0, x1 = changed[0].min(), changed[0].max() + 1, changed[1].min(), changed[1].max() + 1
    else:
        y0 = y1 = x0 = x1 = 0
    arrays = {"window": np.array([y0, y1, x0, x1]), "shape": np.array(shape),
              "before_pixels": a[y0:y1, x0:x1], "after_pixels": b[y0:y1, x0:x1]}
    for tag, m in (("before", before), ("after", after)):
        arrays[f"{tag}_present"] = np.array([m is not None])
        if m is not None:
            arrays.update({f"{tag}_ids": m.ids, f"{tag}_classes": m.classes, f"{tag}_scores": m.scores,
                           f"{tag}_origins": m.origins})
    return pack(**arrays)


def apply_mask_diff(current: InstanceMasks | None, diff: bytes, reverse: bool) -> InstanceMasks | None:
    """Undo (``reverse=True``) or redo a :func:`mask_diff` on the current mask state."""
    d = unpack(diff)
    src, dst = ("after", "before") if reverse else ("before", "after")
    if not bool(d[f"{dst}_present"][0]):
        return None
    shape = tuple(int(v) for v in d["shape"])
    lab = current.label_image.copy() if current is not None else np.zeros(shape, dtype=np.int32)
    y0, y1, x0, x1 = (int(v) for v in d["window"])
    lab[y0:y1, x0:x1] = d[f"{dst}_pixels"]
    return InstanceMasks(lab, d[f"{dst}_ids"], d[f"{dst}_classes"], d[f"{dst}_scores"], d[f"{dst}_origins"])
