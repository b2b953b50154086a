"""Corrections made in another tool come onto the project's images (#38 point 2); a copy is not added twice."""

from __future__ import annotations

import shutil
import warnings

import numpy as np

from cellcounter.annotations import Boxes, ImageAnnotation, Origin
from cellcounter.cli import main
from cellcounter.errors import CellCounterWarning
from cellcounter.formats import write_labels
from cellcounter.project import Project
from cellcounter.project import workflows as wf
from tests.conftest import make_image

NAMES = ("RBC", "WBC", "Platelets")


def test_labels_from_another_tool_supersede_the_models_and_keep_a_persons(tmp_path, capsys):
    images = [make_image(tmp_path / "imgs" / f"im{i}.png", 64, 48, seed=i) if (tmp_path / "imgs").mkdir(
        exist_ok=True) is None else None for i in range(2)]
    path = tmp_path / "p.ccproj"
    assert main(["project", "create", str(path), str(tmp_path / "imgs"), "--task", "blood"]) == 0
    with Project.open(path) as p:
        ann = p.load(1)  # the model's three boxes and a box a person drew
        ann.boxes = Boxes(np.array([[1, 1, 10, 10], [20, 5, 30, 15], [40, 30, 50, 40], [2, 30, 12, 40]], float),
                          [0, 0, 0, 1], [0.9, 0.8, 0.3, np.nan], [Origin.MODEL] * 3 + [Origin.HUMAN])
        p.save(1, ann, origin="model:m@1")
    # the lab corrected im0 in LabelImg: two RBC (one the model had, one new) and the WBC the person drew
    fixed = ImageAnnotation(str(images[0]), 64, 48, NAMES, boxes=Boxes(
        np.array([[1, 1, 10, 10], [50, 2, 60, 12], [2, 30, 12, 40]], float), [0, 0, 1]))
    boxes = Boxes(np.array([[1, 1, 5, 5.0]]), [0])
    other = ImageAnnotation(str(tmp_path / "elsewhere.png"), 64, 48, NAMES, boxes=boxes)
    make_image(tmp_path / "elsewhere.png", 64, 48, seed=9)
    write_labels([fixed, other], tmp_path / "voc", "voc")
    shutil.copy(images[0], tmp_path / "voc" / "im0.png")
    assert main(["project", "import-labels", str(path), str(tmp_path / "voc"), "--as", "corrections"]) == 0
    err = capsys.readouterr().err
    assert "1 labelled image(s) match no image" in err and "elsewhere.png" in err
    with Project.open(path, readonly=True) as p:
        boxes = p.load(1).boxes
        assert len(boxes) == 3 and p.load(1).counts() == {"RBC": 2, "WBC": 1, "Platelets": 0}
        assert sorted(boxes.origins.tolist()) == [Origin.HUMAN, Origin.CORRECTED, Origin.CORRECTED]
        assert p.history.events(1)[-1]["origin"] == "import"


def test_adding_the_same_image_under_another_name_is_flagged_not_duplicated(tmp_path):
    img = make_image(tmp_path / "a.png")
    (tmp_path / "copy").mkdir()
    shutil.copy(img, tmp_path / "copy" / "a-again.png")
    with Project.create(tmp_path / "p.ccproj") as p:
        first = p.add_image(img, "blood")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            again = p.add_image(tmp_path / "copy" / "a-again.png", "blood")
        assert again == first and len(p.images()) == 1
        assert any("identical content" in str(w.message) for w in caught if w.category is CellCounterWarning)
        assert wf.select_images(p, "all") == [first]
