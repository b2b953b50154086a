"""A scripted labelling session through the real window, as a pathologist would do it."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from app.layers import BOXES, POINTS
from app.session import Session
from cellcounter.annotations import Boxes, Origin
from cellcounter.formats import read_labels
from tests.conftest import data_dir
from tests.helpers import make_tiny_model


@pytest.fixture
def projects(tmp_path, monkeypatch):
    monkeypatch.setenv("CELLCOUNTER_PROJECTS", str(tmp_path / "projects"))
    return tmp_path / "projects"


def test_scripted_session_predict_correct_count_grade_undo_export_reopen(open_window, qtbot, tmp_path,
                                                                        projects):
    bccd = data_dir("bccd")
    image = bccd / "JPEGImages" / "BloodImage_00001.jpg"
    viewer, win = open_window(image, "blood")[:2]
    ctl = win.controller
    stored = ctl.current()
    assert len(viewer.layers[BOXES].data) == len(stored.boxes) > 0  # the VOC labels beside it are shown

    # run a small model in the background worker
    model = make_tiny_model("detector", tmp_path / "tiny")
    win.predict.model.addItem("tiny", str(model))
    win.predict.model.setCurrentIndex(win.predict.model.count() - 1)
    worker = win.predict.start(all_unreviewed=False)
    assert worker is not None
    qtbot.waitUntil(lambda: win.predict.worker is None, timeout=120_000)
    after_pred = ctl.current()
    n_model = int((after_pred.boxes.origins == Origin.MODEL).sum())
    assert n_model > 0 and len(after_pred.boxes) == len(stored.boxes) + n_model
    rows = {r[0]: r for r in win.session.count_rows(after_pred)}
    assert sum(r[1] for r in rows.values()) == n_model  # the "model" column counts the prediction

    shapes = viewer.layers[BOXES]
    n = len(shapes.data)
    # delete a box
    shapes.selected_data = {0}
    shapes.remove_selected()
    # add one (drawn with the current class)
    shapes.feature_defaults["class"] = "WBC"
    shapes.add_rectangles(np.array([[10.0, 10.0], [60.0, 70.0]]))
    # relabel one with a number key's action
    shapes.selected_data = {1}
    ctl.relabel_selected(2)
    ctl.flush()
    ann = ctl.current()
    assert len(ann.boxes) == n and ann.boxes.classes[1] == 2
    drawn = np.flatnonzero(np.all(np.abs(ann.boxes.xyxy - [10, 10, 70, 60]) < 1e-6, axis=1))
    assert len(drawn) == 1  # the rectangle drawn at rows 10-60, columns 10-70, as x1 y1 x2 y2
    assert ann.boxes.origins[drawn[0]] == Origin.HUMAN and ann.boxes.classes[drawn[0]] == 1  # WBC

    # click-count three marks, then click one again to remove it, then add it back
    win.controller.relabel_selected(0)
    shapes.selected_data = set()
    for rc in ([100, 100], [150, 200], [300, 400]):
        win.toggle_mark(rc)
    win.toggle_mark([150, 200])
    assert len(viewer.layers[POINTS].data) == 2
    win.toggle_mark([150, 200])
    ctl.flush()
    assert len(ctl.current().points) == 3

    # undo and redo
    before_undo = ctl.current()
    assert ctl.undo()
    assert len(ctl.current().points) == 2
    assert ctl.redo()
    assert ctl.current().equals(before_undo)

    # review status, export, and the screenshot shows the boxes
    win.review.set_status("reviewed")
    assert win.session.saved.review.value == "reviewed"
    written = win.export("voc", whole_project=False, dst=tmp_path / "export")
    assert written and read_labels(written[0])[0].boxes.equals(ctl.current().boxes.subset(
        np.ones(len(ctl.current().boxes), bool)))
    win.export("counts-csv", whole_project=True, dst=tmp_path / "counts.csv")
    table = list(csv.reader(open(tmp_path / "counts.csv")))
    assert table[0][:4] == ["image", "RBC", "WBC", "Platelets"]
    # the window with overlays, saved for a person to look at, differs from the bare image where boxes are
    shot = np.asarray(viewer.screenshot(str(tmp_path / "session.png"), canvas_only=True))
    for name in (BOXES, POINTS):
        viewer.layers[name].visible = False
    bare = np.asarray(viewer.screenshot(canvas_only=True))
    assert (tmp_path / "session.png").is_file() and shot.shape == bare.shape
    changed = np.abs(shot[..., :3].astype(int) - bare[..., :3].astype(int)).sum(axis=2) > 30
    assert bare[..., :3].std() > 10 and 0.002 < changed.mean() < 0.5
    final = ctl.current()
    win.session.close()

    # reopen: everything is still there, and the status survived
    session, first = Session.open_path(image, "blood", user="tester")
    again = session.load(first)
    assert again.review.value == "reviewed" and again.boxes.equals(final.boxes) and len(again.points) == 3
    kinds = {e["kind"] for e in session.project.history.events(first)}
    assert {"boxes", "points", "review"} <= kinds
    session.close()


def test_grade_override_on_a_fundus_image(open_window, projects):
    idrid = data_dir("idrid")
    image = sorted((idrid / "1. Original Images" / "b. Testing Set").glob("*.jpg"))[0]
    viewer, win = open_window(image, "retinopathy")[:2]
    assert win.grade_dock.isVisible()
    win.grade.set_grade(3)
    assert win.session.saved.grade.value == 3 and win.session.saved.grade.origin == Origin.HUMAN
    assert win.controller.undo()
    assert win.session.saved.grade is None or win.session.saved.grade.value != 3
    win.session.close()


def test_grader_prediction_shows_grade_and_a_heat_map_layer(open_window, projects, qtbot, tmp_path):
    from PIL import Image

    from app.controller import HEATMAP

    rng = np.random.default_rng(0)
    image = tmp_path / "fundus.png"
    Image.fromarray((rng.random((90, 140, 3)) * 255).astype(np.uint8)).save(image)
    viewer, win = open_window(image, "retinopathy")[:2]
    model = make_tiny_model("grader", tmp_path / "tiny")
    win.predict.task.setCurrentText("retinopathy")
    win.predict.model.addItem("tiny", str(model))
    win.predict.model.setCurrentIndex(win.predict.model.count() - 1)
    assert win.predict.heat_map.isChecked()
    assert win.predict.start(all_unreviewed=False) is not None
    qtbot.waitUntil(lambda: win.predict.worker is None, timeout=60_000)
    grade = win.session.saved.grade
    assert grade is not None and grade.origin == Origin.MODEL
    text = win.grade.predicted.text()  # the grade, or the two it hesitates between
    assert text.startswith(f"grade {grade.value}") or (text.startswith("uncertain") and str(grade.value) in text)
    heat = viewer.layers[HEATMAP]
    assert heat.data.shape == (90, 140) and 0 < heat.data.max() <= 1
    assert not heat.data[:, :20].any()  # outside the 90 x 90 centre crop the grader saw
    win.session.close()


def test_review_queue_moves_between_images_and_orders_by_confidence(open_window, projects, tmp_path):
    from PIL import Image

    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(np.full((40, 50, 3), 40 * i, np.uint8)).save(folder / f"im{i}.png")
    viewer, win = open_window(folder, "blood")[:2]
    first = win.session.current_id
    win.review.go(1)
    assert win.session.current_id != first
    win.review.go(-1)
    assert win.session.current_id == first
    assert len(win.session.queue("unreviewed")) == 1  # the two opened are in progress now
    proj = win.session.project
    ids = [r.id for r in proj.images()]
    for image_id, scores in zip(ids, ([0.9, 0.8], [0.3, 0.4], [0.6, 0.7])):  # means 0.85, 0.35, 0.65
        ann = proj.load(image_id)
        ann.boxes = Boxes(np.array([[1, 1, 9, 9], [20, 20, 30, 30]], float), [0, 1], scores, [Origin.MODEL] * 2)
        proj.save(image_id, ann, origin="model:m@1")
    assert win.session.queue(order="least-confident") == [ids[1], ids[2], ids[0]]
    win.review.order.setCurrentText("least confident first")
    win.review.go(1)  # from the first image (the surest) on to the least certain, wrapping round
    assert win.session.current_id == ids[1]
    win.session.close()


@pytest.mark.parametrize("task", ["blood", "leaves", "retinopathy"])
def test_samples_open_with_the_default_models_predictions(open_window, projects, qtbot, task, tmp_path,
                                                          monkeypatch):
    """File > Samples: the image alone, then the bundled default model's objects and counts."""
    import app.widgets.predict as predict_mod
    from app.window import SAMPLES

    models = tmp_path / "models"
    kind = {"blood": "detector", "leaves": "segmenter", "retinopathy": "grader"}[task]
    make_tiny_model(kind, models / f"{task}-default", task=task, class_names=["leaf"] if task == "leaves" else None)
    monkeypatch.setattr(predict_mod, "RESOURCES_MODELS", models)
    from PIL import Image

    start = tmp_path / "start" / "first.png"
    start.parent.mkdir()
    Image.fromarray(np.zeros((30, 40, 3), np.uint8)).save(start)
    viewer, win = open_window(start, "blood")[:2]
    worker = win.open_sample(task)
    assert worker is not None
    qtbot.waitUntil(lambda: win.predict.worker is None, timeout=120_000)
    saved = win.session.saved
    assert saved.image_path == str(SAMPLES[task])
    if task == "retinopathy":  # the IDRiD photo: graded, not counted
        assert saved.grade is not None and saved.grade.origin == Origin.MODEL and win.grade_dock.isVisible()
    else:
        objects = saved.boxes if task == "blood" else saved.masks
        assert len(objects) > 0 and set(objects.origins.tolist()) == {Origin.MODEL}  # no reference labels
        table = win.counts.table
        assert int(table.item(table.rowCount() - 1, 1).text()) > 0  # the model column counts them
    win.session.close()
    # the same sample again, from the project already open: no lock conflict, the same image
    shown = win.session.current_id
    assert win.open_sample(task) is not None
    qtbot.waitUntil(lambda: win.predict.worker is None, timeout=120_000)
    assert win.session.current_id == shown and win.session.saved.image_path == str(SAMPLES[task])
    win.session.close()
