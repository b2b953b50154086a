"""Run a model on the current image or on every unreviewed one, in a background worker with Cancel."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from napari.qt.threading import thread_worker
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.controller import LayerController
from cellcounter.errors import CellCounterError
from cellcounter.inference.choice import BACKENDS
from cellcounter.models.card import CARD_NAME, RESOURCES_MODELS, ModelCard, user_models_dir
from cellcounter.project.workflows import (
    HeatMapReady,
    ImagesDone,
    Predicted,
    PredictionEvent,
    PredictionFailed,
    PredictionJob,
    StalePredictionError,
    default_model,
    predict_jobs,
    prediction_jobs,
    select_images,
)
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
                    except Exception:  # noqa: BLE001 - a broken card is listed nowhere rather than crashing the panel
                        continue
                    if card.task == task:
                        out.append((f"{card.name} v{card.version} ({where})", str(d)))
    if project is not None:
        for m in project.registry.versions(task):
            out.append((f"{m.name} ({'active, ' if m.active else ''}project)", m.file))
    return out


@dataclass(frozen=True)
class ModelLoaded:
    description: str  # the model and what runs it, as the status line says it
    version: str


def predict_images(model: str, backend: str, device: str, jobs: list[PredictionJob], should_stop,
                   heat_maps: bool = False, tile_progress=None):
    """Generator run in the worker: :class:`ModelLoaded`, then the core's :func:`predict_jobs` events."""
    from cellcounter.inference import load_predictor

    predictor = load_predictor(model, backend, device)
    yield ModelLoaded(predictor.description, predictor.model_version)
    yield from predict_jobs(predictor, jobs, should_stop, heat_maps, tile_progress)


class TileProgress:
    """The latest ``(image, images, tiles done, tiles)`` of a running prediction, set from the worker thread
    and read by the GUI thread's timer: no Qt object is touched outside the GUI thread."""

    def __init__(self) -> None:
        self.latest: tuple[int, int, int, int] | None = None
        self.shown: tuple[int, int, int, int] | None = None

    def __call__(self, image: int, images: int, done: int, tiles: int) -> None:
        self.latest = (image, images, done, tiles)


class PredictPanel(QWidget):
    def __init__(self, controller: LayerController, task: str = "blood") -> None:
        super().__init__()
        self._model_text = "Predicting"  # what runs the prediction, for the status line
        self.controller = controller
        self.worker = None
        self.task = QComboBox()
        self.task.addItems(list(TASKS))
        self.task.setCurrentText(task)
        self.model = QComboBox()
        self.backend = QComboBox()
        self.backend.addItems(list(BACKENDS))  # auto: the fastest measured for the model's kind here
        self.backend.setToolTip("auto runs each kind of model on the backend measured fastest on a CPU at the "
                                "float model's accuracy (int8 only where the model's card accepts it), or torch "
                                "on a GPU")
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
        self.apply_stale = QPushButton("Apply kept prediction")
        self.apply_stale.setToolTip("Predictions of images edited while they ran are kept aside, not stored: "
                                    "this stores them anyway (the model's objects are replaced, yours stay)")
        self.apply_stale.setVisible(False)
        self.stale: list[tuple] = []
        self.failed: list[PredictionFailed] = []  # of the latest run: images that could not be predicted
        self._stop = False
        self.progress = QProgressBar()
        self.status = QLabel("")  # what runs now, how far it is and how long it should still take
        self.status.setWordWrap(True)
        self._started = 0.0
        self.tiles = TileProgress()
        self._tile_timer = QTimer(self)
        self._tile_timer.setInterval(100)
        self._tile_timer.timeout.connect(self._poll_tiles)
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
        layout.addWidget(self.status)
        layout.addWidget(self.cancel)
        layout.addWidget(self.apply_stale)
        self.apply_stale.clicked.connect(self.apply_kept)
        self.task.currentTextChanged.connect(self.refresh_models)
        self.task.currentTextChanged.connect(lambda t: self.heat_map.setVisible(t == "retinopathy"))
        self.heat_map.setVisible(task == "retinopathy")
        self.run_one.clicked.connect(lambda: self.start(all_unreviewed=False))
        self.run_all.clicked.connect(lambda: self.start(all_unreviewed=True))
        self.cancel.clicked.connect(self.stop)
        self.refresh_models()

    def refresh_models(self, *_args) -> None:
        """List the task's models; the one chosen is the project's active version, else the bundled default."""
        self.model.clear()
        project = self.controller.session.project
        for label, path in available_models(self.task.currentText(), project):
            self.model.addItem(label, path)
        chosen = default_model(None if project.closed else project, self.task.currentText())
        idx = self.model.findData(chosen) if chosen else -1
        if idx >= 0:
            self.model.setCurrentIndex(idx)

    def run_default(self, task: str):
        """Run the task's default model (the project's active version, else the bundled one) on the current
        image; ``None`` when there is none."""
        self.task.setCurrentText(task)
        self.refresh_models()
        if default_model(self.controller.session.project, task) is None:
            show_info(f"No {task} model in this installation or project: choose a model to predict")
            return None
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
            ids = select_images(session.project, "unreviewed")
        else:
            ids = [session.current_id] if session.current_id is not None else []
        if not ids:  # say so at once, rather than load a model for nothing
            what = "unreviewed images" if all_unreviewed else "image open"
            self.status.setText(f"Nothing to predict: no {what}")
            show_info(f"Nothing to predict: no {what}")
            return None
        jobs = prediction_jobs(session.project, ids)
        self._stop = False
        self.failed = []
        # a flag, not worker.quit(): the generator then ends at its own checks, and a cancel is not a failure
        worker = thread_worker(predict_images, start_thread=False)(
            model, self.backend.currentText(), self.device.currentText(), jobs, lambda: self._stop,
            self.heat_map.isChecked() and self.task.currentText() == "retinopathy", self.tiles)
        worker.yielded.connect(self._on_yield)
        worker.errored.connect(lambda exc: show_error(f"Prediction failed: {exc}"))
        worker.finished.connect(self._finished)
        self.worker = worker
        self.progress.setRange(0, PROGRESS_STEPS)  # the fraction of all the work: images and their tiles
        self.progress.setValue(0)
        self._started = time.monotonic()
        self._n_jobs = len(jobs)
        self.tiles.latest = self.tiles.shown = None
        self._tile_timer.start()
        self.status.setText("loading the model...")
        for b in (self.run_one, self.run_all):
            b.setEnabled(False)
        self.cancel.setEnabled(True)
        worker.start()
        return worker

    def _on_yield(self, event: ModelLoaded | PredictionEvent) -> None:
        if isinstance(event, ModelLoaded):
            self._model_text = f"Predicting with {event.description}"
            self.status.setText(self._model_text)
        elif isinstance(event, Predicted):
            self._store(event.job, event.annotation, event.model_version)
        elif isinstance(event, PredictionFailed):  # one bad image: said, and the others are still predicted
            self.failed.append(event)
            show_error(f"{event.job.image_path.name} was not predicted: {event.reason}")
        elif isinstance(event, HeatMapReady):
            if event.job.project == self.controller.session.project.path.resolve():
                self.controller.show_heatmap(event.job.image_id, event.heat)
        elif isinstance(event, ImagesDone):
            self._show_fraction(event.done / max(1, event.total), f"image {event.done}/{event.total} done")

    def _poll_tiles(self) -> None:
        latest = self.tiles.latest
        if latest is None or latest == self.tiles.shown:
            return
        self.tiles.shown = latest
        image, images, done, tiles = latest
        if done < tiles:  # a finished image is reported by its result, with the image count
            self._show_fraction((image + done / max(1, tiles)) / max(1, images),
                                f"image {image + 1}/{images}, tile {done}/{tiles}")

    def _show_fraction(self, fraction: float, where: str) -> None:
        self.progress.setValue(int(round(fraction * PROGRESS_STEPS)))
        elapsed = time.monotonic() - self._started
        left = f"; about {_duration(elapsed * (1 - fraction) / fraction)} left" if 0 < fraction < 1 else ""
        self.status.setText(f"{self._model_text}: {where}{left}")

    def _store(self, job: PredictionJob, ann, version: str, force: bool = False) -> bool:
        try:
            self.controller.predicted(job, ann, version, force)
        except StalePredictionError as exc:
            self.stale.append((job, ann, version))
            self.apply_stale.setText(f"Apply kept prediction{'s' if len(self.stale) > 1 else ''} ({len(self.stale)})")
            self.apply_stale.setVisible(True)
            show_info(f"{exc}: kept aside (Predict panel)")
            return False
        except CellCounterError as exc:
            show_error(f"Prediction not stored: {exc}")
            return False
        return True

    def apply_kept(self) -> None:
        """Store the predictions kept aside because their image was edited while they ran."""
        kept, self.stale = self.stale, []
        self.apply_stale.setVisible(False)
        for job, ann, version in kept:
            self._store(job, ann, version, force=True)

    def stop(self) -> None:
        self._stop = True

    def _finished(self) -> None:
        self._tile_timer.stop()
        self.worker = None
        for b in (self.run_one, self.run_all):
            b.setEnabled(True)
        self.cancel.setEnabled(False)
        took = _duration(time.monotonic() - self._started)
        if self._stop:
            self.status.setText(f"Cancelled after {took}: images finished before it are stored")
            show_info("Prediction cancelled: images finished before it are stored")
        else:
            failed = f"; {len(self.failed)} could not be predicted (skipped)" if self.failed else ""
            self.status.setText(f"Done: {self._n_jobs - len(self.failed)} image(s) in {took}{failed}")


PROGRESS_STEPS = 1000


def _duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"

