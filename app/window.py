"""The cellcounter window: a napari viewer with the panels, menus and keyboard shortcuts of the app."""

from __future__ import annotations

import gc
from collections.abc import Callable
from pathlib import Path

import numpy as np
from napari.layers import Labels
from napari.qt.threading import thread_worker
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import Qt, QTimer
from qtpy.QtWidgets import QFileDialog, QFrame, QScrollArea, QWidget

from app.controller import LayerController
from app.layers import BOXES, MASKS, POINTS, REGIONS, describe_object
from app.session import Session, read_for_open
from app.widgets.counts import CountsPanel
from app.widgets.grade import GradePanel
from app.widgets.masks import MaskToolsPanel
from app.widgets.predict import PredictPanel
from app.widgets.review import ReviewPanel
from app.widgets.shortcuts import ShortcutsDialog, layer_hint
from app.widgets.train import TrainPanel
from cellcounter.annotations import ReviewStatus
from cellcounter.errors import CellCounterError
from cellcounter.formats import FORMATS
from cellcounter.project.workflows import export_project
from cellcounter.tasks import TASKS

RESOURCES = Path(__file__).resolve().parent.parent / "resources"
SAMPLES = {
    "blood": RESOURCES / "samples" / "blood" / "BloodImage_00000.jpg",
    "nuclei": next(iter(sorted((RESOURCES / "samples" / "nuclei").glob("*/images/*.png"))), None),
    "leaves": RESOURCES / "samples" / "leaves" / "rosette_20261123.png",
    "retinopathy": RESOURCES / "samples" / "fundus" / "IDRiD_003.jpg",
}

def settle_heap() -> None:
    """Collect once, then exempt everything alive (libraries, the viewer, the window) from later collections.

    napari runs a full ``gc.collect()`` whenever a layer is removed; over the ~600,000 objects torch, napari
    and Qt leave on the heap that took 0.3-1 s on the GUI thread each time a prediction arrived (the
    event-loop stall measured by ``bench/bench_ui.py``). Frozen objects are not scanned, so those
    collections only look at what was made since.
    """
    gc.collect()
    gc.freeze()


class _PanelScroll(QScrollArea):
    """A scroll area that asks for its panel's natural size (docks get their full height where the screen has
    room) but can be squeezed below it (a laptop screen), scrolling then."""

    def sizeHint(self):
        hint = self.widget().sizeHint()
        return hint.expandedTo(super().sizeHint()) if hint.isValid() else super().sizeHint()


def _scrolled(panel: QWidget) -> QScrollArea:
    """``panel`` in a scroll area: a dock can then be shorter than its panel (a laptop screen) and scrolls."""
    area = _PanelScroll()
    area.setWidgetResizable(True)
    area.setFrameShape(QFrame.NoFrame)
    area.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
    area.setWidget(panel)
    area.setMinimumHeight(min(120, panel.sizeHint().height()))
    area.setMinimumWidth(panel.minimumSizeHint().width() + 16)
    return area


class CellCounterWindow:
    """The controller and the panels of one napari viewer; the session is the controller's (one owner: the
    window and every panel read it there, so opening another project swaps it in one place)."""

    def __init__(self, viewer, session: Session, task: str = "blood") -> None:
        self.viewer = viewer
        self._merge_target: int | None = None  # Shift-M: the instance the next pick joins
        self._opening = None  # the worker reading an image's labels before it opens
        self.controller = LayerController(viewer, session)
        self.counts = CountsPanel(self.controller)
        self.predict = PredictPanel(self.controller, task)
        self.review = ReviewPanel(self.controller)
        self.grade = GradePanel(self.controller)
        self.train = TrainPanel(self.controller, task)
        self.train.models_changed.connect(self.predict.refresh_models)
        self.train.models_changed.connect(self.train.refresh_bases)
        # each panel scrolls inside its dock, so the window fits a 1366 x 768 laptop screen however full they are
        dock = viewer.window.add_dock_widget
        right = [dock(_scrolled(self.predict), name="Predict", area="right"),
                 dock(_scrolled(self.counts), name="Counts", area="right"),
                 dock(_scrolled(self.review), name="Review", area="right")]
        self.grade_dock = dock(_scrolled(self.grade), name="Grade", area="right")
        self.masks = MaskToolsPanel(self.controller)
        self.masks_dock = dock(_scrolled(self.masks), name="Masks", area="right")
        dock(_scrolled(self.train), name="Fine-tune", area="left")
        # the Predict panel has room to spare: where the screen allows, Counts and Review get their full height
        QTimer.singleShot(0, lambda: viewer.window._qt_window.resizeDocks(
            right, [p.sizeHint().height() for p in (self.predict, self.counts, self.review)], Qt.Vertical))
        self.click_count = False
        self._bind_keys()
        self._menus()
        self._accept_drops()
        self.controller.image_changed.connect(self._bind_layer_keys)
        self.controller.image_changed.connect(self.follow_task)
        self.controller.changed.connect(self._bind_layer_keys)
        self.controller.changed.connect(self._refresh_selected)
        viewer.mouse_drag_callbacks.append(self._click_count)
        settle_heap()

    @property
    def session(self) -> Session:
        return self.controller.session

    # --- opening -----------------------------------------------------------------

    def show_image(self, image_id: int) -> None:
        self.controller.show(image_id)
        # The canvas reaches its final size only once the window has laid out its docks: fit the image again
        # then (and a moment later, for a window still being shown), unless the user has moved the view since.
        self._fit = (image_id, self._camera_state())
        for delay in (0, 250):
            QTimer.singleShot(delay, self._refit)

    def _camera_state(self) -> tuple:
        cam = self.viewer.camera
        return tuple(np.round(cam.center, 3)), round(float(cam.zoom), 6)

    def _refit(self) -> None:
        image_id, fitted = self._fit
        if self.session.current_id == image_id and self._camera_state() == fitted:
            self.viewer.reset_view()
            self._fit = (image_id, self._camera_state())

    def follow_task(self) -> None:
        """Every panel follows the task of the image on screen (its model, counts, grade panel, fine-tune
        recipe and start model): a fundus photo opened in a blood session is graded, not counted as RBC."""
        task = self.session.image_task
        if task not in TASKS:
            return
        self.grade_dock.setVisible(TASKS[task].kind == "grade")
        self.masks_dock.setVisible(TASKS[task].kind == "masks")
        if self.predict.task.currentText() != task:
            self.predict.task.setCurrentText(task)  # its models follow
        self.train.set_task(task)

    def set_task(self, task: str) -> bool:
        """Make the image on screen a ``task`` image (Cellcounter > Image task); refused, saying why, while it
        holds objects of its present task."""
        self.controller.flush()
        try:
            self.session.set_task(task)
        except CellCounterError as exc:
            show_error(str(exc))
            return False
        self.show_image(self.session.current_id)
        show_info(f"This image is now a {task} image")
        return True

    def open_sample(self, task: str):
        """Open a bundled sample image and run the task's bundled default model on it (in the worker)."""
        if SAMPLES.get(task) is None or not self.open_path(SAMPLES[task], task, with_labels=False):
            return None
        return self.predict.run_default(task)

    def open_path(self, path: str | Path, task: str | None = None, with_labels: bool = True,
                  wait: bool = False, then: Callable[[], object] | None = None) -> bool:
        """Open an image, folder or project in this window; ``False`` (and a message) when it cannot be.

        Labels stored with an image or folder (hundreds of outlines on a tissue tile) are read in a worker
        thread while the window stays responsive; the image is shown when they are in (at once with ``wait``),
        then ``then`` is called.
        """
        self.controller.flush()
        if self._opening is not None:
            show_info("Still opening the previous image: try again in a moment")
            return False
        if wait or Path(path).suffix == ".ccproj" or (Path(path).is_file() and not with_labels):
            try:
                read = read_for_open(path, task, with_labels) if wait else None
            except CellCounterError as exc:
                show_error(str(exc))
                return False
            return self._open_read(path, task, with_labels, read, then)
        worker = thread_worker(read_for_open, start_thread=False)(path, task, with_labels)
        worker.returned.connect(lambda read: self._open_read(path, task, with_labels, read, then))
        worker.errored.connect(lambda exc: show_error(str(exc)))
        worker.finished.connect(self._opened)
        self._opening = worker
        self.viewer.status = f"Reading {Path(path).name} and its labels..."
        worker.start()
        return True

    def _opened(self) -> None:
        self._opening = None

    def _open_read(self, path, task, with_labels: bool, read, then=None) -> bool:
        """The rest of opening, on the GUI thread: store what was read in the project, show the first image."""
        try:
            # only a task asked for is imposed: each image keeps its own, or gets one by what it shows
            session, first = Session.open_path(path, task, self.session.project.user, with_labels,
                                               current=self.session, read=read)
        except CellCounterError as exc:
            show_error(str(exc))
            return False
        if session is not self.session:
            self.session.close()
        self.controller.session = session
        self.predict.refresh_models()
        self.train.refresh_bases()
        self.show_image(first)
        if then is not None:
            then()
        return True

    def _accept_drops(self) -> None:
        """Dropping an image, folder or project on the window opens it in the app (not as a bare layer)."""
        qt_viewer = self.viewer.window._qt_viewer

        def drop(event):
            paths = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
            if paths:
                event.acceptProposedAction()
                self.open_dropped(paths)

        qt_viewer.dropEvent = drop

    def open_dropped(self, paths: list[str]) -> None:
        def add_more() -> None:  # more files: add them to the project too
            for extra in paths[1:]:
                if Path(extra).is_file():
                    self.session.import_image(Path(extra))
            self.review.refresh()

        self.open_path(paths[0], then=add_more)

    def _menus(self) -> None:
        menu = self.viewer.window.main_menu.addMenu("&Cellcounter")
        menu.addAction("Open image...", lambda: self._ask_open("image"))
        menu.addAction("Open folder...", lambda: self._ask_open("folder"))
        menu.addAction("Open project...", lambda: self._ask_open("project"))
        samples = menu.addMenu("Open sample")
        for task, path in SAMPLES.items():
            if path is not None and path.is_file():
                samples.addAction(task, lambda t=task: self.open_sample(t))
        export = menu.addMenu("Export")
        for fmt, spec in FORMATS.items():  # every format the core can write, described as the core describes it
            if spec.writer is None:
                continue
            for label, whole in (("This image", False), ("Whole project", True)):
                action = export.addAction(f"{label} as {fmt}...",
                                          lambda f=fmt, w=whole: self.export(f, whole_project=w))
                action.setStatusTip(spec.description)
                action.setToolTip(spec.description)
        tasks = menu.addMenu("Image task")
        for t in TASKS:
            tasks.addAction(f"{t}: {TASKS[t].description}", lambda t=t: self.set_task(t))
        menu.addAction("Import regions (GeoJSON)...", lambda: self.import_regions())
        menu.addAction("Keyboard shortcuts", self.show_help)

    def import_regions(self, path: str | Path | None = None) -> int:
        """Add the annotation polygons of a GeoJSON file (QuPath's export) to this image as regions."""
        from cellcounter.formats.qupath import read_regions

        if path is None:
            path, _ = QFileDialog.getOpenFileName(None, "Import regions", "", "GeoJSON (*.geojson *.json)")
            if not path:
                return 0
        try:
            regions = read_regions(path)
        except CellCounterError as exc:
            show_error(str(exc))
            return 0
        if not regions:
            show_error(f"{path}: no annotation polygon to use as a region")
            return 0
        self.controller.add_regions(regions)
        show_info(f"{len(regions)} region(s) added")
        return len(regions)

    def _ask_open(self, kind: str) -> None:
        if kind == "folder":
            path = QFileDialog.getExistingDirectory(None, "Open folder")
        else:
            flt = "Projects (*.ccproj)" if kind == "project" else "Images (*.png *.jpg *.jpeg *.tif *.tiff *.bmp)"
            path, _ = QFileDialog.getOpenFileName(None, f"Open {kind}", "", flt)
        if path:
            self.open_path(path)

    def export(self, fmt: str, whole_project: bool, dst: str | Path | None = None) -> list[Path]:
        self.controller.flush()
        if dst is None:
            dst = QFileDialog.getExistingDirectory(None, f"Export as {fmt} into folder")
            if not dst:
                return []
        ids = [r.id for r in self.session.project.images()] if whole_project else [self.session.current_id]
        try:  # what the reviewer sees: reviewed images as reviewed, the others at the slider's threshold
            n, written = export_project(self.session.project, Path(dst), fmt, ids,
                                        unreviewed_min_score=self.controller.score_threshold)
        except CellCounterError as exc:
            show_error(str(exc))
            return []
        show_info(f"Exported {n} image(s) to {dst}")
        return written

    # --- keys ----------------------------------------------------------------------

    def _bind_keys(self) -> None:
        v = self.viewer

        def bind(key, fn):
            v.bind_key(key, lambda _v: fn(), overwrite=True)

        bind("Shift-R", lambda: self.review.set_status(ReviewStatus.REVIEWED))
        bind("PageDown", lambda: self.review.go(1))
        bind("PageUp", lambda: self.review.go(-1))
        bind("Control-Z", self.controller.undo)
        bind("Control-Shift-Z", self.controller.redo)
        bind("Control-Y", self.controller.redo)
        bind("Shift-C", self.toggle_click_count)
        bind("Shift-D", self._delete_instance)
        bind("Shift-N", self._new_instance)
        bind("Shift-M", self._merge_instance)
        bind("Shift-X", self._split_instance)
        bind("Control-Enter", lambda: self.predict.start(False))
        bind("F1", self.show_help)
        # napari's own undo on label layers would bypass the project's history: route it here
        Labels.bind_key("Control-Z", lambda _layer: self.controller.undo(), overwrite=True)
        Labels.bind_key("Control-Shift-Z", lambda _layer: self.controller.redo(), overwrite=True)

    def _bind_layer_keys(self, *_args) -> None:
        """Number keys choose the class on our layers (napari uses them for tool modes elsewhere), and the
        status bar's hint for those layers says so instead of naming napari's tools."""
        for name in (BOXES, POINTS, self.controller.image_layer_name):
            if name and name in self.viewer.layers:
                layer = self.viewer.layers[name]
                for k in range(1, 10):
                    layer.bind_key(str(k), lambda _l, i=k - 1: self._relabel(i), overwrite=True)
                if name in (BOXES, POINTS) and not getattr(layer, "_cellcounter_hint", False):
                    layer.events.mode.connect(lambda _e, lyr=layer: self._hint(lyr))  # after napari's own
                    if name == BOXES:
                        layer.events.highlight.connect(lambda _e, lyr=layer: self.show_selected(lyr))
                    layer._cellcounter_hint = True
                if name in (BOXES, POINTS):
                    self._hint(layer)
        if REGIONS in self.viewer.layers:
            layer = self.viewer.layers[REGIONS]
            if not getattr(layer, "_cellcounter_hint", False):
                layer.events.mode.connect(lambda _e, lyr=layer: self._hint(lyr))
                layer._cellcounter_hint = True
            self._hint(layer)

    def _relabel(self, class_index: int) -> None:
        self.controller.relabel_selected(class_index)
        self._refresh_selected()

    def _refresh_selected(self) -> None:
        """The "Selected:" line follows a relabel, and the origin a save gives (a model's box becomes corrected)."""
        if BOXES in self.viewer.layers:
            self.show_selected(self.viewer.layers[BOXES])

    def show_selected(self, layer) -> None:
        """Who made the selected box, and the model's score: provenance visible, not only stored."""
        sel = sorted(layer.selected_data)
        if len(sel) == 1 and sel[0] < len(layer.features):
            saved = self.session.saved
            text = "Selected: " + describe_object(layer.features, sel[0], saved.model_version if saved else None)
        else:
            text = f"{len(sel)} boxes selected" if sel else ""
        self.counts.selected.setText(text)

    def _hint(self, layer) -> None:
        task = self.session.image_task
        layer.help = layer_hint(layer.name, task)
        if self.viewer.layers.selection.active is layer:
            self.viewer.help = layer.help

    def toggle_click_count(self) -> None:
        self.click_count = not self.click_count
        if POINTS in self.viewer.layers:
            pts = self.viewer.layers[POINTS]
            self.viewer.layers.selection.active = pts
            pts.mode = "pan_zoom"
        show_info("Click-count mode " + ("on: click to add, click a mark to remove" if self.click_count else "off"))

    def _click_count(self, viewer, event):
        if not self.click_count or POINTS not in viewer.layers:
            return
        # measured on the screen: while panning, the image point under the mouse stays put (the image moves with
        # it), so a drag measured in image coordinates looked like a click and added a mark
        start, where = np.asarray(event.pos, dtype=float), np.asarray(event.position)[-2:]
        yield
        travelled = 0.0
        while event.type == "mouse_move":
            travelled = max(travelled, float(np.hypot(*(np.asarray(event.pos, dtype=float) - start))))
            yield
        travelled = max(travelled, float(np.hypot(*(np.asarray(event.pos, dtype=float) - start))))
        if travelled > 4:
            return  # a drag pans; only a click counts
        self.toggle_mark(where)

    def toggle_mark(self, rc) -> None:
        """Remove the mark under ``rc`` or add one of the current class there."""
        pts = self.viewer.layers[POINTS]
        data = np.asarray(pts.data)
        radius = float(np.max(pts.size)) / 2 if len(data) else 5.0
        if len(data):
            d = np.hypot(*(data[:, -2:] - np.asarray(rc)).T)
            i = int(np.argmin(d))
            if d[i] <= radius:
                pts.selected_data = {i}
                pts.remove_selected()
                self.controller.flush()  # every click is its own undoable edit
                return
        pts.add([list(rc)])
        self.controller.flush()

    def _delete_instance(self) -> None:
        if MASKS in self.viewer.layers:
            self.controller.delete_instance(int(self.viewer.layers[MASKS].selected_label))

    def _new_instance(self) -> None:
        if MASKS in self.viewer.layers:
            layer = self.viewer.layers[MASKS]
            self.controller.new_instance_label()
            layer.mode = "paint"
            self.viewer.layers.selection.active = layer

    def _merge_instance(self) -> None:
        """Merge: the label last picked (picker tool) joins the one selected before it."""
        if MASKS in self.viewer.layers:
            layer = self.viewer.layers[MASKS]
            keep = self._merge_target
            if keep is None or keep == layer.selected_label:
                self._merge_target = int(layer.selected_label)
                show_info(f"Merge: pick the instance to join into {self._merge_target}, then Shift-M again")
                return
            self.controller.merge_instances(keep, int(layer.selected_label))
            self._merge_target = None

    def _split_instance(self) -> None:
        """Split the selected instance along the last line drawn in the "cut" layer (made on first use)."""
        if MASKS not in self.viewer.layers:
            return
        if "cut" not in self.viewer.layers or not len(self.viewer.layers["cut"].data):
            layer = self.viewer.layers["cut"] if "cut" in self.viewer.layers else self.viewer.add_shapes(
                name="cut", edge_color="yellow", edge_width=2)
            layer.mode = "add_path"
            self.viewer.layers.selection.active = layer
            show_info("Draw the cut line (double-click ends it), then Shift-X again")
            return
        cut = self.viewer.layers["cut"]
        pieces = self.controller.split_instance(int(self.viewer.layers[MASKS].selected_label), cut.data[-1])
        self.viewer.layers.remove("cut")
        show_info(f"Split into {len(pieces)} instance(s)")

    def show_help(self) -> None:
        """The shortcuts sheet, grouped by what one works on, with the classes of the task on screen."""
        task = self.session.image_task
        self._help = ShortcutsDialog(self.viewer.window._qt_window, task)
        self._help.show()
