"""The correction loop through the real window: predictions land on their own image, review keeps what was shown,
exports and fine-tunes take exactly that, and the panels follow the task of the image on screen."""

from __future__ import annotations

import csv
import json
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from PIL import Image

from app.layers import BOXES
from app.session import Session
from cellcounter.annotations import Boxes, Origin
from cellcounter.project import Project
from tests.helpers import make_tiny_model


@pytest.fixture
def projects(tmp_path, monkeypatch):
    monkeypatch.setenv("CELLCOUNTER_PROJECTS", str(tmp_path / "projects"))
    return tmp_path / "projects"


def _image(path, w, h, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path)
    return path


def _use_model(win, model):
    win.predict.model.addItem("tiny", str(model))
    win.predict.model.setCurrentIndex(win.predict.model.count() - 1)


def test_a_prediction_started_on_image_a_lands_on_a_when_b_is_opened_before_it_ends(open_window, qtbot,
                                                                                   tmp_path, projects):
    a = _image(tmp_path / "one" / "a.png", 300, 260)
    b = _image(tmp_path / "two" / "b.png", 420, 200, seed=1)  # another folder: another project, the same image id
    viewer, win = open_window(a, "blood")[:2]
    project_a = win.session.project.path
    _use_model(win, make_tiny_model("detector", tmp_path / "tiny"))
    assert win.predict.start(all_unreviewed=False) is not None
    assert win.open_path(b)  # before the result is delivered (it arrives through the event loop)
    qtbot.waitUntil(lambda: win.predict.worker is None and win._opening is None, timeout=120_000)
    qtbot.wait(50)
    shown = win.session.saved
    assert shown.image_path == str(b) and len(shown.boxes) == 0 and len(viewer.layers[BOXES].data) == 0
    assert all(e["origin"] == "human" for e in win.session.project.history.events())  # nothing of the model on B
    win.session.close()
    with Project.open(project_a, readonly=True) as pa:
        (rec,) = pa.images()
        stored = pa.load(rec.id)
        assert len(stored.boxes) > 0 and set(stored.boxes.origins.tolist()) == {Origin.MODEL}
    for image in (a, b):  # both reopen
        session, first = Session.open_path(image, "blood", user="tester")
        assert session.load(first).image_path == str(image)
        session.close()


def test_marking_reviewed_keeps_what_was_shown_for_exports_and_the_fine_tune(open_window, qtbot, tmp_path,
                                                                           projects):
    folder = tmp_path / "imgs"
    for i in range(2):
        _image(folder / f"im{i}.png", 200, 160, seed=i)
    viewer, win = open_window(folder, "blood")[:2]
    ctl = win.controller
    proj = win.session.project
    for rec in proj.images():  # model boxes of mixed scores, and one the person drew
        ann = proj.load(rec.id)
        ann.boxes = Boxes(np.array([[10, 10, 40, 40], [50, 50, 90, 80], [100, 20, 130, 60], [5, 90, 30, 120]],
                                   float), [0, 1, 2, 0], [0.9, 0.35, 0.6, np.nan],
                          [Origin.MODEL, Origin.MODEL, Origin.MODEL, Origin.HUMAN])
        proj.save(rec.id, ann, origin="model:m@1")
    win.show_image(win.session.current_id)
    ctl.set_threshold(0.5)
    assert len(viewer.layers[BOXES].data) == 3  # 0.35 is hidden
    win.review.set_status("reviewed")
    assert len(win.session.saved.boxes) == 3 and 0.35 not in win.session.saved.boxes.scores
    win.review.go(1)
    win.review.set_status("reviewed")

    voc = win.export("voc", whole_project=True, dst=tmp_path / "voc")
    assert [len(ET.parse(f).getroot().findall("object")) for f in voc if f.suffix == ".xml"] == [3, 3]
    coco = json.loads(win.export("coco", whole_project=True, dst=tmp_path / "coco")[0].read_text())
    assert sorted(a.get("score", 0) for a in coco["annotations"])[-2:] == pytest.approx([0.9, 0.9])
    assert len(coco["annotations"]) == 6
    win.export("counts-csv", whole_project=True, dst=tmp_path / "counts.csv")
    rows = list(csv.DictReader(open(tmp_path / "counts.csv")))
    assert rows[-1]["total"] == "6"

    from app.widgets.train import prepare_run

    cfg, anns, ids = prepare_run(ctl, "blood", "blood-detector", 1, win.train.base.currentData())
    assert [len(a.boxes) for a in anns] == [3, 3] and len(ids) == 2
    assert cfg.init.endswith("blood-default")  # the panel's default start: the bundled model
    assert ctl.undo()  # the review (and the boxes it dropped) can be taken back
    win.session.close()


def test_the_panels_follow_the_task_of_the_image_on_screen(open_window, tmp_path, projects):
    blood = _image(tmp_path / "mixed" / "smear.png", 120, 90)
    fundus = _image(tmp_path / "mixed" / "fundus.png", 160, 120, seed=2)
    viewer, win = open_window(blood, "blood")[:2]
    assert not win.grade_dock.isVisible() and win.predict.task.currentText() == "blood"
    fundus_id = win.session.project.add_image(fundus, "retinopathy")
    win.show_image(fundus_id)
    assert win.grade_dock.isVisible()
    assert win.predict.task.currentText() == "retinopathy"
    assert win.predict.model.currentData() is None or "retinopathy" in win.predict.model.currentData()
    assert win.train.task == "retinopathy" and win.train.recipe.currentText() == "dr-grader"
    win.review.go(1)  # back to the smear
    assert win.session.saved.image_path == str(blood)
    assert not win.grade_dock.isVisible() and win.train.recipe.currentText() == "blood-detector"
    win.session.close()
