"""Run a model on the current image or on every unreviewed one, in a background worker with Cancel."""

from __future__ import annotations

from pathlib import Path

from napari.qt.threading import thread_worker
from napari.utils.notifications import show_error, show_info
from qtpy.QtWidgets import (QCheckBox, QComboBox, QFileDialog, QFormLayout, QHBoxLayout, QProgressBar,
                            QPushButton, QVBoxLayout, QWidget)

from app.controller import LayerController
from cellcounter.imageio import open_image
from cellcounter.models.card import CARD_NAME, RESOURCES_MODELS, ModelCard, user_models_dir
from cellcounter.tasks import TASKS


def available_models(task: str, project=None) -> list[tuple[str, str]]:
    """``(label, path)`` of bundled, installed and project models for a task."""
    out = []
    for root, where in ((RESOURCES_MODELS, "bundled"), (user_models_dir(), "installed")):
        if root.is_dir():
            for d in sorted(root.iterdir()):
                if (d / CARD_NAME).is_file():
                    try:
                        card = ModelCard.from_file(d / CARD_NAME)
                    except Exception:  # a broken card is listed nowhere rather than crashing the panel
                        continue
                    if card.task == task:
                        out.append((f"{card.name} v{card.version} ({where})", str(d)))
    if project is not None:
        for m in project.models(task):
            out.append((f"{m['name']} ({'active, ' if m['active'] else ''}project)", m["file"]))
    return out


_PREDICTORS: dict[tuple, object] = {}


def _cached_predictor(model: str, backend: str, device: str):
    """The loaded model and its torch module or ONNX Runtime session, kept for the next Run.

    Loading costs about 0.4 s on the CPU (weights, session set-up), more than predicting a BCCD image.
    Keyed by the weights file's path and modification time, so a retrained model is loaded afresh.
    """
    from cellcounter.inference import Predictor
    from cellcounter.models.card import WEIGHTS_NAME, resolve_model

    directory = resolve_model(model)
    key = (str(directory), (directory / WEIGHTS_NAME).stat().st_mtime_ns, backend, device)
    if key not in _PREDICTORS:
        _PREDICTORS.clear()  # one model at a time: a bundled model is tens of MB, a session more
        _PREDICTORS[key] = Predictor.load(model, backend, device)
    return _PREDICTORS[key]


def predict_images(model: str, backend: str, device: str, jobs: list[tuple[int, str]], should_stop,
                   heat_maps: bool = False):
    """Generator run in the worker: yields ("progress", done, total), ("result", image_id, annotation) and,
    for graders with ``heat_maps``, ("heatmap", image_id, Grad-CAM map)."""
    from cellcounter.inference import TiledPredictor

    predictor = _cached_predictor(model, backend, device)
    yield ("model", predictor.description, predictor.model_version)
    tiled = None if predictor.config.kind == "grader" else TiledPredictor(predictor)
    for i, (image_id, path) in enumerate(jobs):
        if should_stop():
            return
        heat = None
        with open_image(path) as src:
            if tiled is None:
                pixels = src.read()
                ann = predictor.predict(pixels, path)
                if heat_maps:
                    heat = predictor.explain(pixels, ann.grade.value)[0]
            else:
                ann = tiled.predict_source(src, should_stop=should_stop)
        yield ("result", image_id, ann, predictor.model_version)
        if heat is not None:
            yield ("heatmap", image_id, heat)
        yield ("progress", i + 1, len(jobs))


class PredictPanel(QWidget):
    def __init__(self, controller: LayerController, task: str = "blood") -> None:
        super().__init__()
        self.controller = controller
        self.worker = None
        self.task = QComboBox()
        self.task.addItems(list(TASKS))
        self.task.setCurrentText(task)
        self.model = QComboBox()
        self.backend = QComboBox()
        self.backend.addItems(["torch", "onnx"])
        self.device = QComboBox()
        self.device.addItems(["auto", "cpu", "cuda"])
        self.heat_map = QCheckBox("Heat map of where the grader looked (Grad-CAM)")
        self.heat_map.setChecked(True)
        browse = QPushButton("Model file...")
        browse.clicked.connect(self._browse)
        self.run_one = QPushButton("Run on this image")
        self.run_all = QPushButton("Run on unreviewed")
        self.cancel = QPushButton("Cancel")
        self.cancel.setEnabled(False)
        self.progress = QProgressBar()
        form = QFormLayout()
        form.addRow("Task", self.task)
        form.addRow("Model", self.model)
        form.addRow("", browse)
        form.addRow("Backend", self.backend)
        form.addRow("Device", self.device)
        form.addRow("", self.heat_map)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        row = QHBoxLayout()
        row.addWidget(self.run_one)
        row.addWidget(self.run_all)
        layout.addLayout(row)
        layout.addWidget(self.progress)
        layout.addWidget(self.cancel)
        self.task.currentTextChanged.connect(self.refresh_models)
        self.task.currentTextChanged.connect(lambda t: self.heat_map.setVisible(t == "retinopathy"))
        self.heat_map.setVisible(task == "retinopathy")
        self.run_one.clicked.connect(lambda: self.start(all_unreviewed=False))
        self.run_all.clicked.connect(lambda: self.start(all_unreviewed=True))
        self.cancel.clicked.connect(self.stop)
        self.refresh_models()

    def refresh_models(self, *_args) -> None:
        self.model.clear()
        for label, path in available_models(self.task.currentText(), self.controller.session.project):
            self.model.addItem(label, path)

    def run_default(self, task: str):
        """Run the bundled ``<task>-default`` model on the current image; ``None`` when it is not installed."""
        self.task.setCurrentText(task)
        default = RESOURCES_MODELS / f"{task}-default"
        idx = self.model.findData(str(default))
        if idx < 0:
            show_info(f"No bundled {task} model in this installation: choose a model to predict")
            return None
        self.model.setCurrentIndex(idx)
        return self.start(all_unreviewed=False)

    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Model folder (with card.json)")
        if folder:
            self.model.addItem(Path(folder).name, folder)
            self.model.setCurrentIndex(self.model.count() - 1)

    def start(self, all_unreviewed: bool = False):
        if self.worker is not None:
            return None
        model = self.model.currentData()
        if not model:
            show_error(f"No model for task {self.task.currentText()}: train one or choose a model folder")
            return None
        session = self.controller.session
        self.controller.flush()
        if all_unreviewed:
            ids = session.queue("unreviewed") + session.queue("in_progress")
        else:
            ids = [session.current_id] if session.current_id is not None else []
        jobs = [(i, str(session.project.image(i).path)) for i in ids]
        worker = thread_worker(predict_images, start_thread=False)(
            model, self.backend.currentText(), self.device.currentText(), jobs, lambda: worker.abort_requested,
            self.heat_map.isChecked() and self.task.currentText() == "retinopathy")
        worker.yielded.connect(self._on_yield)
        worker.errored.connect(lambda exc: show_error(f"Prediction failed: {exc}"))
        worker.finished.connect(self._finished)
        self.worker = worker
        self.progress.setRange(0, max(1, len(jobs)))
        self.progress.setValue(0)
        for b in (self.run_one, self.run_all):
            b.setEnabled(False)
        self.cancel.setEnabled(True)
        worker.start()
        return worker

    def _on_yield(self, item) -> None:
        if item[0] == "model":
            show_info(f"Predicting with {item[1]}")
        elif item[0] == "result":
            _, image_id, ann, version = item
            self.controller.predicted(image_id, ann, version)
        elif item[0] == "heatmap":
            self.controller.show_heatmap(item[1], item[2])
        elif item[0] == "progress":
            self.progress.setValue(item[1])

    def stop(self) -> None:
        if self.worker is not None:
            self.worker.quit()

    def _finished(self) -> None:
        self.worker = None
        for b in (self.run_one, self.run_all):
            b.setEnabled(True)
        self.cancel.setEnabled(False)
