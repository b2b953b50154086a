"""The labels of the image being edited: a Qt-free, evented model that a viewer adapts to.

As napari splits a layer's model from its ``_qt`` view, everything an edit means lives here: which model
objects a reviewer sees at the score threshold, what a person's change does to an object's provenance (a
model's object becomes corrected, a new one is human), the instance operations of :mod:`cellcounter.maskops`,
and ids that an object keeps through edits, saves, undo and new predictions. A viewer shows objects by id,
hands back what the person left (:meth:`EditModel.update_boxes`, :meth:`~EditModel.update_points`,
:meth:`~EditModel.paint`) and redraws on the :class:`EditEvent` each change announces.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from cellcounter import maskops
from cellcounter.annotations import DEFAULT_SCORE_THRESHOLD, Boxes, ImageAnnotation, InstanceMasks, Origin, Points
from cellcounter.regions import Region

NEW = -1  # the id a view gives an object a person has just drawn
MOVE_TOLERANCE = 0.5  # pixels a model box may shift (a view's rounding) before it counts as corrected
_CORRECTABLE = (Origin.MODEL, Origin.REFERENCE)  # origins a person's change turns into CORRECTED


@dataclass(frozen=True)
class EditEvent:
    """One change: its kind and the ids of the objects added, removed and changed.

    Kinds: ``boxes``, ``points`` and ``masks`` name ids; ``regions``, ``threshold`` (what is shown) and
    ``reset`` (everything new) name none.
    """

    kind: str
    added: tuple[int, ...] = ()
    removed: tuple[int, ...] = ()
    changed: tuple[int, ...] = ()


def _ids(a) -> tuple[int, ...]:
    return tuple(int(v) for v in np.asarray(a).reshape(-1))


class EditModel:
    """The current labels of one image and the edits made to them.

    ``score_threshold`` decides which model boxes a reviewer sees (:meth:`shown`); the others are kept, not
    shown, until :meth:`drop_hidden` or the review drops them. Ids never go back: a new object gets an id
    above every id this model has seen for its kind, so a view cannot mistake it for one that was removed.
    """

    def __init__(self, ann: ImageAnnotation, score_threshold: float | None = DEFAULT_SCORE_THRESHOLD) -> None:
        self._ann = ann
        self.score_threshold = score_threshold
        self._listeners: list[Callable[[EditEvent], None]] = []
        self._top = {"boxes": 0, "points": 0, "masks": 0}
        self._raise_top(ann)

    # --- events -----------------------------------------------------------------

    def connect(self, callback: Callable[[EditEvent], None]) -> None:
        self._listeners.append(callback)

    def disconnect(self, callback: Callable[[EditEvent], None]) -> None:
        self._listeners.remove(callback)

    def _emit(self, event: EditEvent) -> EditEvent:
        for callback in list(self._listeners):
            callback(event)
        return event

    # --- state ------------------------------------------------------------------

    @property
    def annotation(self) -> ImageAnnotation:
        """Everything the image holds now, hidden model boxes included (what a save stores)."""
        return self._ann

    def reset(self, ann: ImageAnnotation) -> EditEvent:
        """Replace the labels (a load, undo, redo, a prediction): views redraw everything."""
        self._ann = ann
        self._raise_top(ann)
        return self._emit(EditEvent("reset"))

    def _raise_top(self, ann: ImageAnnotation) -> None:
        rejected = ann.attributes.get("rejected_boxes")  # ids of deleted model boxes are never reused
        self._top["boxes"] = max(self._top["boxes"], int(ann.boxes.ids.max(initial=0)),
                                 int(rejected.ids.max(initial=0)) if rejected is not None else 0)
        self._top["points"] = max(self._top["points"], int(ann.points.ids.max(initial=0)))
        if ann.masks is not None:
            self._top["masks"] = max(self._top["masks"], int(ann.masks.ids.max(initial=0)),
                                     int(ann.masks.label_image.max(initial=0)))

    def _take_ids(self, kind: str, n: int) -> np.ndarray:
        first = self._top[kind] + 1
        self._top[kind] += n
        return np.arange(first, first + n, dtype=np.int64)

    # --- what a reviewer sees -----------------------------------------------------

    def shown(self) -> np.ndarray:
        """Which boxes are shown: the rule the counts use (:meth:`~cellcounter.annotations.Boxes.above`)."""
        return self._ann.boxes.above(self.score_threshold)

    def hidden_instances(self) -> np.ndarray:
        """Ids of the model's instances below the threshold: kept in the store, not drawn, not counted."""
        m = self._ann.masks
        if m is None or not len(m):
            return np.zeros(0, dtype=np.int64)
        return m.ids[~m.above(self.score_threshold)]

    def shown_boxes(self) -> Boxes:
        return self._ann.boxes.subset(self.shown())

    def set_threshold(self, value: float | None) -> EditEvent:
        self.score_threshold = value
        return self._emit(EditEvent("threshold"))

    # --- boxes ----------------------------------------------------------------------

    def update_boxes(self, xyxy, classes, ids, scope=None) -> np.ndarray:
        """Take the boxes a view holds after a person's edit; returns each one's id (new ones get theirs here).

        ``ids`` are the ids the view was given (:data:`NEW` for a drawn box; a pasted copy of a box, which
        carries its original's id, is new too). ``scope`` are the ids the view was given (default: the
        shown boxes): one of them missing was deleted; boxes outside it (hidden, or outside an editing window)
        are left alone. A model's or reference box moved by more than :data:`MOVE_TOLERANCE` or given another
        class becomes corrected; it keeps its score.
        """
        old = self._ann.boxes
        xyxy = np.asarray(xyxy, dtype=np.float64).reshape(-1, 4)
        scope = old.ids[self.shown()] if scope is None else np.asarray(scope, dtype=np.int64)
        m = self._match("boxes", old.ids, old.xyxy, old.classes, old.origins, xyxy, classes, ids, scope,
                        MOVE_TOLERANCE)
        if m is None:
            return np.asarray(ids, dtype=np.int64).reshape(-1)
        ids, classes, origins, pos, known, event = m
        scores = np.full(len(ids), np.nan)
        scores[known] = old.scores[pos[known]]
        outside = ~np.isin(old.ids, scope)
        self._ann = dataclasses.replace(self._ann, boxes=Boxes(xyxy, classes, scores, origins, ids).concat(
            old.subset(outside)))
        self._emit(event)
        return ids

    def _match(self, kind: str, old_ids, old_where, old_classes, old_origins, where, classes, ids, scope,
               tolerance: float):
        """A view's objects matched by id to the model's: ``None`` when nothing changed, else their ids (new
        ones taken), classes, origins after the person's change, positions in the model, which were known,
        and the event to announce. ``tolerance``: how far a model's object may move and stay the model's."""
        classes = np.asarray(classes, dtype=np.int64).reshape(-1)
        ids = np.asarray(ids, dtype=np.int64).reshape(-1).copy()
        pos, known = _positions(old_ids, ids, scope)
        origins = np.full(len(ids), Origin.HUMAN, dtype=np.uint8)
        origins[known] = old_origins[pos[known]]
        differs = np.zeros(len(ids), dtype=bool)
        corrected = np.zeros(len(ids), dtype=bool)
        if known.any():
            shift = np.abs(where[known] - old_where[pos[known]]).max(axis=1)
            reclassed = classes[known] != old_classes[pos[known]]
            differs[known] = (shift > 0) | reclassed
            corrected[known] = (shift > tolerance) | reclassed
        origins[corrected & np.isin(origins, _CORRECTABLE)] = Origin.CORRECTED
        removed = np.setdiff1d(np.intersect1d(scope, old_ids), ids[known])
        if known.all() and not differs.any() and not len(removed):
            return None
        ids[~known] = self._take_ids(kind, int((~known).sum()))
        event = EditEvent(kind, _ids(ids[~known]), _ids(removed), _ids(ids[differs]))
        return ids, classes, origins, pos, known, event

    def accept_shown(self) -> int:
        """A person checked what is shown: shown model boxes become corrected, hidden ones are dropped.
        Returns how many model boxes were accepted."""
        b = self._ann.boxes
        shown = self.shown()
        accept = shown & (b.origins == Origin.MODEL)
        origins = b.origins.copy()
        origins[accept] = Origin.CORRECTED
        kept = Boxes(b.xyxy, b.classes, b.scores, origins, b.ids).subset(shown)
        self._ann = dataclasses.replace(self._ann, boxes=kept)
        self._emit(EditEvent("boxes", removed=_ids(b.ids[~shown]), changed=_ids(b.ids[accept])))
        m = self._ann.masks
        if m is not None and len(m):
            shown_m = m.above(self.score_threshold)
            accept_m = shown_m & (m.origins == Origin.MODEL)
            origins_m = m.origins.copy()
            origins_m[accept_m] = Origin.CORRECTED
            masks = InstanceMasks(m.label_image, m.ids, m.classes, m.scores, origins_m).subset(shown_m)
            self._ann = dataclasses.replace(self._ann, masks=masks)
            self._emit(EditEvent("masks", removed=_ids(m.ids[~shown_m]), changed=_ids(m.ids[accept_m])))
            accept = np.concatenate([accept, accept_m])
        return int(accept.sum())

    def drop_hidden(self) -> int:
        """Delete the model's boxes and instances below the threshold (exactly what is not drawn); how many."""
        shown = self.shown()
        gone = self._ann.boxes.ids[~shown]
        if len(gone):
            self._ann = dataclasses.replace(self._ann, boxes=self._ann.boxes.subset(shown))
            self._emit(EditEvent("boxes", removed=_ids(gone)))
        hidden = self.hidden_instances()
        if len(hidden):
            m = self._ann.masks
            self._ann = dataclasses.replace(self._ann, masks=m.subset(~np.isin(m.ids, hidden)))
            self._emit(EditEvent("masks", removed=_ids(hidden)))
        return len(gone) + len(hidden)

    # --- points ---------------------------------------------------------------------

    def update_points(self, rc, classes, ids) -> np.ndarray:
        """Take the click-count marks a view holds (all of them); returns their ids. A moved or reclassed
        model or reference mark becomes corrected."""
        old = self._ann.points
        rc = np.asarray(rc, dtype=np.float64).reshape(-1, 2)
        m = self._match("points", old.ids, old.rc, old.classes, old.origins, rc, classes, ids, old.ids, 0.0)
        if m is None:
            return np.asarray(ids, dtype=np.int64).reshape(-1)
        ids, classes, origins, _, _, event = m
        self._ann = dataclasses.replace(self._ann, points=Points(rc, classes, origins, ids))
        self._emit(event)
        return ids

    # --- instance masks ---------------------------------------------------------------

    def paint(self, label_image: np.ndarray, new_class: int = 0) -> EditEvent | None:
        """Take the label image a view holds after a person painted, filled or erased.

        Instances whose pixels changed are changed (a model's becomes corrected); ids not seen before are new
        instances of ``new_class`` drawn by a person; ids gone are removed. ``None`` when nothing changed.
        """
        lab = np.asarray(label_image).astype(np.int32, copy=False)
        old = self._ann.masks if self._ann.masks is not None else InstanceMasks.empty(*lab.shape)
        if lab.shape != old.shape:
            raise ValueError(f"a {lab.shape[1]}x{lab.shape[0]} label image cannot replace "
                             f"{old.shape[1]}x{old.shape[0]} masks")
        diff = old.label_image != lab
        if not diff.any() and self._ann.masks is not None:
            return None
        touched = np.union1d(old.label_image[diff], lab[diff])
        present = np.unique(lab)
        keep = np.isin(old.ids, present)
        kept = old.subset(keep) if not keep.all() else old
        new_ids = np.setdiff1d(present[present > 0], kept.ids)
        origins = kept.origins.copy()
        changed = np.isin(kept.ids, touched)
        origins[changed & np.isin(origins, _CORRECTABLE)] = Origin.CORRECTED
        n_new = len(new_ids)
        masks = InstanceMasks(lab, np.concatenate([kept.ids, new_ids]),
                              np.concatenate([kept.classes, np.full(n_new, new_class)]),
                              np.concatenate([kept.scores, np.full(n_new, np.nan)]),
                              np.concatenate([origins, np.full(n_new, Origin.HUMAN, np.uint8)]))
        self._ann = dataclasses.replace(self._ann, masks=masks)
        self._raise_top(self._ann)
        return self._emit(EditEvent("masks", _ids(new_ids), _ids(old.ids[~keep]), _ids(kept.ids[changed])))

    def new_instance_id(self) -> int:
        """An id for an instance a person is about to paint: above every id this image has had."""
        return int(self._take_ids("masks", 1)[0])

    def delete_instance(self, label: int) -> EditEvent | None:
        return self.paint(maskops.delete_instance(self._labels(), label))

    def merge_instances(self, keep: int, other: int) -> EditEvent | None:
        """``other``'s pixels join ``keep``, which keeps its id and class (a model's becomes corrected)."""
        return self.paint(maskops.merge_instances(self._labels(), keep, other))

    def split_instance(self, label: int, line_rc: np.ndarray) -> list[int]:
        """Cut an instance along a polyline of ``(row, col)`` vertices; returns the pieces' ids, largest
        (which keeps ``label``) first. The pieces keep the instance's class and score; a model's become
        corrected."""
        lab = self._labels()
        out, pieces = maskops.split_instance(lab, label, line_rc, self._top["masks"] + 1)
        if len(pieces) < 2:
            return pieces
        self._take_ids("masks", len(pieces) - 1)
        m = self._ann.masks
        i = int(np.nonzero(m.ids == label)[0][0])
        extra = len(pieces) - 1
        origin = Origin.CORRECTED if m.origins[i] in _CORRECTABLE else m.origins[i]
        origins = m.origins.copy()
        origins[i] = origin
        masks = InstanceMasks(out, np.concatenate([m.ids, pieces[1:]]),
                              np.concatenate([m.classes, np.full(extra, m.classes[i])]),
                              np.concatenate([m.scores, np.full(extra, m.scores[i])]),
                              np.concatenate([origins, np.full(extra, origin, np.uint8)]))
        self._ann = dataclasses.replace(self._ann, masks=masks)
        self._emit(EditEvent("masks", added=_ids(pieces[1:]), changed=(int(label),)))
        return pieces

    def _labels(self) -> np.ndarray:
        if self._ann.masks is None:
            raise ValueError(f"{self._ann.image_path}: the image has no instance masks to edit")
        return self._ann.masks.label_image

    # --- regions ----------------------------------------------------------------------

    def set_regions(self, regions: list[Region]) -> EditEvent | None:
        old = self._ann.regions
        if len(old) == len(regions) and all(a.equals(b, 0) for a, b in zip(old, regions)):
            return None
        self._ann = dataclasses.replace(self._ann, regions=list(regions))
        return self._emit(EditEvent("regions"))


def _positions(have: np.ndarray, ids: np.ndarray, scope: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each of a view's ``ids``: its index in ``have`` and whether it is a known object of ``scope``
    (the first of duplicate ids only: a pasted copy carries its original's id and is a new object)."""
    order = np.argsort(have, kind="stable")
    sorted_have = have[order]
    idx = np.searchsorted(sorted_have, ids)
    idx = np.clip(idx, 0, max(0, len(have) - 1))
    known = sorted_have[idx] == ids if len(have) else np.zeros(len(ids), dtype=bool)
    known &= np.isin(ids, scope)
    _, first = np.unique(ids, return_index=True)
    firsts = np.zeros(len(ids), dtype=bool)
    firsts[first] = True
    known &= firsts
    return order[idx] if len(have) else np.zeros(len(ids), dtype=np.int64), known


__all__ = ["EditEvent", "EditModel", "MOVE_TOLERANCE", "NEW"]
