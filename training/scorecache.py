"""A start model's validation scores, computed once and kept.

A fine-tune scores its start model on the images it validates on (and on the
start model's own validation images, the base check) so that the new model can
be compared with it. Those scores depend only on the start model, the images
with their labels and the counting threshold, never on the run: a second
fine-tune from the same model would spend minutes (30 blood images on a 2-core
CPU: about 9) recomputing them. They are kept in the user's cache, named by a
hash of all that goes into them; a model, a label or a setting that changes
makes another name, so a kept score is never a stale one.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from cellcounter.annotations import ImageAnnotation
from cellcounter.errors import CellCounterError
from cellcounter.fileutil import atomic_write_text
from cellcounter.imageio import file_hash
from cellcounter.models.card import CARD_NAME, WEIGHTS_NAME, resolve_model

#: bump when what an evaluation measures changes: scores kept by an older one are then not used
SCORES_FORMAT = 1


def _cache_dir() -> Path:
    from platformdirs import user_cache_dir

    return Path(os.environ.get("CELLCOUNTER_CACHE") or user_cache_dir("cellcounter", appauthor=False)) / "scores"


def annotations_digest(anns: Sequence[ImageAnnotation]) -> str:
    """A hash of the images (path, size, and the file's length and time: a file replaced under the same name makes
    another hash) and every label that scoring compares against."""
    h = hashlib.sha256()
    for a in anns:
        try:
            st = os.stat(a.image_path)
            stamp = f"{st.st_size}:{st.st_mtime_ns}"
        except OSError:
            stamp = "?"
        h.update(f"{a.image_path}\0{stamp}\0{a.width}x{a.height}\0{a.task}\0{'|'.join(a.class_names)}\0".encode())
        parts = [a.boxes.xyxy, a.boxes.classes, a.points.rc, a.points.classes]
        if a.masks is not None:
            parts += [a.masks.label_image, a.masks.ids, a.masks.classes]
        for arr in parts:
            h.update(b"-" if arr is None else np.ascontiguousarray(arr).tobytes() + str(np.asarray(arr).dtype).encode())
        h.update(b"g" if a.grade is None else f"g{a.grade.value}".encode())
    return h.hexdigest()


def model_digest(model: str) -> str | None:
    """A hash of a model's card and weights files, or ``None`` where it is not a model folder here."""
    try:
        folder = resolve_model(model)
    except Exception:  # noqa: BLE001 - a name this machine cannot resolve is simply not kept
        return None
    try:  # the files' own hashes, as the project keeps for images
        parts = [f"{name}:{file_hash(folder / name)}" for name in (CARD_NAME, WEIGHTS_NAME)]
    except (OSError, CellCounterError):
        return None
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def kept_scores(model: str, anns: Sequence[ImageAnnotation], count_threshold: float,
                compute: Callable[[], dict], extra: str = "") -> tuple[dict, bool]:
    """``compute()``'s scores of ``model`` on ``anns``, from the cache where kept, else computed and kept.
    ``extra`` is anything else the scores depend on (e.g. the card the model is scored with).

    Returns the scores and whether they came from the cache.
    """
    digest = model_digest(model)
    if digest is None or not anns:
        return compute(), False
    parts = (str(SCORES_FORMAT), digest, annotations_digest(anns), repr(count_threshold), extra)
    key = hashlib.sha256("\0".join(parts).encode())
    path = _cache_dir() / f"{key.hexdigest()[:40]}.json"
    try:
        kept = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(kept, dict) and isinstance(kept.get("scores"), dict):
            return kept["scores"], True
    except (OSError, ValueError):
        pass
    scores = compute()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps({"model": model, "images": len(anns), "scores": scores}, default=_plain))
    except OSError:  # a read-only or full cache costs a recomputation next time, nothing else
        pass
    return scores, False


def _plain(v):
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    raise TypeError(f"not JSON: {type(v).__name__}")
