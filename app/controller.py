"""Binds a napari viewer to a :class:`Session`: shows an image's labels as layers, saves every edit.

Edits reach the project a short moment after they happen (debounced, so a drag
is one edit, not a hundred); undo and redo refill the layers from the store.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from qtpy.QtCore import QObject, QTimer, Signal

from app.layers import (BOXES, LABEL_LAYERS, MASKS, OVERVIEW, POINTS, REGIONS, annotation_from_layers,
                        annotation_layers, overview_layer_data, pin_class_colours, point_numbers, style_boxes)
from app.session import Session
from cellcounter import maskops
from cellcounter.annotations import Boxes, ImageAnnotation, Origin, ReviewStatus, flip_xy_rc
from cellcounter.imageio import open_image
from cellcounter.project.workflows import DEFAULT_SCORE_THRESHOLD, PredictionJob

DEBOUNCE_MS = 250
HEATMAP = "where the grader looked"
EDIT_LIMIT = 2000  # most boxes put in the editable Shapes layer at once; the rest are drawn view-only


class LayerController(QObject):
    """Everything the widgets do to the current image goes through here."""

    changed = Signal()  # labels of the current image changed and were saved (counts, review panel listen)
    editing = Signal()  # the layers were edited; saved a moment later (the live counts listen)
    image_changed = Signal()

    def __init__(self, viewer, session: Session) -> None:
        super().__init__()
        self.viewer = viewer
        self.session = session
        self.score_threshold = DEFAULT_SCORE_THRESHOLD  # model objects below it are kept, not shown (Review slider)
        self.hidden: Boxes = Boxes()  # model boxes below the threshold: kept, not shown
        self.parked: Boxes = Boxes()  # shown boxes outside the editing window (only past EDIT_LIMIT)
        self._muted = False
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(DEBOUNCE_MS)
        self._timer.timeout.connect(self.commit)
        self._live = QTimer(self)  # one "editing" per pass of the event loop, however many layer events
        self._live.setSingleShot(True)
        self._live.setInterval(0)
        self._live.timeout.connect(self.editing.emit)
        self._view_timer = QTimer(self)
        self._view_timer.setSingleShot(True)
        self._view_timer.setInterval(300)
        self._view_timer.timeout.connect(self._rewindow)
        viewer.scene.camera.events.center.connect(self._view_moved)
        viewer.scene.camera.events.zoom.connect(self._view_moved)
        self.image_layer_name = ""

    # --- showing ---------------------------------------------------------------

    def show(self, image_id: int) -> ImageAnnotation:
        self.flush()
        ann = self.session.load(image_id)
        src = open_image(ann.image_path)  # kept open while shown: a slide's levels read from the open file
        pixels = src.display_levels()
        previous, self._shown_source = getattr(self, "_shown_source", None), src
        self._muted = True
        try:
            for layer in list(self.viewer.layers):
                self.viewer.layers.remove(layer)
            if previous is not None:
                previous.close()
            rgb = pixels[0].ndim == 3 and pixels[0].shape[-1] == 3
            self.image_layer_name = Path(ann.image_path).name
            self.viewer.add_image(pixels if len(pixels) > 1 else pixels[0], name=self.image_layer_name, rgb=rgb,
                                  multiscale=len(pixels) > 1)
            self.viewer.reset_view()  # before filling: with many boxes the view decides which are editable
            self._fill(ann)
            self.viewer.title = f"cellcounter - {self.image_layer_name}"
        finally:
            self._muted = False
        self.image_changed.emit()
        self.changed.emit()
        return ann

    def _fill(self, ann: ImageAnnotation) -> None:
        shown = ann.boxes.above(self.score_threshold) | (ann.boxes.origins != Origin.MODEL)
        self.hidden = ann.boxes.subset(~shown)
        boxes = ann.boxes.subset(shown)
        editable = self._editing_window(boxes)
        self.parked = boxes.subset(~editable)
        visible = ImageAnnotation(ann.image_path, ann.width, ann.height, ann.class_names, task=ann.task,
                                  boxes=boxes.subset(editable), masks=ann.masks, points=ann.points,
                                  grade=ann.grade, regions=ann.regions, pixel_size_um=ann.pixel_size_um)
        if not self._update_layers(visible):
            with self.viewer.layers.batched_update():  # one scene-graph rebuild, not one per layer
                self._replace_layers(ann, visible)
        self._draw_overview(ann.class_names)
        self._template = visible
        if POINTS in self.viewer.layers:
            self._number_points()

    def show_heatmap(self, image_id: int, heat: np.ndarray) -> None:
        """Overlay a grader's Grad-CAM map on the image it explains (a view, not a label: never saved)."""
        if image_id != self.session.current_id:
            return
        if HEATMAP in self.viewer.layers:
            self.viewer.layers[HEATMAP].data = heat
        else:
            self.viewer.add_image(heat, name=HEATMAP, colormap="inferno", opacity=0.45, blending="additive",
                                  contrast_limits=(0.0, 1.0))

    # --- many boxes: an editing window over a view-only overview ---------------------

    def _view_rect_xyxy(self) -> np.ndarray:
        """The part of the image on screen as ``x1, y1, x2, y2``."""
        h, w = self.viewer.canvas.size
        zoom = max(float(self.viewer.scene.camera.zoom), 1e-9)
        cy, cx = tuple(self.viewer.scene.camera.center)[-2:]
        half = flip_xy_rc(np.array([h, w]) / (2 * zoom))
        return np.array([cx - half[0], cy - half[1], cx + half[0], cy + half[1]])

    def _editing_window(self, boxes: Boxes) -> np.ndarray:
        """Which boxes go into the editable Shapes layer: all of them up to EDIT_LIMIT; past it, those
        centred in the view when they are few enough (zoom in to edit), else none."""
        if len(boxes) <= EDIT_LIMIT:
            return np.ones(len(boxes), dtype=bool)
        x1, y1, x2, y2 = self._view_rect_xyxy()
        cx = (boxes.xyxy[:, 0] + boxes.xyxy[:, 2]) / 2
        cy = (boxes.xyxy[:, 1] + boxes.xyxy[:, 3]) / 2
        inside = (cx >= x1) & (cx < x2) & (cy >= y1) & (cy < y2)
        return inside if inside.sum() <= EDIT_LIMIT else np.zeros(len(boxes), dtype=bool)

    def _draw_overview(self, class_names: tuple[str, ...]) -> None:
        layers = self.viewer.layers
        if not len(self.parked):
            if OVERVIEW in layers:
                layers.remove(OVERVIEW)
            return
        data, kwargs, _ = overview_layer_data(self.parked, class_names)
        if OVERVIEW in layers:
            layer = layers[OVERVIEW]
            layer.data = data
            layer.edge_color = kwargs["edge_color"]
        else:
            layer = self.viewer.add_vectors(data, **kwargs)
            if BOXES in layers:  # keep the editable boxes on top
                layers.move(layers.index(layer), layers.index(BOXES))
        n_edit = len(layers[BOXES].data) if BOXES in layers else 0
        self.viewer.status = (f"{len(self.parked)} boxes view-only, {n_edit} editable: zoom in to edit more"
                              if n_edit == 0 else f"{n_edit} boxes in view are editable")

    def _view_moved(self, *_args) -> None:
        if len(self.parked) or (BOXES in self.viewer.layers and len(self.viewer.layers[BOXES].data) >= EDIT_LIMIT):
            self._view_timer.start()

    def _rewindow(self) -> None:
        """After panning or zooming: save the window's edits, then move the editing window to the view."""
        if self.session.saved is None:
            return
        self.flush()
        boxes = self.session.saved.boxes  # the window's boxes, then parked, then hidden ones
        shown = boxes.subset(np.arange(len(boxes)) < len(boxes) - len(self.hidden))
        now = np.arange(len(shown)) < len(shown) - len(self.parked)
        if not np.array_equal(self._editing_window(shown), now):
            self.apply(self.session.saved)

    def _update_layers(self, visible: ImageAnnotation) -> bool:
        """Put new labels into the layers already shown, in place; ``False`` where they must be rebuilt.

        Refilling in place (a prediction arriving, undo, the threshold slider) keeps napari's visuals:
        removing and re-adding layers cost ~0.45 s on the GUI thread (a full garbage collection per
        removed layer and new shader programs for the new ones).
        """
        layers = self.viewer.layers
        template = getattr(self, "_template", None)
        wanted = {kwargs["name"]: (data, kwargs) for data, kwargs, _ in annotation_layers(visible)}
        if (template is None or template.class_names != visible.class_names
                or set(wanted) != {n for n in LABEL_LAYERS if n in layers}):
            return False
        if MASKS in wanted and layers[MASKS].data.shape != wanted[MASKS][0].shape:
            return False
        if MASKS in wanted:
            layers[MASKS].data = wanted[MASKS][0]
        polys, kw = wanted[REGIONS]
        regions = layers[REGIONS]
        if len(polys) or len(regions.data):
            regions.selected_data = set()
            regions.data = []
            if polys:
                regions.add_polygons(polys)
            regions.features = kw["features"]
            regions.refresh_text()
        rects, kw = wanted[BOXES]
        shapes = layers[BOXES]
        shapes.selected_data = set()
        shapes.data = []
        if rects:
            shapes.add_rectangles(rects, edge_width=kw["edge_width"])
        shapes.features = kw["features"]
        shapes.feature_defaults = kw["feature_defaults"]
        pin_class_colours(shapes, visible.class_names)
        style_boxes(shapes, visible.class_names)
        rc, kw = wanted[POINTS]
        pts = layers[POINTS]
        if len(rc) or len(pts.data):  # no marks before or after (a prediction of boxes): nothing to redo here
            pts.selected_data = set()
            pts.data = rc
            pts.features = kw["features"]
            pts.feature_defaults = kw["feature_defaults"]
            pin_class_colours(pts, visible.class_names)
        return True

    def _replace_layers(self, ann: ImageAnnotation, visible: ImageAnnotation) -> None:
        for name in LABEL_LAYERS:
            if name in self.viewer.layers:
                self.viewer.layers.remove(name)
        for data, kwargs, kind in annotation_layers(visible):
            if kind == "labels" and ann.masks is None:
                continue
            layer = getattr(self.viewer, f"add_{kind}")(data, **kwargs)
            if kind == "labels":
                layer.events.paint.connect(self._edited)
                layer.events.data.connect(self._edited)
            else:
                if kwargs["name"] != REGIONS:
                    pin_class_colours(layer, visible.class_names)
                if kwargs["name"] == BOXES:
                    style_boxes(layer, visible.class_names)
                layer.events.data.connect(self._edited)
                layer.events.features.connect(self._edited)

    def _number_points(self) -> None:
        """Renumber the marks 1..n per class (after an add, a removal, undo or redo)."""
        pts = self.viewer.layers[POINTS]
        if not len(pts.data) or "class" not in pts.features:
            return
        num = point_numbers(pts.features["class"].astype(str).to_numpy())
        if "num" in pts.features and np.array_equal(pts.features["num"].to_numpy(), num):
            return
        feats = pts.features.copy()
        feats["num"] = num
        self._muted = True  # a renumbering is not an edit
        try:
            pts.features = feats
            pts.refresh_text()
        finally:
            self._muted = False

    # --- editing -----------------------------------------------------------------

    def _edited(self, *_args) -> None:
        if not self._muted:
            self._timer.start()
            self._live.start()

    def flush(self) -> None:
        """Commit a pending edit now (before switching images, exporting or closing)."""
        self._live.stop()  # a commit refreshes the counts itself
        if self._timer.isActive():
            self._timer.stop()
            self.commit()

    def current(self) -> ImageAnnotation | None:
        if self.session.saved is None:
            return None
        layers = self.viewer.layers
        ann = annotation_from_layers(
            self._template,
            shapes=layers[BOXES] if BOXES in layers else None,
            labels=layers[MASKS] if MASKS in layers else None,
            points=layers[POINTS] if POINTS in layers else None,
            regions=layers[REGIONS] if REGIONS in layers else None,
        )
        if len(self.parked):
            ann.boxes = ann.boxes.concat(self.parked)
        if len(self.hidden):
            ann.boxes = ann.boxes.concat(self.hidden)
        ann.review = self.session.saved.review
        return ann

    def commit(self) -> list[str]:
        ann = self.current()
        if ann is None:
            return []
        changed = self.session.commit(ann)
        if changed:
            self._refresh_template()
            if POINTS in self.viewer.layers:
                self._number_points()
            self.changed.emit()
        return changed

    def _refresh_template(self) -> None:
        """After a save the layers hold exactly the saved objects: renumber uids to match."""
        self._muted = True
        try:
            saved = self.session.saved.boxes  # the editable window's boxes, then parked, then hidden ones
            shown = saved.subset(np.arange(len(saved)) < len(saved) - len(self.parked) - len(self.hidden))
            self._template = ImageAnnotation(
                self.session.saved.image_path, self.session.saved.width, self.session.saved.height,
                self.session.saved.class_names, task=self.session.saved.task, boxes=shown,
                masks=self.session.saved.masks, points=self.session.saved.points, grade=self.session.saved.grade,
                regions=self.session.saved.regions, pixel_size_um=self.session.saved.pixel_size_um)
            regions = self.viewer.layers[REGIONS] if REGIONS in self.viewer.layers else None
            saved_regions = self.session.saved.regions
            if regions is not None and len(regions.data) and len(saved_regions) == len(regions.data):
                names = [r.name for r in saved_regions]
                if regions.features.get("name") is None or list(regions.features["name"]) != names:
                    regions.features = pd.DataFrame({"name": names}, dtype=object)  # a new region's given name
                    regions.feature_defaults = {"name": ""}  # napari took the first row's as the default
                    regions.refresh_text()
            for name in (BOXES, POINTS):
                if name in self.viewer.layers:
                    layer = self.viewer.layers[name]
                    if len(layer.data):
                        layer.features["uid"] = np.arange(len(layer.data))
                        if name == BOXES:
                            layer.features["origin"] = [Origin(int(o)).name.lower() for o in shown.origins]
                            style_boxes(layer, self._template.class_names)  # a corrected box now looks it
        finally:
            self._muted = False

    def add_regions(self, regions: list) -> None:
        """Add regions (imported from a file) to the image on screen, saved as one edit."""
        self.flush()
        ann = self.current()
        if ann is None or not regions:
            return
        ann.regions = list(ann.regions) + list(regions)
        if self.session.commit(ann):
            self.apply(self.session.saved)

    def apply(self, ann: ImageAnnotation) -> None:
        """Refill the layers from an annotation (after undo/redo or a prediction)."""
        self._muted = True
        try:
            self._fill(ann)
        finally:
            self._muted = False
        self.changed.emit()

    def undo(self) -> bool:
        self.flush()
        ann = self.session.undo()
        if ann is not None:
            self.apply(ann)
        return ann is not None

    def redo(self) -> bool:
        self.flush()
        ann = self.session.redo()
        if ann is not None:
            self.apply(ann)
        return ann is not None

    def set_threshold(self, value: float) -> None:
        self.flush()
        self.score_threshold = float(value)
        if self.session.saved is not None:
            self.apply(self.current())

    def drop_hidden(self) -> int:
        """Delete the model boxes below the threshold for good (one undoable edit)."""
        n = len(self.hidden)
        self.hidden = Boxes()
        self.commit()
        return n

    def accept_shown(self) -> int:
        """Mark the visible model boxes as checked by a person (origin corrected), and drop the hidden ones."""
        shapes = self.viewer.layers[BOXES] if BOXES in self.viewer.layers else None
        n = 0
        if shapes is not None and len(shapes.data):
            origins = shapes.features["origin"].astype(str).to_numpy()
            n = int((origins == "model").sum())
            shapes.features["origin"] = ["corrected" if o == "model" else o for o in origins]
        self.hidden = Boxes()
        self.commit()
        return n

    def relabel_selected(self, class_index: int) -> None:
        """Set the class of the selected boxes (or the drawing class when none is selected)."""
        names = self._template.class_names
        if not 0 <= class_index < len(names):
            return
        name = names[class_index]
        for lname in (BOXES, POINTS):
            if lname not in self.viewer.layers:
                continue
            layer = self.viewer.layers[lname]
            layer.feature_defaults["class"] = name
            sel = sorted(layer.selected_data) if lname == BOXES else []
            if sel:
                feats = layer.features.copy()
                feats.loc[sel, "class"] = name
                layer.features = feats
                if lname == BOXES:
                    layer.refresh_colors(update_color_mapping=False)
        self._edited()

    def predicted(self, job: PredictionJob, pred: ImageAnnotation, model_version: str, force: bool = False) -> None:
        """Store a prediction on the image it was computed from; refresh the layers if that image is shown.

        Raises :class:`StalePredictionError` (nothing stored) when the image was edited while it ran."""
        shown = job.project == self.session.project.path.resolve() and job.image_id == self.session.current_id
        if shown:
            self.flush()
        self.session.store_prediction(job, pred, model_version, force)
        if shown:
            self.apply(self.session.saved)

    def set_review(self, status: ReviewStatus | str) -> int:
        """Mark the current image; ``reviewed`` keeps what is shown: the hidden model objects are dropped."""
        self.flush()
        dropped = self.session.set_review(status, self.score_threshold)
        if dropped:
            self.apply(self.session.saved)
        return dropped

    # --- masks ---------------------------------------------------------------------

    def delete_instance(self, label: int) -> None:
        self._edit_labels(lambda lab: maskops.delete_instance(lab, label))

    def merge_instances(self, keep: int, other: int) -> None:
        self._edit_labels(lambda lab: maskops.merge_instances(lab, keep, other))

    def split_instance(self, label: int, line_rc: np.ndarray) -> list[int]:
        """Cut an instance along a drawn line (``(row, col)`` vertices); returns the ids of the pieces
        (:func:`cellcounter.maskops.split_instance`: the largest keeps the id, the others are new)."""
        if MASKS not in self.viewer.layers or label <= 0:
            return []
        lab = np.asarray(self.viewer.layers[MASKS].data)
        out, ids = maskops.split_instance(lab, label, line_rc, self._max_id(lab) + 1)
        if len(ids) > 1:
            self.viewer.layers[MASKS].data = out
            self._edited()
        return ids

    def new_instance_label(self) -> int:
        layer = self.viewer.layers[MASKS]
        layer.selected_label = self._max_id(np.asarray(layer.data)) + 1
        return layer.selected_label

    def _max_id(self, lab: np.ndarray) -> int:
        """The highest id in use now or in the saved state: a new instance must not reuse a removed one's id."""
        saved = self._template.masks
        return maskops.next_free_id(lab, saved.ids if saved is not None else None) - 1

    def _edit_labels(self, fn: Callable[[np.ndarray], np.ndarray]) -> None:
        if MASKS not in self.viewer.layers:
            return
        layer = self.viewer.layers[MASKS]
        layer.data = fn(np.asarray(layer.data))
        self._edited()


