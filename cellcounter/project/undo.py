"""Undo and redo per image, kept small whatever the image size.

Each step holds the other state's boxes, points and grade packed as the store
packs them, and its instance masks as a window diff from the state next to
it (:func:`cellcounter.project.serialize.mask_diff`): twenty brush strokes on a
2048 x 2048 mask cost the strokes' windows, not twenty 16 MB label images.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from cellcounter.annotations import ImageAnnotation, ReviewStatus
from cellcounter.project import serialize as ser
from cellcounter.regions import json_regions, regions_json


@dataclass(frozen=True)
class UndoStep:
    """A state of an image's labels, described relative to the state next to it on the stack."""

    boxes: bytes
    points: bytes
    grade: str | None
    masks_diff: bytes | None  # from this state to its neighbour; None when neither has masks
    review: ReviewStatus
    class_names: tuple[str, ...]
    model_version: str | None
    regions: str | None = None

    @property
    def nbytes(self) -> int:
        return (len(self.boxes) + len(self.points) + len(self.grade or "") + len(self.masks_diff or b"")
                + len(self.regions or ""))


def describe(state: ImageAnnotation, neighbour: ImageAnnotation, packed: dict | None = None) -> UndoStep:
    """``state`` as a step that :func:`rebuild` turns back into it, given ``neighbour``; ``packed``: ``state``'s
    boxes and points as a store already serialised them (packing 100,000 boxes again costs 0.1 s)."""
    packed = packed or {}
    diff = None if state.masks is None and neighbour.masks is None else ser.mask_diff(state.masks, neighbour.masks)
    boxes = packed.get("boxes") or ser.boxes_blob(state.boxes)
    points = packed.get("points") or ser.points_blob(state.points)
    return UndoStep(bytes(boxes), bytes(points), ser.grade_json(state.grade), diff,
                    state.review, tuple(state.class_names), state.model_version, regions_json(state.regions))


def rebuild(step: UndoStep, neighbour: ImageAnnotation) -> ImageAnnotation:
    masks = None if step.masks_diff is None else ser.apply_mask_diff(neighbour.masks, step.masks_diff, reverse=True)
    return dataclasses.replace(neighbour, class_names=step.class_names, boxes=ser.blob_boxes(step.boxes),
                               points=ser.blob_points(step.points), grade=ser.json_grade(step.grade), masks=masks,
                               review=step.review, model_version=step.model_version,
                               regions=json_regions(step.regions))


@dataclass
class _Stacks:
    done: list[UndoStep] = field(default_factory=list)
    undone: list[UndoStep] = field(default_factory=list)


class UndoHistory:
    """Per-image undo and redo stacks of :class:`UndoStep`, at most ``depth`` steps back."""

    def __init__(self, depth: int = 100) -> None:
        self.depth = depth
        self._stacks: dict[int, _Stacks] = {}

    def record(self, image_id: int, before: ImageAnnotation, after: ImageAnnotation,
               packed: dict | None = None) -> None:
        """An edit took ``image_id`` from ``before`` to ``after``: ``before`` can be returned to; redo is gone.
        ``packed``: ``before``'s serialised boxes and points, where at hand (:func:`describe`)."""
        stacks = self._stacks.setdefault(image_id, _Stacks())
        stacks.done.append(describe(before, after, packed))
        del stacks.done[:-self.depth]
        stacks.undone.clear()

    def forget(self, image_id: int) -> None:
        """Drop the image's steps (its labels changed meaning: another task's classes)."""
        self._stacks.pop(image_id, None)

    def can_undo(self, image_id: int | None) -> bool:
        return image_id in self._stacks and bool(self._stacks[image_id].done)

    def can_redo(self, image_id: int | None) -> bool:
        return image_id in self._stacks and bool(self._stacks[image_id].undone)

    def undo(self, image_id: int, current: ImageAnnotation) -> ImageAnnotation | None:
        """The state before ``current`` (``None`` when there is none); ``current`` becomes redoable."""
        return self._move(image_id, current, back=True)

    def redo(self, image_id: int, current: ImageAnnotation) -> ImageAnnotation | None:
        return self._move(image_id, current, back=False)

    def _move(self, image_id: int, current: ImageAnnotation, back: bool) -> ImageAnnotation | None:
        stacks = self._stacks.get(image_id)
        if stacks is None:
            return None
        source, target = (stacks.done, stacks.undone) if back else (stacks.undone, stacks.done)
        if not source:
            return None
        state = rebuild(source.pop(), current)
        target.append(describe(current, state))
        return state

    @property
    def nbytes(self) -> int:
        """Bytes held by every step of every image (what the undo history costs in memory)."""
        return sum(s.nbytes for st in self._stacks.values() for s in (*st.done, *st.undone))
