"""Binds a napari viewer to a :class:`Session`: shows an image's labels as layers, saves every edit.

The labels being edited live in a Qt-free :class:`cellcounter.editing.EditModel`; this is its napari
adapter. A person's edits in the layers reach the model, then the project, a short moment after they
happen (debounced, so a drag is one edit, not a hundred); what changes the model otherwise (undo, a
prediction, the threshold, mask operations) comes back to the layers through the model's events.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from qtpy.QtCore import QObject, QTimer, Signal

from app.layers import (
    BOXES,
    LABEL_LAYERS,
    MASKS,
    OVERVIEW,
    POINTS,
    REGIONS,
    annotation_layers,
    mask_colours,
    overview_layer_data,
    pin_class_colours,
    point_numbers,
    style_boxes,
    sync_layers,
)
from app.session import Session
from cellcounter.annotations import Boxes, ImageAnnotation, Origin, ReviewStatus, flip_xy_rc
from cellcounter.editing import EditEvent, EditModel
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
        self._shown_source = None  # the open image shown (a slide is read from it while shown)
        self.viewer = viewer
        self.session = session
        self.score_threshold = DEFAULT_SCORE_THRESHOLD  # model objects below it are kept, not shown (Review slider)
        self.model: EditModel | None = None  # the labels of the image on screen
        self.parked: Boxes = Boxes()  # shown boxes outside the editing window (only past EDIT_LIMIT)
        self._window_ids = np.zeros(0, dtype=np.int64)  # ids of the boxes in the editable Shapes layer
        self._layer_classes: tuple[str, ...] | None = None  # the class names the layers were built for
        self._muted = False
        self._syncing = False  # the model is taking in the layers' edits: nothing to redraw
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
        self.before_flush: list[Callable[[], None]] = []

    # --- showing ---------------------------------------------------------------

    def show(self, image_id: int) -> ImageAnnotation:
        self.flush()
        ann = self.session.load(image_id)
        src = open_image(ann.image_path)  # kept open while shown: a slide's levels read from the open file
        pixels = src.display_levels()
        previous, self._shown_source = self._shown_source, src
        self._muted = True
        try:
            with self._canvas_frozen():
                self.viewer.layers.selection.clear()
                for layer in list(self.viewer.layers):
                    self.viewer.layers.remove(layer)
            if previous is not None:
                previous.close()
            rgb = pixels[0].ndim == 3 and pixels[0].shape[-1] == 3
            self.image_layer_name = Path(ann.image_path).name
            self.viewer.add_image(pixels if len(pixels) > 1 else pixels[0], name=self.image_layer_name, rgb=rgb,
                                  multiscale=len(pixels) > 1)
            self.viewer.reset_view()  # before filling: with many boxes the view decides which are editable
            self._bind(ann)
            heat = self.__dict__.get("_heatmaps", {}).get(image_id)
            if heat is not None:
                self.show_heatmap(image_id, heat)
            self.viewer.title = f"cellcounter - {self.image_layer_name}"
        finally:
            self._muted = False
        self.image_changed.emit()
        self.changed.emit()
        return ann

    @contextlib.contextmanager
    def _canvas_frozen(self):
        """No repaint of the GL canvas while layers are being taken out of the scene.

        Removing the selected layer makes napari's layer-controls container swap its panel, and Qt may paint
        the GL canvas right there, drawing a visual that is half torn down: a segfault in ``glDrawArrays`` under
        Mesa. Repaints wait until the scene is whole again.
        """
        native = getattr(getattr(self.viewer.window, "_qt_viewer", None), "canvas", None)
        native = getattr(native, "native", None)
        if native is None:
            yield
            return
        native.setUpdatesEnabled(False)
        try:
            yield
        finally:
            native.setUpdatesEnabled(True)

    def _bind(self, ann: ImageAnnotation) -> None:
        """A new edit model for the image just opened; the layers follow its events."""
        if self.model is not None:
            self.model.disconnect(self._on_model)
        self.model = EditModel(ann, self.score_threshold)
        self.model.connect(self._on_model)
        self._fill()

    def _on_model(self, event: EditEvent) -> None:
        """Redraw what a change of the model made outside the layers (those the layers made are shown)."""
        if self._syncing:
            return
        self._muted = True
        try:
            if event.kind == "masks" and MASKS in self.viewer.layers:
                self.viewer.layers[MASKS].data = self.model.annotation.masks.label_image.copy()
                self._hide_masks_below_threshold()
            elif event.kind in ("boxes", "points", "threshold", "reset"):
                self._fill()
        finally:
            self._muted = False

    def _fill(self) -> None:
        ann = self.model.annotation
        boxes = self.model.shown_boxes()
        editable = self._editing_window(boxes)
        self.parked = boxes.subset(~editable)
        self._window_ids = boxes.ids[editable]
        visible = ImageAnnotation(ann.image_path, ann.width, ann.height, ann.class_names, task=ann.task,
                                  boxes=boxes.subset(editable), masks=ann.masks, points=ann.points,
                                  grade=ann.grade, regions=ann.regions, pixel_size_um=ann.pixel_size_um)
        if not self._update_layers(visible):
            with self.viewer.layers.batched_update():  # one scene-graph rebuild, not one per layer
                self._replace_layers(ann, visible)
        self._layer_classes = ann.class_names
        self._hide_masks_below_threshold()
        self._draw_overview(ann.class_names)
        if POINTS in self.viewer.layers:
            self._number_points()

    def _hide_masks_below_threshold(self) -> None:
        """The masks layer draws what is counted, coloured by who made each instance (:func:`mask_colours`): the
        model's instances below the Review slider are transparent (kept in the store, as hidden boxes are)."""
        if MASKS not in self.viewer.layers or self.model is None or self.model.annotation.masks is None:
            return
        from napari.utils.colormaps import DirectLabelColormap

        colours = mask_colours(self.model.annotation.masks, self.model.hidden_instances())
        self.viewer.layers[MASKS].colormap = DirectLabelColormap(color_dict=colours)

    def show_heatmap(self, image_id: int, heat: np.ndarray) -> None:
        """Overlay a grader's Grad-CAM map on the image it explains (a view, not a label: never saved); it comes
        back when the image is shown again in this session."""
        heats = self.__dict__.setdefault("_heatmaps", {})
        heats.pop(image_id, None)
        heats[image_id] = heat
        while len(heats) > 16:  # the most recent maps only: each is an image-sized float array
            heats.pop(next(iter(heats)))
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
        if self.model is None:
            return
        self.flush()
        shown = self.model.shown_boxes()
        if not np.array_equal(shown.ids[self._editing_window(shown)], self._window_ids):
            self._muted = True
            try:
                self._fill()
            finally:
                self._muted = False

    def _update_layers(self, visible: ImageAnnotation) -> bool:
        """Put new labels into the layers already shown, in place; ``False`` where they must be rebuilt.

        Refilling in place (a prediction arriving, undo, the threshold slider) keeps napari's visuals:
        removing and re-adding layers cost ~0.45 s on the GUI thread (a full garbage collection per
        removed layer and new shader programs for the new ones).
        """
        layers = self.viewer.layers
        wanted = {kwargs["name"]: (data, kwargs) for data, kwargs, _ in annotation_layers(visible)}
        if (self._layer_classes is None or self._layer_classes != visible.class_names
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
        for hook in self.before_flush:  # edits the panels hold back (a grade still settling) go first
            hook()
        self._live.stop()  # a commit refreshes the counts itself
        if self._timer.isActive():
            self._timer.stop()
            self.commit()

    def _sync(self, model: EditModel) -> dict[str, np.ndarray]:
        layers = self.viewer.layers
        own = model is self.model
        self._syncing = own
        try:
            ids = sync_layers(model, shapes=layers[BOXES] if BOXES in layers else None,
                              labels=layers[MASKS] if MASKS in layers else None,
                              points=layers[POINTS] if POINTS in layers else None,
                              regions=layers[REGIONS] if REGIONS in layers else None, box_scope=self._window_ids)
        finally:
            self._syncing = False
        if own and BOXES in ids:
            self._window_ids = ids[BOXES]  # the boxes the layer holds now, drawn ones included
        return ids

    def current(self) -> ImageAnnotation | None:
        """The labels as the layers show them now, saved or not (reading leaves the edit model alone)."""
        if self.model is None or self.session.saved is None:
            return None
        if self._timer.isActive():  # an edit not yet committed: read it through a scratch copy of the model
            scratch = EditModel(self.model.annotation, self.model.score_threshold)
            self._sync(scratch)
            ann = scratch.annotation
        else:
            ann = self.model.annotation
        return dataclasses.replace(ann, review=self.session.saved.review)

    def commit(self) -> list[str]:
        """Take the layers' edits into the model and save it; the layers' new objects get their ids."""
        if self.model is None or self.session.saved is None:
            return []
        ids = self._sync(self.model)
        changed = self.session.commit(dataclasses.replace(self.model.annotation, review=self.session.saved.review))
        if changed:
            self._show_ids(ids)
            if POINTS in self.viewer.layers:
                self._number_points()
            self.changed.emit()
        return changed

    def _show_ids(self, ids: dict[str, np.ndarray]) -> None:
        """After a save: the layers' rows carry their objects' ids and origins (a corrected box now looks it)."""
        self._muted = True
        try:
            ann = self.model.annotation
            regions = self.viewer.layers[REGIONS] if REGIONS in self.viewer.layers else None
            if regions is not None and len(regions.data) and len(ann.regions) == len(regions.data):
                names = [r.name for r in ann.regions]
                if regions.features.get("name") is None or list(regions.features["name"]) != names:
                    regions.features = pd.DataFrame({"name": names}, dtype=object)  # a new region's given name
                    regions.feature_defaults = {"name": ""}  # napari took the first row's as the default
                    regions.refresh_text()
            for name, objects in ((BOXES, ann.boxes), (POINTS, ann.points)):
                if name not in self.viewer.layers or name not in ids:
                    continue
                layer = self.viewer.layers[name]
                if not len(layer.data) or len(ids[name]) != len(layer.data):
                    continue
                layer.features["id"] = ids[name]
                order = np.argsort(objects.ids)
                rows = order[np.searchsorted(objects.ids, ids[name], sorter=order)]
                layer.features["origin"] = [Origin(int(o)).name.lower() for o in objects.origins[rows]]
                if name == BOXES:
                    style_boxes(layer, ann.class_names)
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
        """Show an annotation of the current image (after undo/redo or a prediction) in its layers."""
        if self.model is None:
            return
        self.model.reset(ann)
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
        if self.model is not None:
            self.model.set_threshold(self.score_threshold)
            self.changed.emit()

    def drop_hidden(self) -> int:
        """Delete the model boxes below the threshold for good (one undoable edit)."""
        if self.model is None:
            return 0
        self.flush()
        n = self.model.drop_hidden()
        self.commit()
        return n

    def accept_shown(self) -> int:
        """Mark the visible model boxes as checked by a person (origin corrected), and drop the hidden ones."""
        if self.model is None:
            return 0
        self.flush()
        n = self.model.accept_shown()
        self.commit()
        return n

    def relabel_selected(self, class_index: int) -> None:
        """Set the class of the selected boxes (or the drawing class when none is selected)."""
        names = self._layer_classes or ()
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
        self._mask_op(lambda m: m.delete_instance(label))

    def merge_instances(self, keep: int, other: int) -> None:
        self._mask_op(lambda m: m.merge_instances(keep, other))

    def split_instance(self, label: int, line_rc: np.ndarray) -> list[int]:
        """Cut an instance along a drawn line (``(row, col)`` vertices); returns the ids of the pieces
        (:meth:`cellcounter.editing.EditModel.split_instance`: the largest keeps the id)."""
        if label <= 0:
            return []
        return self._mask_op(lambda m: m.split_instance(label, line_rc)) or []

    def new_instance_label(self) -> int:
        """Set the brush to an id no instance of this image has had."""
        if self.model is None or MASKS not in self.viewer.layers:
            return 0
        self._sync(self.model)  # what was painted with a fresh id is an instance by now
        layer = self.viewer.layers[MASKS]
        layer.selected_label = self.model.new_instance_id()
        return layer.selected_label

    def _mask_op(self, op: Callable[[EditModel], object]):
        """Run a mask operation on the model (with the layers' pending strokes taken in first); it is saved
        with the next debounced commit, so a quick series of operations is one undo step."""
        if self.model is None or MASKS not in self.viewer.layers or self.model.annotation.masks is None:
            return None
        self._sync(self.model)
        result = op(self.model)
        self._edited()
        return result
