"""Fine-tune the model on the project's reviewed images without leaving the app (and without freezing it).

The reviewed labels are written as a COCO file beside the project, training runs
``training.iter_training`` in a worker thread, the loss streams into a live plot,
and the new model version is registered in the project with its validation
scores before and after, ready to be made active or rolled back.
"""

from __future__ import annotations

import time
from pathlib import Path

from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from napari.qt.threading import thread_worker
from napari.utils.notifications import show_error, show_info
from qtpy.QtWidgets import (QComboBox, QFormLayout, QHBoxLayout, QLabel, QProgressBar, QPushButton, QSpinBox,
                            QVBoxLayout, QWidget)

from app.controller import LayerController
from cellcounter.formats import write_labels
from training import RECIPES, TrainConfig, iter_training
from training.recipes import DEFAULT_RECIPE


def prepare_run(controller: LayerController, task: str, recipe: str, epochs: int, base: str | None) -> TrainConfig:
    """Write the reviewed images' labels for training and return the run's config."""
    session = controller.session
    controller.flush()
    reviewed = [r.id for r in session.project.images("reviewed")]
    if len(reviewed) < 2:
        raise ValueError("mark at least two images reviewed before fine-tuning (one is kept for validation)")
    run = session.project.path.with_suffix("") .with_name(session.project.path.stem + "-training") / time.strftime(
        "run-%Y%m%d-%H%M%S")
    run.mkdir(parents=True, exist_ok=True)
    write_labels(session.project.annotations(reviewed), run / "data" / "labels.json", "coco")
    return TrainConfig(task=task, data=str(run / "data" / "labels.json"), out=str(run), recipe=recipe,
                       epochs=epochs, init=base or "none", val_split=0.2, name=f"{task}-project")


class TrainPanel(QWidget):
    def __init__(self, controller: LayerController, task: str = "blood") -> None:
        super().__init__()
        self.controller = controller
        self.task = task
        self.worker = None
        self.result: dict | None = None
        self.recipe = QComboBox()
        self.recipe.addItems(list(RECIPES))
        self.recipe.setCurrentText(DEFAULT_RECIPE.get(task, "blood-detector"))
        self.epochs = QSpinBox()
        self.epochs.setRange(1, 500)
        self.epochs.setValue(10)
        self.base = QComboBox()
        self.start_b = QPushButton("Fine-tune on reviewed images")
        self.cancel_b = QPushButton("Cancel")
        self.cancel_b.setEnabled(False)
        self.progress = QProgressBar()
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.figure = Figure(figsize=(3, 2))
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.ax = self.figure.add_subplot(111)
        self.activate_b = QPushButton("Make active")
        self.rollback_b = QPushButton("Roll back")
        for b in (self.activate_b, self.rollback_b):
            b.setEnabled(False)
        form = QFormLayout()
        form.addRow("Recipe", self.recipe)
        form.addRow("Epochs", self.epochs)
        form.addRow("Start from", self.base)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        row = QHBoxLayout()
        row.addWidget(self.start_b)
        row.addWidget(self.cancel_b)
        layout.addLayout(row)
        layout.addWidget(self.progress)
        layout.addWidget(self.canvas)
        layout.addWidget(self.status)
        row2 = QHBoxLayout()
        row2.addWidget(self.activate_b)
        row2.addWidget(self.rollback_b)
        layout.addLayout(row2)
        self.start_b.clicked.connect(self.start)
        self.cancel_b.clicked.connect(self.stop)
        self.activate_b.clicked.connect(self.activate)
        self.rollback_b.clicked.connect(self.rollback)
        self._losses: list[tuple[int, float]] = []
        self.refresh_bases()

    def refresh_bases(self) -> None:
        from app.widgets.predict import available_models

        self.base.clear()
        self.base.addItem("nothing (train from scratch)", None)
        for label, path in available_models(self.task, self.controller.session.project):
            self.base.addItem(label, path)
        if self.base.count() > 1:
            self.base.setCurrentIndex(1)

    def start(self, config: TrainConfig | None = None):
        if self.worker is not None:
            return None
        try:
            cfg = config or prepare_run(self.controller, self.task, self.recipe.currentText(), self.epochs.value(),
                                        self.base.currentData())
        except (ValueError, OSError) as exc:
            show_error(str(exc))
            return None
        self._losses = []
        self.result = {"config": cfg, "parent": None if cfg.init == "none" else cfg.init}

        def run():
            yield from iter_training(cfg, should_stop=lambda: worker.abort_requested)

        worker = thread_worker(run, start_thread=False)()
        worker.yielded.connect(self._on_event)
        worker.errored.connect(lambda exc: show_error(f"Training failed: {exc}"))
        worker.finished.connect(self._finished)
        self.worker = worker
        self.start_b.setEnabled(False)
        self.cancel_b.setEnabled(True)
        self.status.setText("starting...")
        worker.start()
        return worker

    def stop(self) -> None:
        if self.worker is not None:
            self.worker.quit()

    def _on_event(self, ev) -> None:
        if ev.kind == "step":
            self.progress.setRange(0, ev.total_steps)
            self.progress.setValue(ev.step)
            self._losses.append((ev.step, sum(ev.losses.values())))
            if ev.step % 5 == 0 or ev.step == ev.total_steps:
                self._plot()
            self.status.setText(f"step {ev.step}/{ev.total_steps}, epoch {ev.epoch + 1}; "
                                f"about {int(ev.eta_s)} s left")
        elif ev.kind == "eval":
            shown = {k: round(v, 3) for k, v in ev.metrics.items() if isinstance(v, float)}
            self.status.setText(f"validation{' ' + ev.message if ev.message else ''}: {shown}")
        elif ev.kind == "done":
            self._register(ev)
        elif ev.kind == "stopped":
            self.status.setText("stopped; the run can be resumed from its checkpoint")

    def _plot(self) -> None:
        self.ax.clear()
        if self._losses:
            x, y = zip(*self._losses)
            self.ax.plot(x, y, lw=1)
        self.ax.set_xlabel("step", fontsize=7)
        self.ax.set_ylabel("loss", fontsize=7)
        self.ax.tick_params(labelsize=6)
        self.figure.tight_layout()
        self.canvas.draw_idle()

    def _register(self, ev) -> None:
        from cellcounter.models.card import ModelCard

        project = self.controller.session.project
        card = ModelCard.from_file(Path(ev.model_dir) / "card.json")
        name = f"{card.name}-{time.strftime('%Y%m%d-%H%M%S')}"
        parent = self.result.get("parent") if self.result else None
        metrics = {"after": card.metrics.get("validation", {}), "before": card.metrics.get("parent_validation")}
        reviewed = [r.id for r in project.images("reviewed")]
        project.add_model_version(name, card.task, ev.model_dir, {"name": card.name, "version": card.version},
                                  parent=parent, training_data=reviewed, metrics=metrics)
        self.result.update(name=name, metrics=metrics)
        before = f"; before: {self._short(metrics['before'])}" if metrics["before"] else ""
        self.status.setText(f"new model {name}: validation {self._short(metrics['after'])}{before}")
        self.activate_b.setEnabled(True)
        show_info(f"Fine-tuned model {name} is ready")

    @staticmethod
    def _short(m: dict) -> str:
        return ", ".join(f"{k} {v:.3f}" for k, v in m.items() if isinstance(v, float))

    def _finished(self) -> None:
        self.worker = None
        self.start_b.setEnabled(True)
        self.cancel_b.setEnabled(False)

    def activate(self) -> None:
        if not self.result or "name" not in self.result:
            return
        project = self.controller.session.project
        previous = project.active_model(self.task)
        self.result["previous"] = previous["name"] if previous else None
        project.set_active_model(self.result["name"])
        self.rollback_b.setEnabled(True)
        self.activate_b.setEnabled(False)
        show_info(f"{self.result['name']} is now the active model; run it from the Predict panel")

    def rollback(self) -> None:
        project = self.controller.session.project
        prev = (self.result or {}).get("previous")
        if prev:
            project.set_active_model(prev)
        else:  # there was none before
            project.deactivate_models(self.task)
        self.rollback_b.setEnabled(False)
        self.activate_b.setEnabled(True)
        show_info("Rolled back to the previous model")
