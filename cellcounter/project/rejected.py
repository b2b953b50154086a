"""The model boxes a person deleted from an image, remembered so that a new prediction does not bring them back.

Stored per image in the ``annotations.rejected`` column; :meth:`Project.load` puts them in the annotation's
``attributes[REJECTED]``, :meth:`Project.commit` keeps them up to date, the prediction merge reads them.
"""

from __future__ import annotations

import numpy as np

from cellcounter.annotations import Boxes, ImageAnnotation, Origin

REJECTED = "rejected_boxes"  # ImageAnnotation.attributes key: model boxes a person deleted, as Boxes
_NO_REJECTED = Boxes()


def rejected_boxes(blob: bytes | None) -> Boxes:
    """The rejected boxes (place, class and the id they had) stored as float64 rows ``id class x1 y1 x2 y2``."""
    if not blob:
        return Boxes()
    if len(blob) % 48:
        raise ValueError(f"the rejected boxes are {len(blob)} bytes, not a whole number of boxes")
    rows = np.frombuffer(blob, dtype="<f8").reshape(-1, 6)
    if not np.isfinite(rows).all():
        raise ValueError("a rejected box is not finite")
    return Boxes(rows[:, 2:].copy(), rows[:, 1].astype(np.int64), None, None, rows[:, 0].astype(np.int64))


def _rejected_blob(b: Boxes) -> bytes:
    return np.column_stack([b.ids, b.classes, b.xyxy]).astype("<f8").tobytes()


def _rejected_after(old: ImageAnnotation, new: ImageAnnotation, origin: str) -> Boxes | None:
    """The image's rejected boxes after a save (``None``: unchanged). A person's edit that removes model boxes
    adds them; a rejected box whose id stands again (an undo) is taken off the list."""
    before = old.attributes.get(REJECTED, _NO_REJECTED)
    rejected = before
    if origin == "human":
        model = old.boxes.origins == Origin.MODEL
        gone = model & ~np.isin(old.boxes.ids, new.boxes.ids)
        if gone.any():
            rejected = rejected.concat(old.boxes.subset(gone))
    back = np.isin(rejected.ids, new.boxes.ids)
    if back.any():
        rejected = rejected.subset(~back)
    return None if rejected is before else rejected
