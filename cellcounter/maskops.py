"""Editing an instance label image: delete, merge, split along a drawn line, a fresh id for a new instance.

Pure functions on ``(H, W)`` integer label images (0 is background), shared by the app's mask tools and
scripts; each returns a new array and leaves its input alone.
"""

from __future__ import annotations

import numpy as np


def delete_instance(lab: np.ndarray, label: int) -> np.ndarray:
    return np.where(lab == label, 0, lab).astype(lab.dtype, copy=False)


def merge_instances(lab: np.ndarray, keep: int, other: int) -> np.ndarray:
    """``other``'s pixels join ``keep`` (which keeps its id)."""
    if keep <= 0 or other <= 0:
        return lab.copy()
    return np.where(lab == other, keep, lab).astype(lab.dtype, copy=False)


def next_free_id(lab: np.ndarray, also_used: np.ndarray | None = None) -> int:
    """An id no instance has now nor had in ``also_used`` (the saved state's ids): a new instance must not take a
    removed one's id, or its history would be mixed with the old instance's."""
    top = int(lab.max(initial=0))
    if also_used is not None and len(also_used):
        top = max(top, int(np.max(also_used)))
    return top + 1


def split_instance(lab: np.ndarray, label: int, line_rc: np.ndarray,
                   first_new_id: int | None = None) -> tuple[np.ndarray, list[int]]:
    """Cut instance ``label`` along a polyline of ``(row, col)`` vertices.

    The line's pixels inside the instance become background; the largest piece keeps ``label``, the others
    get ids from ``first_new_id`` (default :func:`next_free_id`) on. Returns the new label image and the ids
    of the pieces, largest first (``[label]`` and an unchanged copy when the line does not cut it in two).
    """
    from scipy import ndimage
    from skimage.draw import line as draw_line

    out = lab.copy()
    inst = lab == label
    if label <= 0 or not inst.any():
        return out, []
    cut = np.zeros_like(inst)
    pts = np.round(np.asarray(line_rc, float)[:, -2:]).astype(int)
    for (r0, c0), (r1, c1) in zip(pts[:-1], pts[1:]):
        rr, cc = draw_line(r0, c0, r1, c1)
        ok = (rr >= 0) & (rr < lab.shape[0]) & (cc >= 0) & (cc < lab.shape[1])
        cut[rr[ok], cc[ok]] = True
    cut = ndimage.binary_dilation(cut, structure=np.ones((2, 2), bool))  # no diagonal leak past the cut
    pieces, n = ndimage.label(inst & ~cut)
    if n < 2:
        return out, [label]
    sizes = np.bincount(pieces.ravel())[1:]
    order = np.argsort(-sizes, kind="stable") + 1
    start = first_new_id if first_new_id is not None else next_free_id(lab)
    new_ids = [label] + list(range(start, start + n - 1))
    out[inst] = 0
    for piece, new_id in zip(order, new_ids):
        out[pieces == piece] = new_id
    return out, new_ids


__all__ = ["delete_instance", "merge_instances", "next_free_id", "split_instance"]
