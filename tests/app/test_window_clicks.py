"""The correction loop as a person drives it (#31): the window from ``cellcounter-app``'s own entry point, real
clicks on its buttons, keys on its canvas and slider; nothing here calls a panel's method to do the work."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from qtpy.QtCore import Qt, QTimer
from qtpy.QtWidgets import QApplication, QMessageBox, QPushButton

from app.controller import DEBOUNCE_MS
from app.layers import BOXES
from app.main import build_parser, start
from app.window import SAMPLES
from cellcounter.metrics import box_iou


@pytest.fixture
def app_window(tmp_path, monkeypatch, qtbot):
    """``app_window(*argv)``: the window ``cellcounter-app ARGV`` opens; closed after the test."""
    monkeypatch.setenv("CELLCOUNTER_PROJECTS", str(tmp_path / "projects"))
    opened = []

    def _open(*argv):
        viewer, win = start(build_parser().parse_args([str(a) for a in argv]))
        opened.append((viewer, win))
        qtbot.wait(50)
        return viewer, win

    yield _open
    for viewer, win in opened:
        if win.session.project.closed:  # closed by the test itself
            continue
        win.controller.flush()
        win.session.close()
        viewer.close()


def _button(widget, text: str) -> QPushButton:
    return next(b for b in widget.findChildren(QPushButton) if b.text().startswith(text))


def _counted(win) -> dict[str, int]:
    text = win.counts.summary.text()
    return {k: int(v) for k, v in re.findall(r"(\w+) (\d+)", text.split(":", 1)[1])} if ":" in text else {}


def _drawn(viewer, win) -> int:
    return len(viewer.layers[BOXES].data) + len(win.controller.parked)


def _predict(qtbot, win) -> None:
    qtbot.mouseClick(win.predict.run_one, Qt.LeftButton)
    qtbot.waitUntil(lambda: win.predict.worker is None and win.predict.status.text().startswith("Done"),
                    timeout=180_000)
    qtbot.wait(50)


def _key(qtbot, viewer, key) -> None:
    qtbot.keyClick(viewer.window._qt_viewer.canvas.native, key)
    qtbot.wait(DEBOUNCE_MS + 200)  # the edit is committed after the debounce


def _select_box(viewer, index: int):
    layer = viewer.layers[BOXES]
    viewer.layers.selection.active = layer
    layer.mode = "select"
    layer.selected_data = {index}
    return layer


def test_a_plain_image_without_a_task_opens_and_its_task_can_be_changed_from_the_menu(app_window, tmp_path, qtbot):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(90, 230, (100, 140, 3), dtype=np.uint8)).save(tmp_path / "smear.png")
    viewer, win = app_window(tmp_path / "smear.png")  # `cellcounter-app smear.png`: no --task
    assert win.session.saved.task == "blood" and win.session.saved.class_names == ("RBC", "WBC", "Platelets")
    assert not win.grade_dock.isVisible() and not win.masks_dock.isVisible()
    assert _counted(win) == {"RBC": 0, "WBC": 0, "Platelets": 0}
    menu = next(a.menu() for a in viewer.window.main_menu.actions() if a.text() == "&Cellcounter")
    tasks = next(a.menu() for a in menu.actions() if a.text() == "Image task")
    next(a for a in tasks.actions() if a.text().startswith("nuclei")).trigger()
    qtbot.wait(50)
    assert win.session.saved.task == "nuclei" and win.masks_dock.isVisible()
    assert win.predict.task.currentText() == "nuclei" and _counted(win) == {"nucleus": 0}
    with win.session.project as _:
        pass
    from cellcounter.project import Project

    win.session.close()
    with Project.open(win.session.project.path, readonly=True) as p:  # the choice is the image's, remembered
        assert p.images()[0].task == "nuclei"


def test_a_fundus_photo_opened_in_a_blood_window_is_graded_not_counted(app_window, tmp_path, qtbot):
    viewer, win = app_window()  # the bundled blood sample
    yy, xx = np.mgrid[:1000, :1200]
    disc = ((yy - 500) ** 2 + (xx - 600) ** 2) < 450 ** 2
    img = np.zeros((1000, 1200, 3), np.uint8)
    img[disc] = (180, 90, 40)
    (tmp_path / "eye").mkdir()
    Image.fromarray(img).save(tmp_path / "eye" / "fundus.jpg")
    assert win.open_path(tmp_path / "eye" / "fundus.jpg")  # what Open image... does with the chosen file
    qtbot.waitUntil(lambda: win.session.saved.image_path == str(tmp_path / "eye" / "fundus.jpg"), timeout=30_000)
    qtbot.wait(50)
    assert win.session.saved.task == "retinopathy" and win.grade_dock.isVisible()
    assert "counted" not in win.counts.summary.text()


def test_a_second_prediction_keeps_the_deleted_box_deleted_and_the_relabelled_one_single(app_window, tmp_path,
                                                                                         qtbot):
    shutil.copy(SAMPLES["blood"], tmp_path / "smear.jpg")
    viewer, win = app_window(tmp_path / "smear.jpg", "--task", "blood")
    win.counts.summary.setText("")
    _predict(qtbot, win)
    first = _drawn(viewer, win)
    assert first >= 3
    layer = _select_box(viewer, 0)
    _key(qtbot, viewer, Qt.Key_Delete)
    assert _drawn(viewer, win) == first - 1
    layer = _select_box(viewer, 0)
    relabelled = layer.data[0][[0, 2]][:, ::-1].ravel()  # (row, col) corners -> x1 y1 x2 y2
    _key(qtbot, viewer, Qt.Key_2)  # number keys set the class: 2 is WBC
    before = _counted(win)
    assert sum(before.values()) == first - 1 == _drawn(viewer, win)

    _predict(qtbot, win)  # the person clicks Predict again
    after = _counted(win)
    assert after == before and _drawn(viewer, win) == first - 1
    boxes = win.controller.current().boxes
    shown = boxes.subset(boxes.above(win.controller.score_threshold))
    on_it = box_iou(relabelled[None], shown.xyxy)[0] >= 0.5
    assert on_it.sum() == 1 and shown.classes[on_it][0] == 1  # one box on the relabelled cell: the WBC


def test_counts_follow_the_slider_and_a_box_a_person_touched_always_counts(app_window, tmp_path, qtbot):
    shutil.copy(SAMPLES["blood"], tmp_path / "smear.jpg")
    viewer, win = app_window(tmp_path / "smear.jpg", "--task", "blood")
    _predict(qtbot, win)
    slider = win.review.threshold
    slider.setFocus()
    for _ in range(3):  # 0.50 -> 0.20: more of the model's boxes are drawn
        qtbot.keyClick(slider, Qt.Key_PageDown)
    qtbot.wait(50)
    assert abs(slider.value() - 20) <= 1
    assert sum(_counted(win).values()) == _drawn(viewer, win)
    boxes = win.controller.current().boxes
    low = np.nonzero((boxes.scores < 0.5) & (boxes.scores >= 0.2))[0]
    assert len(low), "the sample has model boxes between 0.2 and 0.5"
    shown_ids = viewer.layers[BOXES].features["id"].to_numpy()
    index = int(np.nonzero(shown_ids == boxes.ids[low[0]])[0][0])
    _select_box(viewer, index)
    _key(qtbot, viewer, Qt.Key_2)  # relabelled at 0.20: the person has checked this one
    slider.setFocus()
    for _ in range(3):
        qtbot.keyClick(slider, Qt.Key_PageUp)
    qtbot.wait(50)
    counted = _counted(win)
    assert sum(counted.values()) == _drawn(viewer, win) and counted["WBC"] >= 1
    touched = win.controller.current().boxes
    assert boxes.ids[low[0]] in viewer.layers[BOXES].features["id"].to_numpy()  # still drawn at 0.50
    assert touched.classes[touched.ids == boxes.ids[low[0]]][0] == 1


class _Asked(list):
    timer: QTimer


def _answer_when_asked(qtbot, button) -> list[str]:
    """Click ``button`` on the next message box that shows (a modal question blocks the click that opened it);
    returns the texts it asked, filled once answered."""
    asked = _Asked()
    timer = QTimer()

    def look() -> None:
        box = next((w for w in QApplication.topLevelWidgets() if isinstance(w, QMessageBox) and w.isVisible()), None)
        if box is not None:
            timer.stop()
            asked.append(box.text())
            qtbot.mouseClick(box.button(button), Qt.LeftButton)

    timer.timeout.connect(look)
    timer.start(100)
    asked.timer = timer  # kept alive as long as the list
    return asked


def _two_reviewed(app_window, voc_folder, qtbot):
    """A window on two smears, both marked reviewed by clicking Reviewed then Next."""
    viewer, win = app_window(voc_folder({"a": ["RBC", "RBC", "WBC"], "b": ["RBC", "Platelets"]}), "--task", "blood")
    for _ in range(2):
        qtbot.mouseClick(_button(win.review, "Reviewed"), Qt.LeftButton)
        qtbot.mouseClick(_button(win.review, "Next"), Qt.LeftButton)
    return viewer, win


def test_in_the_counting_build_the_fine_tune_button_says_it_needs_the_full_build(app_window, voc_folder, qtbot,
                                                                                  monkeypatch):
    """#35: a build without torch predicts and counts; its Fine-tune panel says plainly what training needs."""
    import app.widgets.train as train_mod

    monkeypatch.setattr(train_mod, "has_torch", lambda: False)
    viewer, win = _two_reviewed(app_window, voc_folder, qtbot)
    panel = win.train
    assert not panel.start_b.isEnabled() and "full build" in panel.start_b.toolTip()
    assert "Fine-tuning needs torch" in panel.status.text() and "full build" in panel.status.text()
    qtbot.mouseClick(panel.start_b, Qt.LeftButton)
    qtbot.wait(200)
    assert panel.worker is None and win.session.project.registry.versions("blood") == []


def test_the_fine_tune_button_trains_on_the_reviewed_images(app_window, voc_folder, qtbot):
    viewer, win = _two_reviewed(app_window, voc_folder, qtbot)
    assert {r.review.value for r in win.session.project.images()} == {"reviewed"}
    panel = win.train
    panel.base.setCurrentIndex(panel.base.findData(None))  # from scratch: quick on two small images
    panel.epochs.setValue(1)
    qtbot.mouseClick(panel.start_b, Qt.LeftButton)
    qtbot.waitUntil(lambda: panel.worker is not None, timeout=60_000)
    assert "'bool'" not in panel.status.text()
    qtbot.waitUntil(lambda: panel.worker is None, timeout=300_000)
    models = win.session.project.registry.versions("blood")
    assert len(models) == 1 and sorted(models[0].training_data) == [1, 2], panel.status.text()
    assert panel.activate_b.isEnabled()


def test_a_blood_fine_tune_from_the_bundled_model_rehearses_the_labs_it_knew(app_window, voc_folder, qtbot):
    """#34: Rehearsal shows 0.5 for the bundled blood model (it carries a sample of its training smears) and 0
    from scratch; Start with it mixes as many of them into the run as corrected smears train."""
    viewer, win = _two_reviewed(app_window, voc_folder, qtbot)
    panel = win.train
    assert panel.base.currentData().endswith("blood-default") and panel.rehearsal.value() == 0.5
    panel.base.setCurrentIndex(panel.base.findData(None))
    assert panel.rehearsal.value() == 0.0  # from scratch: nothing to rehearse
    panel.base.setCurrentIndex(1)
    assert panel.rehearsal.value() == 0.5
    panel.epochs.setValue(1)
    qtbot.mouseClick(panel.start_b, Qt.LeftButton)
    qtbot.waitUntil(lambda: panel.worker is None, timeout=600_000)
    assert panel.result.config.rehearsal == 0.5 and panel.result.version is not None, panel.status.text()
    card = json.loads((Path(panel.result.version.file) / "card.json").read_text())
    trained = card["training"]["train_images"]
    assert len(trained) == 2, trained  # one corrected smear trains (one is held back) and one rehearsed


def test_a_fine_tune_finishing_after_the_user_opened_another_folder_registers_where_it_started(
        app_window, voc_folder, qtbot, tmp_path):
    """The run's model goes to the project it was trained from, opened again for the write, not to the one on
    screen (workflows.project_at, shared with predictions)."""
    from cellcounter.project import Project

    viewer, win = _two_reviewed(app_window, voc_folder, qtbot)
    started_in = win.session.project.path
    panel = win.train
    panel.base.setCurrentIndex(panel.base.findData(None))
    panel.epochs.setValue(1)
    qtbot.mouseClick(panel.start_b, Qt.LeftButton)
    qtbot.waitUntil(lambda: panel.worker is not None, timeout=60_000)
    other = voc_folder({"c": ["RBC"]}, tmp_path / "other")
    assert win.open_path(other, "blood", wait=True)  # File > Open folder while the run goes on
    assert win.session.project.path != started_in
    qtbot.waitUntil(lambda: panel.worker is None, timeout=300_000)
    assert win.session.project.registry.versions("blood") == []
    with Project.open(started_in, readonly=True) as first:
        models = first.registry.versions("blood")
    assert len(models) == 1 and sorted(models[0].training_data) == [1, 2]


def test_a_fine_tune_left_at_auto_runs_the_plan_and_says_in_a_line_whether_it_is_better(app_window, voc_folder,
                                                                                         qtbot, tmp_path):
    """#34 points 3 and 5: Epochs shows "auto" (steps scaled to the corrected images), and when the run ends the
    panel says, on the user's own held-back corrections, whether the new model counts better than the one it
    started from; Make active then makes it Predict's model."""
    from cellcounter.project import workflows as wf
    from tests.helpers import make_tiny_model

    viewer, win = _two_reviewed(app_window, voc_folder, qtbot)
    project = win.session.project
    start_model = wf.register_model(project, make_tiny_model("detector", tmp_path / "tiny"), None, [])
    wf.activate_model(project, start_model.name)
    panel = win.train
    panel.refresh_bases()  # as after a fine-tune made a version active: the start model is the active one
    assert panel.epochs.text() == "auto" and panel.base.currentData() == start_model.file
    qtbot.mouseClick(panel.start_b, Qt.LeftButton)
    qtbot.waitUntil(lambda: panel.worker is None, timeout=300_000)
    cfg = panel.result.config
    assert cfg.max_steps == 40 and cfg.plan.endswith("40 steps for 2 images"), panel.status.text()
    # an untrained start model on one held-back image: the new one is no better, and the panel says so plainly
    assert panel.status.text().startswith(f"new model {panel.result.version.name}: Worse: keep the current model; "
                                          "map50 "), panel.status.text()
    assert "on your held-back images" in panel.status.text()
    assert panel.activate_b.text() == "Make active (worse than before!)"
    asked = _answer_when_asked(qtbot, QMessageBox.Yes)
    qtbot.mouseClick(panel.activate_b, Qt.LeftButton)  # asks first; Yes makes it active all the same
    assert asked and "worse than the model it started from" in asked[0]
    assert wf.default_model(project, "blood") == next(m.file for m in project.registry.versions("blood")
                                                      if m.name == panel.result.version.name)


def test_a_cancelled_fine_tune_is_resumed_from_its_button_and_in_the_next_window(app_window, voc_folder, qtbot):
    viewer, win = _two_reviewed(app_window, voc_folder, qtbot)
    panel = win.train
    assert not panel.resume_b.isEnabled()
    panel.base.setCurrentIndex(panel.base.findData(None))
    panel.epochs.setValue(2)
    qtbot.mouseClick(panel.start_b, Qt.LeftButton)
    assert panel.progress.maximum() == 0  # busy from the first moment, before the run counts its steps
    qtbot.mouseClick(panel.cancel_b, Qt.LeftButton)
    qtbot.waitUntil(lambda: panel.worker is None, timeout=300_000)
    assert "stopped at step" in panel.status.text() and panel.resume_b.isEnabled()
    assert not win.session.project.registry.versions("blood")
    project = win.session.project.path
    win.controller.flush()
    win.session.close()
    viewer.close()

    # the next window finds the stopped run on disk and goes on with it
    viewer, win = app_window(project)
    panel = win.train
    qtbot.waitUntil(lambda: panel.resume_b.isEnabled(), timeout=10_000)
    qtbot.mouseClick(panel.resume_b, Qt.LeftButton)
    qtbot.waitUntil(lambda: panel.worker is None, timeout=300_000)
    (version,) = win.session.project.registry.versions("blood")
    assert sorted(version.training_data) == [1, 2], panel.status.text()
    assert panel.activate_b.isEnabled() and not panel.resume_b.isEnabled()


def test_the_grade_panel_says_how_sure_and_the_heat_map_comes_back(app_window, tmp_path, qtbot):
    from cellcounter.annotations import Grade, Origin

    for i in range(2):
        Image.fromarray(np.full((90, 120, 3), 60 + 40 * i, np.uint8)).save(tmp_path / f"eye{i}.png")
    viewer, win = app_window(tmp_path, "--task", "retinopathy")
    proj, first = win.session.project, win.session.current_id
    ann = proj.load(first)
    ann.grade = Grade(0, np.array([0.24, 0.17, 0.22, 0.17, 0.20]), Origin.MODEL)
    proj.save(first, ann, origin="model:m@1")
    win.controller.show_heatmap(first, np.random.default_rng(0).random((90, 120)))  # as a prediction delivers it
    from app.controller import HEATMAP

    assert HEATMAP in viewer.layers
    qtbot.mouseClick(_button(win.review, "Next"), Qt.LeftButton)
    assert win.session.current_id != first and HEATMAP not in viewer.layers
    qtbot.mouseClick(_button(win.review, "< Previous"), Qt.LeftButton)
    assert win.session.current_id == first
    assert HEATMAP in viewer.layers  # the heat map is back with its image
    assert win.grade.predicted.text().startswith("uncertain: 0 or 2")
    assert win.counts.summary.text().startswith("Uncertain: 0 or 2")  # not a bold "Grade 0" beside it
    assert win.grade.referral.text().startswith("referable")


def test_the_window_fits_a_laptop_screen_with_every_panel_reachable(app_window, qtbot):
    """#31 point 7: on 1366 x 768 the Counts and Review panels were off-screen (minimum height 1041 px)."""
    viewer, win = app_window()  # the bundled sample, every panel filled
    qt_window = viewer.window._qt_window
    qt_window.resize(1366, 728)  # a 1366 x 768 screen less its task bar
    qtbot.wait(200)
    assert qt_window.height() <= 728 and qt_window.minimumSizeHint().height() <= 728
    for panel in (win.counts, win.review, win.predict):
        area = panel.parentWidget().parentWidget()  # the scroll area's viewport, then the scroll area
        top_left = area.mapTo(qt_window, area.rect().topLeft())
        assert 0 <= top_left.y() < qt_window.height() - 40, (type(panel).__name__, top_left.y())
        assert area.height() >= 60


def _mouse(widget, kind, pos, buttons):
    from qtpy.QtCore import QEvent, QPointF
    from qtpy.QtGui import QMouseEvent
    from qtpy.QtWidgets import QApplication

    types = {"press": QEvent.MouseButtonPress, "move": QEvent.MouseMove, "release": QEvent.MouseButtonRelease}
    local = QPointF(*pos)
    event = QMouseEvent(types[kind], local, widget.mapToGlobal(local), Qt.LeftButton if kind != "move" else
                        Qt.NoButton, buttons, Qt.NoModifier)
    QApplication.sendEvent(widget, event)


def test_panning_in_click_count_mode_adds_no_mark_and_a_click_adds_one(app_window, voc_folder, qtbot):
    """#31 point 6: a drag to pan added a mark where it started."""
    from app.layers import POINTS

    viewer, win = app_window(voc_folder({"a": ["RBC"]}), "--task", "blood")
    viewer.camera.zoom *= 4
    qtbot.keyClick(viewer.window._qt_viewer.canvas.native, Qt.Key_C, Qt.ShiftModifier)  # Shift-C: click-count on
    assert win.click_count
    canvas = viewer.window._qt_viewer.canvas.native
    centre = viewer.camera.center
    _mouse(canvas, "press", (300, 300), Qt.LeftButton)
    for step in range(1, 11):
        _mouse(canvas, "move", (300 + 12 * step, 300 + 6 * step), Qt.LeftButton)
        qtbot.wait(5)
    _mouse(canvas, "release", (420, 360), Qt.NoButton)
    qtbot.wait(DEBOUNCE_MS + 200)
    assert viewer.camera.center != centre  # it panned
    assert len(viewer.layers[POINTS].data) == 0  # and marked nothing
    _mouse(canvas, "press", (300, 300), Qt.LeftButton)
    _mouse(canvas, "release", (300, 300), Qt.NoButton)
    qtbot.wait(DEBOUNCE_MS + 200)
    assert len(viewer.layers[POINTS].data) == 1


def test_run_on_unreviewed_with_nothing_to_run_says_so_at_once(app_window, voc_folder, qtbot):
    """#31 point 10: it said "loading the model..." for 18 s, then "Done: 0 image(s)"."""
    viewer, win = app_window(voc_folder({"a": ["RBC"]}), "--task", "blood")
    qtbot.mouseClick(_button(win.review, "Reviewed"), Qt.LeftButton)
    qtbot.mouseClick(win.predict.run_all, Qt.LeftButton)
    assert win.predict.worker is None and win.predict.status.text().startswith("Nothing to predict")


def test_predict_all_skips_an_image_that_cannot_be_read_says_so_and_predicts_the_others(app_window, voc_folder,
                                                                                        qtbot):
    """#33 point 1: one bad-file policy everywhere. A damaged file in the middle of "Run on unreviewed" is
    named and skipped, the images after it are still predicted (it stopped the batch before)."""
    from app.widgets.predict import PROGRESS_STEPS

    root = voc_folder({"a": ["RBC"], "b": ["RBC"], "c": ["RBC"]})
    viewer, win = app_window(root, "--task", "blood")
    (root / "JPEGImages" / "b.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a JPEG any more")  # damaged on disk
    qtbot.mouseClick(win.predict.run_all, Qt.LeftButton)
    qtbot.waitUntil(lambda: win.predict.worker is None and win.predict.status.text().startswith("Done"),
                    timeout=180_000)
    assert [f.job.image_path.name for f in win.predict.failed] == ["b.jpg"]
    assert "1 could not be predicted" in win.predict.status.text() and win.predict.status.text().startswith("Done: 2")
    assert win.predict.progress.value() == PROGRESS_STEPS  # c, after the bad file, was predicted too


def test_an_image_with_thousands_of_outlines_opens_from_the_menu_without_freezing_the_window(app_window, tmp_path,
                                                                                             qtbot, monkeypatch):
    from qtpy.QtCore import QTimer
    from qtpy.QtWidgets import QFileDialog

    _aperio_tile(tmp_path / "tile", 4000)  # ten times as many nuclei as a MoNuSeg tile
    viewer, win = app_window()
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(tmp_path / "tile" / "tile.png"), ""))
    menu = next(a.menu() for a in viewer.window.main_menu.actions() if a.text() == "&Cellcounter")
    action = next(a for a in menu.actions() if a.text() == "Open image...")
    ticks = []
    timer = QTimer()
    timer.timeout.connect(lambda: win._opening is not None and ticks.append(1))
    timer.start(10)
    action.trigger()  # what clicking the menu entry does
    assert win._opening is not None  # the labels are being read in the background: the click returned at once
    qtbot.waitUntil(lambda: win._opening is None, timeout=120_000)
    timer.stop()
    assert win.session.saved.image_path == str(tmp_path / "tile" / "tile.png")
    assert len(win.session.saved.masks) > 3000 and win.session.saved.task == "nuclei"
    assert len(ticks) >= 3  # the window's event loop ran while the outlines were read


def _aperio_tile(folder, n: int, size: int = 1000, seed: int = 3):
    """A tile with ``n`` nuclei outlined in an Aperio ImageScope file beside it, as MoNuSeg ships them."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(120, 230, (size, size, 3), dtype=np.uint8)).save(folder / "tile.png")
    regions = []
    t = np.linspace(0, 2 * np.pi, 24, endpoint=False)
    for i in range(n):
        cy, cx = rng.uniform(20, size - 20, 2)
        verts = "".join(f'<Vertex X="{cx + 7 * np.cos(a):.1f}" Y="{cy + 6 * np.sin(a):.1f}"/>' for a in t)
        regions.append(f'<Region Id="{i + 1}"><Vertices>{verts}</Vertices></Region>')
    (folder / "tile.xml").write_text(f'<Annotations MicronsPerPixel="0.25"><Annotation Id="1"><Regions>'
                                     f'{"".join(regions)}</Regions></Annotation></Annotations>')
    return folder / "tile.png"


def test_reference_masks_look_imported_and_a_new_instance_is_painted_in_a_colour_that_shows(app_window, tmp_path,
                                                                                            qtbot):
    from matplotlib.colors import rgb_to_hsv

    from app.layers import MASKS

    viewer, win = app_window(_aperio_tile(tmp_path / "tile", 30, size=300))
    layer = viewer.layers[MASKS]
    masks = win.controller.current().masks
    ref = layer.colormap.map(masks.ids[:10])
    assert np.allclose(ref[:, 3], 0.5)  # faint, as imported reference boxes are filled faintly
    hues = rgb_to_hsv(ref[:, :3])[:, 0]
    assert ((hues > 0.4) & (hues < 0.7)).all()  # cool blue-greens: not the model's colours of every hue
    viewer.layers.selection.active = layer
    qtbot.keyClick(viewer.window._qt_viewer.canvas.native, Qt.Key_N, Qt.ShiftModifier)  # Shift-N: new instance
    qtbot.wait(50)
    new = layer.selected_label
    assert new == int(masks.ids.max()) + 1 and layer.mode == "paint"
    colour = layer.colormap.map(np.array([new]))[0]
    assert np.allclose(colour, [1.0, 0.9, 0.0, 1.0])  # bright yellow: visible on H&E pink and purple


def test_the_selected_line_follows_a_number_key_relabel_at_once(app_window, voc_folder, qtbot):
    folder = voc_folder({"a": ["RBC", "RBC", "WBC"]})
    viewer, win = app_window(folder, "--task", "blood")
    _select_box(viewer, 0)
    qtbot.wait(50)
    assert win.counts.selected.text().startswith("Selected: RBC"), win.counts.selected.text()
    qtbot.keyClick(viewer.window._qt_viewer.canvas.native, Qt.Key_2)  # 2: the second class, WBC
    assert win.counts.selected.text().startswith("Selected: WBC"), win.counts.selected.text()
    qtbot.wait(DEBOUNCE_MS + 200)  # saved: a reference box a person relabelled is now a corrected one
    assert "corrected by a person" in win.counts.selected.text(), win.counts.selected.text()


def test_arrow_keys_through_the_grade_choices_save_the_grade_settled_on_as_one_undo_step(app_window, tmp_path,
                                                                                        qtbot):
    from app.widgets.grade import COMMIT_AFTER_MS

    Image.fromarray(np.full((90, 120, 3), 80, np.uint8)).save(tmp_path / "eye.png")
    viewer, win = app_window(tmp_path / "eye.png", "--task", "retinopathy")
    combo = win.grade.override
    combo.setFocus()
    for _ in range(3):  # (none) -> 0 -> 1 -> 2
        qtbot.keyClick(combo, Qt.Key_Down)
    assert win.session.project.load(win.session.current_id).grade is None  # still settling: nothing saved yet
    qtbot.wait(COMMIT_AFTER_MS + 200)
    assert win.session.project.load(win.session.current_id).grade.value == 2
    assert combo.currentText().startswith("2")
    qtbot.keyClick(viewer.window._qt_viewer.canvas.native, Qt.Key_Z, Qt.ControlModifier)  # one undo step
    qtbot.wait(50)
    assert win.session.project.load(win.session.current_id).grade is None
    assert combo.currentText() == "(none)"


def test_the_count_says_how_sure_it_is_and_the_range_follows_the_slider(app_window, tmp_path, qtbot):
    """#37: "RBC 23 (21-26)": the count at the threshold and where it goes when the threshold moves by 0.1."""
    shutil.copy(SAMPLES["blood"], tmp_path / "smear.jpg")
    viewer, win = app_window(tmp_path / "smear.jpg", "--task", "blood")
    _predict(qtbot, win)
    boxes = win.controller.current().boxes
    for threshold in (0.5, 0.3):
        spans = re.findall(r"(\w+) (\d+) \((\d+)-(\d+)\)", win.counts.summary.text())
        expect = {n: r for n, r in win.controller.current().count_range(threshold).items() if r[0] != r[1]}
        assert {n: (int(lo), int(hi)) for n, _, lo, hi in spans} == expect, win.counts.summary.text()
        rbc = boxes.scores[boxes.classes == 0]
        assert expect["RBC"] == (int((rbc >= threshold + 0.1).sum()), int((rbc >= threshold - 0.1).sum()))
        slider = win.review.threshold
        slider.setFocus()
        for _ in range(2):  # 0.50 -> 0.30
            qtbot.keyClick(slider, Qt.Key_PageDown)
        qtbot.wait(50)


def test_the_export_menu_offers_every_format_the_core_writes_and_writes_the_chosen_one(app_window, tmp_path, qtbot,
                                                                                     monkeypatch):
    """#33 point 8: the menu was a hard-coded list that missed cvppp and colour-mask; it now follows FORMATS."""
    from qtpy.QtWidgets import QFileDialog

    from cellcounter.formats import FORMATS

    viewer, win = app_window()  # the bundled blood sample
    menu = next(a.menu() for a in viewer.window.main_menu.actions() if a.text() == "&Cellcounter")
    export = next(a.menu() for a in menu.actions() if a.text() == "Export")
    offered = {a.text() for a in export.actions()}
    writable = [name for name, spec in FORMATS.items() if spec.writer is not None]
    assert {"cvppp", "colour-mask", "yolo", "coco"} <= set(writable)
    assert offered == {f"{w} as {f}..." for f in writable for w in ("This image", "Whole project")}
    action = next(a for a in export.actions() if a.text() == "This image as yolo...")
    assert "YOLO" in action.toolTip()
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: str(tmp_path / "yolo"))
    action.trigger()  # what choosing it in the menu does
    qtbot.wait(50)
    assert (tmp_path / "yolo" / "data.yaml").is_file() and list((tmp_path / "yolo").rglob("*.txt"))
