"""Fine-tune the model on the project's reviewed images without leaving the app (and without freezing it).

The reviewed labels (exactly what the reviewers saw) are taken from the project in memory, training runs
in a child process (``training.child``: the GUI never waits on the training's GIL, and a crash of the run
is reported, not fatal), a worker thread relays its events, the loss streams into a live plot,
and the new model version is registered in the project with its validation
scores before and after, ready to be made active or rolled back.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from napari.qt.threading import thread_worker
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import Signal
from qtpy.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLayout,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.controller import LayerController
from cellcounter.annotations import ImageAnnotation
from cellcounter.errors import CellCounterError
from cellcounter.flavour import FULL_BUILD, has_torch, needs_torch
from cellcounter.project.gate import KEY_METRICS, activation_warning, verdict
from cellcounter.project.registry import ModelVersion
from cellcounter.project.workflows import activate_model, default_model, project_at, register_model, rollback_model
from training import RECIPES, TrainConfig
from training.child import iter_training_in_child
from training.project import default_rehearsal, project_run, resume_run, stopped_runs
from training.recipes import DEFAULT_RECIPE, default_recipe


def prepare_run(controller: LayerController, task: str, recipe: str, epochs: int | None, base: str | None,
                rehearsal: float | None = None,
                trunk_lr: float | None = None) -> tuple[TrainConfig, list[ImageAnnotation], list[int]]:
    """The run's config, its training set (the reviewed images' labels, in memory, frozen now) and their ids;
    ``epochs`` ``None``: the fine-tune's plan (steps scaled to the corrected images)."""
    controller.flush()
    return project_run(controller.session.project, task, recipe, epochs, base or "none",
                       rehearsal=rehearsal if base else 0.0, trunk_lr=trunk_lr if base else None)


@dataclass
class FineTuneRun:
    """The panel's current (or last) run: what it trains, for which project, and what came of it."""

    task: str
    config: TrainConfig | None = None
    parent: str | None = None  # the start model, None from scratch
    images: list[int] = field(default_factory=list)  # the reviewed images it trains on
    project: Path | None = None  # the project it was started from (registered there, whatever is open then)
    version: ModelVersion | None = None  # once registered
    warning: str = ""  # why making it active needs a confirmation ("" when it does not)
    previous: str | None = None  # the version it replaced when made active


class TrainPanel(QWidget):
    models_changed = Signal()  # a version was activated or rolled back: the Predict panel re-chooses

    def __init__(self, controller: LayerController, task: str = "blood") -> None:
        super().__init__()
        self._drawn_at = 0.0  # when the curves were last drawn (at most once a second)
        self._lines: dict = {}  # the plot's lines, made at the first draw
        self._laid_out = False
        self.controller = controller
        self.task = task
        self.worker = None
        self.result: FineTuneRun | None = None
        self.recipe = QComboBox()
        self.recipe.addItems(list(RECIPES))
        self.recipe.setCurrentText(DEFAULT_RECIPE.get(task, "blood-detector"))
        self.epochs = QSpinBox()
        self.epochs.setRange(0, 500)
        self.epochs.setSpecialValueText("auto")  # 0: the fine-tune's plan, by the number of corrected images
        self.epochs.setValue(0)
        self.epochs.setToolTip("auto: a fine-tune runs its task's plan, steps scaled to the number of corrected "
                               "images, and keeps the step that counts best on the held-back ones; from scratch, "
                               "10 epochs")
        self.base = QComboBox()
        self.rehearsal = QDoubleSpinBox()
        self.rehearsal.setRange(0.0, 0.9)
        self.rehearsal.setSingleStep(0.1)
        self.rehearsal.setToolTip("Share of the training images drawn from the start model's own training data "
                                  "(or the sample of it the model carries), so that it keeps the images it knew; "
                                  "set for the start model (blood: 0.5), 0 where there is nothing to rehearse")
        self.trunk = QDoubleSpinBox()
        self.trunk.setRange(0.01, 1.0)
        self.trunk.setSingleStep(0.1)
        self.trunk.setValue(1.0)
        self.trunk.setToolTip("The backbone's learning rate as a fraction of the recipe's: below 1 keeps more of "
                              "what the start model knew")
        self.start_b = QPushButton("Fine-tune on reviewed images")
        self.cancel_b = QPushButton("Cancel")
        self.cancel_b.setEnabled(False)
        self.resume_b = QPushButton("Resume")
        self.resume_b.setEnabled(False)
        self.resume_b.setToolTip("Go on with the stopped run from its last checkpoint")
        # a run that can go on: (config, annotations, image ids, project path), or (run folder, None, None, project)
        self._resumable: tuple | None = None
        self.progress = QProgressBar()
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.figure = Figure(figsize=(4, 3))
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumHeight(240)  # room for the curves and readable axes
        self.ax = self.figure.add_subplot(111)
        self.ax_val = self.ax.twinx()  # the validation metric per evaluation, on its own scale
        self.ax_val.set_visible(False)
        self.ax.set_xlabel("step", fontsize=8)
        self.ax.set_ylabel("loss", fontsize=8)
        self.ax.tick_params(labelsize=7)
        self.scores = QTableWidget(0, 3)  # key scores before and after, side by side, when a run ends
        self.scores.setHorizontalHeaderLabels(["score", "before", "after"])
        self.scores.verticalHeader().setVisible(False)
        self.scores.horizontalHeader().setSectionResizeMode(QHeaderView.Stretch)
        self.scores.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeToContents)  # names never cut
        self.scores.setVisible(False)
        self.activate_b = QPushButton("Make active")
        self.rollback_b = QPushButton("Roll back")
        for b in (self.activate_b, self.rollback_b):
            b.setEnabled(False)
        form = QFormLayout()
        form.addRow("Recipe", self.recipe)
        form.addRow("Epochs", self.epochs)
        form.addRow("Start from", self.base)
        form.addRow("Rehearsal", self.rehearsal)
        form.addRow("Trunk rate", self.trunk)
        layout = QVBoxLayout(self)
        layout.setSizeConstraint(QLayout.SetMinimumSize)  # a short dock scrolls instead of overlapping rows
        layout.addLayout(form)
        row = QHBoxLayout()
        row.addWidget(self.start_b)
        row.addWidget(self.resume_b)
        row.addWidget(self.cancel_b)
        layout.addLayout(row)
        layout.addWidget(self.progress)
        layout.addWidget(self.canvas)
        layout.addWidget(self.status)
        layout.addWidget(self.scores)
        row2 = QHBoxLayout()
        row2.addWidget(self.activate_b)
        row2.addWidget(self.rollback_b)
        layout.addLayout(row2)
        self.start_b.clicked.connect(lambda: self.start())  # not start(checked): clicked passes a bool
        if not has_torch():  # the counting build: predict, correct, count, export; training needs the full one
            self.start_b.setEnabled(False)
            self.start_b.setToolTip(f"Fine-tuning needs torch: {FULL_BUILD}")
            self.status.setText(f"Fine-tuning needs torch: {FULL_BUILD}.")
        self.base.currentIndexChanged.connect(self._base_changed)
        self.cancel_b.clicked.connect(self.stop)
        self.resume_b.clicked.connect(self.resume)
        self.activate_b.clicked.connect(self.activate)
        self.rollback_b.clicked.connect(self.rollback)
        self._losses: list[tuple[int, float]] = []
        self._evals: list[tuple[int, str, float]] = []  # (step, metric, value)
        self.refresh_bases()

    def set_task(self, task: str) -> None:
        """Fine-tune for ``task`` (the image on screen's): its recipe and start models."""
        if task == self.task and self.base.count():
            return
        self.task = task
        self.recipe.setCurrentText(DEFAULT_RECIPE.get(task, self.recipe.currentText()))
        self.start_b.setText(f"Fine-tune {task} on reviewed images")
        self.refresh_bases()

    def _base_changed(self, *_args) -> None:
        """The recipe and the rehearsal share follow the start model: a U-Net is fine-tuned with the U-Net
        recipe, not Mask R-CNN's; a model with data to rehearse rehearses them."""
        start = self.base.currentData() or "none"
        self.rehearsal.setValue(default_rehearsal(self.task, start))
        try:
            self.recipe.setCurrentText(default_recipe(self.task, start))
        except CellCounterError:  # an unreadable model file: its own error shows when training starts
            pass

    def refresh_bases(self) -> None:
        from app.widgets.predict import available_models

        self.base.clear()
        self.base.addItem("nothing (train from scratch)", None)
        project = self.controller.session.project
        for label, path in available_models(self.task, project):
            self.base.addItem(label, path)
        chosen = default_model(None if project.closed else project, self.task)  # active version, else bundled
        idx = self.base.findData(chosen) if chosen else -1
        self.base.setCurrentIndex(idx if idx >= 0 else min(1, self.base.count() - 1))
        self._find_stopped_run()

    def _find_stopped_run(self) -> None:
        """A run of this project and task stopped earlier (in this window or a previous one) can be resumed."""
        project = self.controller.session.project
        runs = [] if project.closed or self.worker is not None else stopped_runs(project, self.task)
        here = None if project.closed else project.path.resolve()
        kept = self._resumable
        if (kept is None or isinstance(kept[0], Path) or kept[0].task != self.task or kept[3] != here):
            self._resumable = (runs[0], None, None, here) if runs else None
        self.resume_b.setEnabled(self._resumable is not None and self.worker is None)
        if self._resumable is not None:
            where = self._resumable[0] if isinstance(self._resumable[0], Path) else self._resumable[0].out
            self.resume_b.setToolTip(f"Go on with the stopped run in {where} from its last checkpoint")

    def resume(self) -> None:
        """Go on with the stopped run from its checkpoint, on the same images (refused, by name, if the
        reviewed images changed since)."""
        if self._resumable is None or self.worker is not None:
            return
        cfg, anns, ids, _ = self._resumable
        try:
            if isinstance(cfg, Path):  # found on disk: its training set is the project's reviewed images now
                self.controller.flush()
                cfg, anns, ids = resume_run(self.controller.session.project, cfg)
            else:
                cfg = dataclasses.replace(cfg, resume=True)
        except (CellCounterError, OSError) as exc:
            show_error(str(exc))
            return
        self.start(cfg, anns, ids)

    def start(self, config: TrainConfig | None = None, annotations: list[ImageAnnotation] | None = None,
              image_ids: list[int] | tuple = ()):
        """Fine-tune on the reviewed images as the panel says; or run ``config`` on ``annotations`` (a
        :func:`prepare_run` adjusted by the caller), or on the config's own data when none are given."""
        if self.worker is not None:
            return None
        anns, ids = annotations, list(image_ids)
        try:
            needs_torch("Fine-tuning needs torch")
            if config is None:
                config, anns, ids = prepare_run(self.controller, self.task, self.recipe.currentText(),
                                                self.epochs.value() or None, self.base.currentData(),
                                                self.rehearsal.value(), self.trunk.value())
        except (CellCounterError, ValueError, OSError) as exc:
            show_error(str(exc))
            return None
        cfg = config
        self._resumable = None
        self.resume_b.setEnabled(False)
        if not cfg.resume:
            self._losses, self._evals = [], []
        self.scores.setVisible(False)
        self._stop = False
        self._anns = anns
        self.result = FineTuneRun(cfg.task, cfg, None if cfg.init == "none" else cfg.init, list(ids),
                                  self.controller.session.project.path.resolve())

        def run():
            # a flag, not worker.quit(): the child's loop then reaches its own stop branch and writes a checkpoint
            yield from iter_training_in_child(cfg, should_stop=lambda: self._stop, annotations=anns)

        worker = thread_worker(run, start_thread=False)()
        worker.yielded.connect(self._on_event)
        worker.errored.connect(self._failed)
        worker.finished.connect(self._finished)
        self.worker = worker
        self.start_b.setEnabled(False)
        self.cancel_b.setEnabled(True)
        self.status.setText("resuming..." if cfg.resume else "starting...")
        self.progress.setRange(0, 0)  # busy until the run says how many steps it has
        worker.start()
        return worker

    def stop(self) -> None:
        self._stop = True
        self.status.setText("stopping: the run is writing a checkpoint...")

    def _failed(self, exc: BaseException) -> None:
        text = str(exc) if isinstance(exc, CellCounterError) else f"training failed: {exc}"
        self.status.setText(text)
        self.progress.setRange(0, 1)
        cfg = self.result.config if self.result else None
        if cfg is not None and (Path(cfg.out) / "checkpoints" / "last.pt").is_file():  # a died child left one
            self._resumable = (cfg, self._anns, self.result.images, self.result.project)
        show_error(text[:1].upper() + text[1:])

    def _on_event(self, ev) -> None:
        if ev.kind == "step":
            self.progress.setRange(0, ev.total_steps)
            self.progress.setValue(ev.step)
            self._losses.append((ev.step, sum(ev.losses.values())))
            self._plot(force=ev.step == ev.total_steps)
            self.status.setText(f"step {ev.step}/{ev.total_steps}, epoch {ev.epoch + 1}; "
                                f"about {int(ev.eta_s)} s left")
        elif ev.kind == "eval":
            shown = {k: round(v, 3) for k, v in ev.metrics.items() if isinstance(v, float)}
            key = next((k for k in KEY_METRICS if isinstance(ev.metrics.get(k), float)), None)
            if key is not None:
                self._evals.append((ev.step, key, ev.metrics[key]))
                self._plot(force=True)
            self.status.setText(f"validation{' ' + ev.message if ev.message else ''}: {shown}")
        elif ev.kind == "base_eval":
            self.status.setText(f"{ev.message}: {self._short(ev.metrics)}")
        elif ev.kind == "prepare":  # work without steps: finding unlabelled cells, scoring a model
            self.progress.setRange(0, 0)
            self.status.setText(ev.message + "...")
        elif ev.kind == "start":
            self.progress.setRange(0, max(1, ev.total_steps))
            self.progress.setValue(ev.step)
            self.status.setText(ev.message)
        elif ev.kind == "done":  # registered here: the project's connection belongs to this (the GUI) thread
            self.progress.setRange(0, max(1, ev.total_steps))
            self.progress.setValue(max(1, ev.total_steps))
            self._register(ev.model_dir)
        elif ev.kind == "stopped":
            self.progress.setRange(0, max(1, ev.total_steps))
            self.progress.setValue(ev.step)
            self.status.setText(f"stopped at step {ev.step} of {ev.total_steps}; Resume goes on from there")
            self._resumable = (self.result.config, self._anns, self.result.images, self.result.project)

    def _plot(self, force: bool = False) -> None:
        """Training loss per step (and its running mean), validation score per evaluation. Lines are updated
        in place, at most once a second: drawing runs on the GUI thread, which must stay responsive."""
        now = time.monotonic()
        if not force and now - self._drawn_at < 1.0:
            return
        self._drawn_at = now
        if not self._lines:
            self._lines = {
                "loss": self.ax.plot([], [], lw=0.6, color="#9ecae1", label="training loss")[0],
                "mean": self.ax.plot([], [], lw=1.5, color="#08519c", label="running mean")[0],
                "val": self.ax_val.plot([], [], "o-", color="#d94801", lw=1.2, ms=4, label="validation")[0],
            }
        lines = self._lines
        if self._losses:
            x, y = (np.asarray(v, float) for v in zip(*self._losses))
            lines["loss"].set_data(x, y)
            k = max(1, min(20, len(y) // 5))
            smooth = np.convolve(y, np.ones(k) / k, mode="valid")
            lines["mean"].set_data(x[k - 1:], smooth)
            lines["mean"].set_label(f"mean of {k} steps")
        self.ax_val.set_visible(bool(self._evals))
        if self._evals:
            steps, keys, values = zip(*self._evals)
            lines["val"].set_data(steps, values)
            lines["val"].set_label(f"validation {keys[-1]}")
            self.ax_val.set_ylabel(keys[-1], fontsize=8, color="#d94801")
            self.ax_val.tick_params(labelsize=7, colors="#d94801")
        for ax in (self.ax, self.ax_val):
            ax.relim()
            ax.autoscale_view()
        shown = [ln for ln in lines.values() if len(ln.get_xdata())]
        if shown:
            self.ax.legend(shown, [ln.get_label() for ln in shown], fontsize=7, loc="upper right")
        if not self._laid_out:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # a narrow dock may not fit every label; the plot stays readable
                self.figure.tight_layout()
            self._laid_out = True
        self.canvas.draw_idle()

    def _register(self, model_dir: str) -> None:
        """Register the run's model in the project it was trained from, even when another one is open now."""
        project = self.controller.session.project
        try:
            with project_at(self.result.project, project, project.user) as target:
                version = register_model(target, model_dir, self.result.parent, self.result.images)
        except CellCounterError as exc:
            show_error(f"The new model in {model_dir} could not be registered: {exc}")
            return
        if target is not project:
            show_info(f"Fine-tuned model {version.name} registered in {self.result.project.name}")
            return
        self._registered(version)

    def _registered(self, version: ModelVersion) -> None:
        metrics = version.metrics
        self.result.version = version
        self._show_scores(metrics.get("before") or {}, metrics.get("after") or {}, metrics.get("base") or {})
        said = activation_warning(metrics)
        calibration = f" {metrics['calibration'][:1].upper()}{metrics['calibration'][1:]}." if metrics.get(
            "calibration") else ""
        said_in_a_line = verdict(metrics)
        self.status.setText(f"new model {version.name}: {said_in_a_line[:1].upper()}{said_in_a_line[1:]}."
                            f"{calibration}")
        self.result.warning = f"WARNING: {said}." if said else ""
        self.activate_b.setText("Make active (worse than before!)" if said else "Make active")
        self.activate_b.setEnabled(True)
        show_info(f"Fine-tuned model {version.name} is ready: {said_in_a_line}")

    def _show_scores(self, before: dict, after: dict, base: dict | None = None) -> None:
        """The run's scores beside its parent's on the same validation images, then (when measured) on the
        start model's own validation images: what the fine-tune gained, and what it kept."""
        def keys_of(m: dict) -> list[str]:
            keys = [k for k in (*KEY_METRICS, "mask_ap", "accuracy") if isinstance(m.get(k), float)]
            return keys + [f"count_mae {c}" for c in (m.get("count_mae") or {})]

        def value(m: dict, key: str):
            if key.startswith("count_mae "):
                return (m.get("count_mae") or {}).get(key.split(" ", 1)[1])
            return m.get(key)

        rows: list[tuple] = [(key, before, after) for key in keys_of(after)]
        if base and base.get("after"):  # a heading row over the whole table width: no cut-off label
            rows.append((f"on {base.get('images', '')} of {base.get('model')}'s own validation images",))
            rows += [(key, base.get("before") or {}, base["after"]) for key in keys_of(base["after"])[:2]]
        self.scores.clearSpans()
        self.scores.setRowCount(len(rows))
        for i, row in enumerate(rows):
            if len(row) == 1:
                item = QTableWidgetItem(row[0])
                item.setToolTip(row[0])
                self.scores.setItem(i, 0, item)
                self.scores.setSpan(i, 0, 1, 3)
                continue
            key, b, a = row
            self.scores.setItem(i, 0, QTableWidgetItem(key.replace("count_mae ", "count error ")))
            for j, m in enumerate((b, a), start=1):
                v = value(m, key)
                self.scores.setItem(i, j, QTableWidgetItem("" if not isinstance(v, float) else f"{v:.3f}"))
        self.scores.resizeColumnToContents(0)
        self.scores.setVisible(bool(rows))
        self.scores.setFixedHeight(self.scores.horizontalHeader().height()
                                   + sum(self.scores.rowHeight(i) for i in range(len(rows))) + 4)

    @staticmethod
    def _short(m: dict) -> str:
        return ", ".join(f"{k} {v:.3f}" for k, v in m.items() if isinstance(v, float))

    def _finished(self) -> None:
        self.worker = None
        self.start_b.setEnabled(has_torch())
        self.cancel_b.setEnabled(False)
        self.resume_b.setEnabled(self._resumable is not None)

    def activate(self) -> None:
        if not self.result or self.result.version is None:
            return
        if self.result.warning and not self.confirm_activation(self.result.warning):
            return
        try:
            self.result.previous = activate_model(self.controller.session.project, self.result.version.name,
                                                  force=bool(self.result.warning))  # asked just now
        except CellCounterError as exc:  # registered in another project than the one open now
            show_error(str(exc))
            return
        self.rollback_b.setEnabled(True)
        self.activate_b.setEnabled(False)
        self.models_changed.emit()
        show_info(f"{self.result.version.name} is now the active model: Predict uses it for {self.result.task}")

    def confirm_activation(self, warning: str) -> bool:
        """Ask before making active a version that is worse than, or forgot what, the model it started from."""
        answer = QMessageBox.question(self, "Make active?", f"{warning}\n\nMake {self.result.version.name} the active "
                                      "model anyway?", QMessageBox.Yes | QMessageBox.No, QMessageBox.No)
        return answer == QMessageBox.Yes

    def rollback(self) -> None:
        task = self.result.task if self.result else self.task
        now = rollback_model(self.controller.session.project, task)
        self.rollback_b.setEnabled(False)
        self.activate_b.setEnabled(True)
        self.models_changed.emit()
        show_info(f"Rolled back: Predict now uses {now or 'the bundled model'} for {task}")
