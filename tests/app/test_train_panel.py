"""The Fine-tune panel gives its plot room, draws training and validation curves, and shows the scores
before and after side by side when a run ends (#19, point 7)."""

from __future__ import annotations

import numpy as np
from PIL import Image

from app.widgets.train import FineTuneRun
from cellcounter.project.registry import ModelVersion
from training.loop import TrainEvent


def test_curves_have_room_and_scores_before_and_after_sit_side_by_side(open_window, tmp_path, qtbot):
    Image.fromarray(np.full((60, 80, 3), 200, np.uint8)).save(tmp_path / "a.png")
    _, win, _ = open_window(tmp_path / "a.png")
    panel = win.train
    panel._on_event(TrainEvent("eval", 0, 40, 0, 2, metrics={"map50": 0.41, "count_mae": {"RBC": 3.0}}))
    for step in range(1, 41):
        panel._on_event(TrainEvent("step", step, 40, step // 20, 2, losses={"cls": 1.0 / step, "box": 0.2}))
        if step % 20 == 0:
            panel._on_event(TrainEvent("eval", step, 40, step // 20, 2, metrics={"map50": 0.4 + step / 100}))
    qtbot.wait(50)
    assert panel.canvas.height() >= 240
    assert len(panel.ax.get_lines()) == 2 and len(panel.ax_val.get_lines()) == 1  # loss, its mean, validation
    assert np.allclose(panel.ax_val.get_lines()[0].get_ydata(), [0.41, 0.6, 0.8])
    panel.result = FineTuneRun("blood")
    panel._registered(ModelVersion("blood-project-1", "blood", "", metrics={
        "before": {"map50": 0.41, "count_mae": {"RBC": 3.0, "WBC": 0.5}},
        "after": {"map50": 0.8, "count_mae": {"RBC": 1.5, "WBC": 0.25}}}))
    table = panel.scores
    rows = {table.item(i, 0).text(): (table.item(i, 1).text(), table.item(i, 2).text())
            for i in range(table.rowCount())}
    assert rows == {"map50": ("0.410", "0.800"), "count error RBC": ("3.000", "1.500"),
                    "count error WBC": ("0.500", "0.250")}
    assert table.isVisible() and panel.activate_b.isEnabled()
    assert "Better on your images: count error 3.50 -> 1.75 per image (map50 0.410 -> 0.800)" in panel.status.text()


def test_the_recipe_follows_the_start_model(open_window, tmp_path):
    """The bundled nuclei model is a U-Net: fine-tuning it uses the U-Net recipe; from scratch, the study's."""
    import numpy as np
    from PIL import Image

    Image.fromarray(np.full((64, 64, 3), 200, np.uint8)).save(tmp_path / "n.png")
    _, win, _ = open_window(tmp_path / "n.png", "nuclei")
    panel = win.train
    assert "nuclei-default" in panel.base.currentText() and panel.recipe.currentText() == "nuclei-unet"
    panel.base.setCurrentIndex(panel.base.findData(None))
    assert panel.recipe.currentText() == "nuclei-maskrcnn"
    maskrcnn = next(i for i in range(panel.base.count()) if "nuclei-maskrcnn" in panel.base.itemText(i))
    panel.base.setCurrentIndex(maskrcnn)
    assert panel.recipe.currentText() == "nuclei-maskrcnn"


def test_a_run_that_forgot_shows_both_figures_and_make_active_asks_first(open_window, tmp_path, monkeypatch):
    """When a fine-tune scored worse on its start model's own validation images, the panel shows those figures
    beside the run's own and "Make active" asks before replacing the model Predict uses."""

    Image.fromarray(np.full((60, 80, 3), 200, np.uint8)).save(tmp_path / "a.png")
    _, win, _ = open_window(tmp_path / "a.png")
    panel = win.train
    panel.result = FineTuneRun("blood")
    panel._registered(ModelVersion("blood-project-2", "blood", "", metrics={
        "before": {"map50": 0.41}, "after": {"map50": 0.8},
        "base": {"model": "blood-default@3", "images": 30, "before": {"map50": 0.88, "count_mae": {"RBC": 3.5}},
                 "after": {"map50": 0.70, "count_mae": {"RBC": 6.0}}}}))
    table = panel.scores
    rows = [tuple(table.item(i, j).text() if table.item(i, j) else None for j in range(3))
            for i in range(table.rowCount())]
    assert rows == [("map50", "0.410", "0.800"),
                    ("on 30 of blood-default@3's own validation images", None, None),  # a heading over all columns
                    ("map50", "0.880", "0.700"), ("count error RBC", "3.500", "6.000")]
    assert table.columnSpan(1, 0) == 3
    assert "Better on your images: map50 0.410 -> 0.800; but it lost map50 0.700 (was 0.880)" in panel.status.text()
    assert panel.activate_b.text() == "Make active (worse than before!)"
    asked = []
    monkeypatch.setattr(panel, "confirm_activation", lambda warning: asked.append(warning) or False)
    panel.activate()  # declined: nothing changes
    assert asked and "map50 0.700 (was 0.880)" in asked[0] and panel.activate_b.isEnabled()


def test_rehearsal_that_cannot_be_had_is_refused_at_start_not_from_the_run(open_window, tmp_path, monkeypatch):
    """A start model whose card records no training data on files cannot be rehearsed: Start says so at once
    and starts nothing (no child process to wait for)."""
    import app.widgets.train as train_panel
    from tests.helpers import make_tiny_model

    for k, name in enumerate(("a", "b")):
        Image.fromarray(np.full((60, 80, 3), 200 + k, np.uint8)).save(tmp_path / f"{name}.png")
    _, win, first = open_window(tmp_path)
    for image_id in win.session.queue():
        win.show_image(image_id)
        win.controller.set_review("reviewed")
    tiny = make_tiny_model("detector", tmp_path / "tiny")
    panel = win.train
    panel.base.addItem("tiny", str(tiny))
    panel.base.setCurrentIndex(panel.base.count() - 1)
    panel.rehearsal.setValue(0.5)
    shown = []
    monkeypatch.setattr(train_panel, "show_error", shown.append)
    assert panel.start() is None and panel.worker is None
    assert len(shown) == 1 and "rehearsal is not possible" in shown[0] and "records no training data" in shown[0]
