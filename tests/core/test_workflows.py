"""The correction loop's workflows: predictions land on their own image, review keeps what was shown, exports and
training take exactly that, model versions activate and roll back; and the ``cellcounter project`` CLI over them."""

from __future__ import annotations

import csv
import json
import sqlite3
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from cellcounter.annotations import Boxes, ImageAnnotation, InstanceMasks, Origin, ReviewStatus
from cellcounter.cli import main
from cellcounter.errors import ProjectError
from cellcounter.project import Project, gate, maintenance
from cellcounter.project import workflows as wf
from cellcounter.regions import Region
from tests.conftest import make_image
from tests.helpers import make_tiny_model

NAMES = ("RBC", "WBC", "Platelets")


def _predicted(path, scores, classes=None, origins=None, size=(64, 48)) -> ImageAnnotation:
    n = len(scores)
    xyxy = np.array([[2 + 4 * i, 2, 6 + 4 * i, 8] for i in range(n)], dtype=float).reshape(-1, 4)
    return ImageAnnotation(str(path), *size, NAMES, task="blood",
                           boxes=Boxes(xyxy, classes or [0] * n, scores, origins or [Origin.MODEL] * n))


@pytest.fixture
def proj(tmp_path):
    images = [make_image(tmp_path / f"im{i}.png", 64, 48, seed=i) for i in range(3)]
    p = Project.create(tmp_path / "p.ccproj", user="rev")
    ids = [p.add_image(im, "blood") for im in images]
    yield p, ids
    if not p.closed:
        p.close()


def _store(p, image_id, pred, version="m@1"):
    (job,) = wf.prediction_jobs(p, [image_id])
    return wf.apply_prediction(p, job, pred, version)


def test_reviewing_at_a_threshold_keeps_exactly_what_was_shown_in_every_export_and_the_training_set(proj, tmp_path):
    p, ids = proj
    # four model boxes (two below 0.5), one human box without a score, one corrected box with a low score
    pred = _predicted(p.image(ids[0]).path, [0.9, 0.3, 0.6, 0.1, np.nan, 0.2], [0, 0, 1, 2, 1, 2],
                      [Origin.MODEL] * 4 + [Origin.HUMAN, Origin.CORRECTED])
    p.save(ids[0], pred, origin="model:m@1")
    dropped = wf.review_image(p, ids[0], "reviewed", min_score=0.5)
    assert dropped == 2
    rec = p.image(ids[0])
    assert rec.review == ReviewStatus.REVIEWED and rec.review_min_score == 0.5
    kept = p.load(ids[0]).boxes
    shown_scores = [0.9, 0.6, np.nan, 0.2]  # what the reviewer saw at 0.5: people's boxes whatever their score
    np.testing.assert_allclose(kept.scores, shown_scores)
    assert [e["kind"] for e in p.history.events(ids[0])][-2:] == ["boxes", "review"]  # one edit: undoable, audited

    n, _ = wf.export_project(p, tmp_path / "voc", "voc", "reviewed")
    assert n == 1
    voc = ET.parse(next((tmp_path / "voc").rglob("*.xml"))).getroot()
    assert len(voc.findall("object")) == 4
    wf.export_project(p, tmp_path / "coco", "coco", "reviewed")
    coco = json.loads(next((tmp_path / "coco").rglob("*.json")).read_text())
    assert sorted(a.get("score", -1) for a in coco["annotations"]) == pytest.approx([-1, 0.2, 0.6, 0.9])
    wf.export_project(p, tmp_path / "counts.csv", "counts-csv", "reviewed")
    rows = list(csv.DictReader(open(tmp_path / "counts.csv")))
    assert (rows[0]["RBC"], rows[0]["WBC"], rows[0]["Platelets"], rows[0]["total"]) == ("1", "2", "1", "4")

    p.save(ids[1], _predicted(p.image(ids[1]).path, [0.95]), origin="model:m@1")
    wf.review_image(p, ids[1], "reviewed", min_score=0.5)
    train = wf.training_set(p, "blood")
    assert [len(a.boxes) for a in train] == [4, 1]


def test_unreviewed_images_export_at_the_threshold_they_are_shown_at(proj, tmp_path):
    p, ids = proj
    p.save(ids[2], _predicted(p.image(ids[2]).path, [0.9, 0.45, 0.2]), origin="model:m@1")
    assert [len(a.boxes) for a in wf.labels_to_export(p, [ids[2]])] == [1]  # the default 0.5
    assert [len(a.boxes) for a in wf.labels_to_export(p, [ids[2]], unreviewed_min_score=0.4)] == [2]
    assert [len(a.boxes) for a in wf.labels_to_export(p, "reviewed")] == []
    with pytest.raises(ProjectError, match="no reviewed images"):
        wf.export_project(p, tmp_path / "x", "coco", "reviewed")
    with pytest.raises(ProjectError, match="at least two images reviewed"):
        wf.training_set(p)


def test_a_prediction_is_stored_on_the_image_it_was_computed_from_in_its_own_project(proj, tmp_path):
    p, ids = proj
    (job,) = wf.prediction_jobs(p, [ids[0]])
    other = Project.create(tmp_path / "other.ccproj", user="rev")  # the user opened another folder meanwhile
    big = make_image(tmp_path / "big.png", 200, 100)
    other_id = other.add_image(big, "blood")
    assert other_id == ids[0]  # the same id in another project: the trap
    pred = _predicted(job.image_path, [0.9, 0.8])
    with pytest.raises(ProjectError, match="cannot be stored"):
        wf.apply_prediction(other, job, pred, "m@1")
    p.close()  # the window closed the first project when it opened the second
    assert wf.store_prediction(job, pred, "m@1", open_project=other) == ["boxes"]
    assert len(other.load(other_id).boxes) == 0 and other.history.events(other_id)[-1]["kind"] == "add"
    other.close()
    with Project.open(job.project) as back:
        assert len(back.load(job.image_id).boxes) == 2
        assert [len(back.load(i).boxes) for i in ids[1:]] == [0, 0]


def test_a_prediction_for_an_image_edited_meanwhile_is_offered_not_forced(proj):
    p, ids = proj
    (job,) = wf.prediction_jobs(p, [ids[0]])
    human = _predicted(job.image_path, [np.nan], origins=[Origin.HUMAN])
    p.save(ids[0], human)  # the person drew a box while the model ran
    pred = _predicted(job.image_path, [0.9, 0.8])
    with pytest.raises(wf.StalePredictionError, match="edited while the prediction ran"):
        wf.apply_prediction(p, job, pred, "m@1")
    assert len(p.load(ids[0]).boxes) == 1
    wf.apply_prediction(p, job, pred, "m@1", force=True)
    boxes = p.load(ids[0]).boxes
    # merged: the person's box stays, and the model's box on top of it is the same cell, not a second one
    assert len(boxes) == 2 and (boxes.origins == Origin.HUMAN).sum() == 1
    wrong = _predicted(job.image_path, [0.9], size=(65, 48))
    with pytest.raises(ProjectError, match="65x48"):
        wf.apply_prediction(p, wf.prediction_jobs(p, [ids[0]])[0], wrong, "m@1")


def test_merging_masks_keeps_people_s_instances_on_top():
    lab = np.zeros((10, 10), np.int32)
    lab[0:4, 0:4] = 1
    lab[6:9, 6:9] = 2
    saved = InstanceMasks(lab, [1, 2], [0, 0], [np.nan, 0.9], [Origin.HUMAN, Origin.MODEL])
    plab = np.zeros((10, 10), np.int32)
    plab[2:6, 2:6] = 1
    pred = InstanceMasks(plab, [1], [0], [0.8], [Origin.MODEL])
    merged = wf.merge_masks(saved, pred)
    assert len(merged) == 2 and list(merged.origins) == [Origin.HUMAN, Origin.MODEL]
    assert (merged.label_image[0:4, 0:4] == merged.ids[0]).all()  # the human instance is untouched
    assert (merged.label_image[6:9, 6:9] == 0).all()  # the old model instance was replaced


def test_review_drops_low_scoring_model_instances_too(proj):
    p, ids = proj
    lab = np.zeros((48, 64), np.int32)
    lab[0:5, 0:5], lab[10:15, 10:15], lab[20:25, 20:25] = 1, 2, 3
    ann = p.load(ids[0])
    ann.masks = InstanceMasks(lab, [1, 2, 3], [0, 0, 0], [0.9, 0.2, np.nan],
                              [Origin.MODEL, Origin.MODEL, Origin.HUMAN])
    p.save(ids[0], ann)
    assert wf.review_image(p, ids[0], "reviewed", 0.5) == 1
    assert sorted(np.nan_to_num(p.load(ids[0]).masks.scores, nan=-1).tolist()) == [-1, 0.9]


def test_an_old_project_is_migrated_and_opens_read_only_unmigrated(tmp_path):
    path = tmp_path / "old.ccproj"
    im = make_image(tmp_path / "a.png")
    with Project.create(path) as p:
        image_id = p.add_image(im, "blood")
    conn = sqlite3.connect(path)  # make it a schema-1 file, as the previous release wrote it
    conn.execute("ALTER TABLE images DROP COLUMN review_min_score")
    conn.execute("ALTER TABLE annotations DROP COLUMN regions")
    conn.execute("ALTER TABLE annotations DROP COLUMN rejected")
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()
    with Project.open(path, readonly=True) as ro:
        assert ro.image(image_id).review_min_score is None
        assert ro.load(image_id).regions == [] and ro.regions(image_id) == [] and maintenance.check(ro) == []
    with Project.open(path) as p:
        wf.review_image(p, image_id, "reviewed", 0.3)
        assert p.image(image_id).review_min_score == 0.3
        ann = p.load(image_id)
        ann.regions = [Region.rectangle("r", 0, 0, 5, 5)]
        assert p.save(image_id, ann) == ["regions"]


def test_activating_a_version_makes_it_predicts_default_and_rollback_returns_to_its_parent(proj, tmp_path):
    p, _ = proj
    assert wf.default_model(p, "blood").endswith("blood-default")  # the bundled model until one is active
    a = make_tiny_model("detector", tmp_path / "a")
    b = make_tiny_model("detector", tmp_path / "b", seed=1)
    va = wf.register_model(p, a, None, [1])
    vb = wf.register_model(p, b, str(a), [1, 2])
    assert vb.parent == va.name and vb.training_data == [1, 2] and va.name != vb.name
    assert wf.activate_model(p, va.name) is None
    assert wf.activate_model(p, vb.name) == va.name
    assert wf.default_model(p, "blood") == vb.file
    assert wf.rollback_model(p, "blood") == va.name
    assert wf.default_model(p, "blood") == va.file
    assert wf.rollback_model(p, "blood") is None  # its parent is not a project version: back to the bundled one
    assert wf.default_model(p, "blood").endswith("blood-default")
    with pytest.raises(ProjectError, match="no model version"):
        wf.activate_model(p, "nope")


def test_project_cli_predicts_reviews_exports_and_manages_versions(tmp_path, capsys):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(2):
        make_image(folder / f"im{i}.png", 96, 80, seed=i)
    proj = tmp_path / "p.ccproj"
    model = make_tiny_model("detector", tmp_path / "tiny")
    assert main(["project", "create", str(proj), str(folder), "--task", "blood"]) == 0
    assert main(["project", "predict", str(proj), "--model", str(model)]) == 0
    with Project.open(proj, readonly=True) as p:
        stored = {r.path.name: p.load(r.id) for r in p.images()}
    assert all(a.model_version == "tiny-blood@1" and len(a.boxes) for a in stored.values())
    scores = stored["im0.png"].boxes.scores
    cut = float(np.round(np.median(scores), 4))
    shown = int((scores >= cut).sum())
    assert 0 < shown < len(scores)
    assert main(["project", "review", str(proj), "im0.png", "--status", "reviewed", "--min-score", str(cut)]) == 0
    assert f"{len(scores) - shown} model object(s) below" in capsys.readouterr().out
    with Project.open(proj, readonly=True) as p:
        (rec,) = p.images("reviewed")
        assert rec.path.name == "im0.png" and len(p.load(rec.id).boxes) == shown
    assert main(["project", "export", str(proj), str(tmp_path / "out"), "--to", "coco", "--images", "reviewed"]) == 0
    coco = json.loads((tmp_path / "out" / "annotations.json").read_text())
    assert len(coco["images"]) == 1
    assert main(["project", "models", str(proj)]) == 0
    assert "no model versions" in capsys.readouterr().out
    assert main(["project", "models", str(proj), "--activate", "nope"]) == 2
    assert main(["project", "review", str(proj), "missing.png", "--status", "reviewed"]) == 2
    assert main(["project", "review", str(proj), "all", "--status", "reviewed", "--min-score", "2"]) == 2
    for action in ("predict", "review", "export", "models", "train"):
        with pytest.raises(SystemExit) as e:
            main(["project", action, "--help"])
        assert e.value.code == 0


def test_labels_of_a_task_of_their_own_keep_it_whatever_the_session_task(tmp_path):
    from PIL import Image

    from cellcounter.project.importing import import_image

    sample = tmp_path / "dsb" / "s1"
    (sample / "images").mkdir(parents=True)
    (sample / "masks").mkdir()
    make_image(sample / "images" / "s1.png", 40, 30)
    m = np.zeros((30, 40), np.uint8)
    m[5:12, 5:12] = 255
    Image.fromarray(m).save(sample / "masks" / "m1.png")
    with Project.create(tmp_path / "p.ccproj") as p:
        image_id = import_image(p, sample / "images" / "s1.png", task="blood")  # opened in a blood session
        ann = p.load(image_id)
        assert ann.task == "nuclei" and ann.class_names == ("nucleus",) and len(ann.masks) == 1
        assert ann.counts() == {"nucleus": 1}


def test_a_version_worse_than_its_parent_on_the_same_images_is_flagged():
    assert gate.worse_than_parent({"after": {"map50": 0.41}, "before": {"map50": 0.52}}) == "map50 0.410 (was 0.520)"
    assert gate.worse_than_parent({"after": {"map50": 0.6}, "before": {"map50": 0.52}}) is None
    assert gate.worse_than_parent({"after": {"qwk": 0.6}, "before": None}) is None


def test_a_version_that_forgot_its_start_models_skills_is_flagged_beyond_noise():
    base = {"model": "nuclei-default@2", "images": 17, "before": {"aji": 0.644}, "after": {"aji": 0.607}}
    assert gate.forgot({"base": base}) == ("aji 0.607 (was 0.644) on 17 of nuclei-default@2's own validation "
                                         "images")
    assert gate.forgot({"base": {**base, "after": {"aji": 0.630}}}) is None  # within the tolerance
    assert gate.forgot({"base": {**base, "after": {"aji": 0.700}}}) is None
    assert gate.forgot({"after": {"aji": 0.5}, "before": {"aji": 0.6}}) is None  # nothing measured on the base


def _model_boxes(path, xyxy, scores, classes):
    return ImageAnnotation(str(path), 64, 48, NAMES, task="blood",
                           boxes=Boxes(np.array(xyxy, float), classes, scores, [Origin.MODEL] * len(scores)))


def test_a_second_prediction_keeps_corrections_and_deletions_and_adds_no_duplicates(proj):
    """#31 point 3: delete a box and relabel one, predict again: the deleted box stays deleted, the relabelled
    cell is not counted twice; the reviewed image goes back to in progress only when something new came."""
    p, ids = proj
    cells = [[2, 2, 12, 12], [20, 2, 30, 12], [40, 20, 50, 30]]
    pred = _model_boxes(p.image(ids[0]).path, cells, [0.9, 0.8, 0.7], [0, 0, 0])
    _store(p, ids[0], pred)
    ann = p.load(ids[0])
    keep = ann.boxes.ids != ann.boxes.ids[0]  # the person deletes the first box ...
    ann.boxes = ann.boxes.subset(keep)
    ann.boxes.classes[0] = 1  # ... and relabels the second as WBC (it becomes corrected)
    ann.boxes.origins[0] = Origin.CORRECTED
    p.save(ids[0], ann)
    wf.review_image(p, ids[0], "reviewed", min_score=0.5)
    before = p.load(ids[0]).counts()
    _store(p, ids[0], pred, "m@2")  # the same model again (Predict clicked twice)
    again = p.load(ids[0])
    assert again.counts() == before == {"RBC": 1, "WBC": 1, "Platelets": 0}
    assert p.image(ids[0]).review == ReviewStatus.REVIEWED  # nothing new: still reviewed
    bigger = _model_boxes(p.image(ids[0]).path, cells + [[2, 30, 12, 40]], [0.9, 0.8, 0.7, 0.95], [0, 0, 0, 2])
    _store(p, ids[0], bigger, "m@3")
    assert p.load(ids[0]).counts() == {"RBC": 1, "WBC": 1, "Platelets": 1}
    assert p.image(ids[0]).review == ReviewStatus.IN_PROGRESS  # a new, unchecked model box: review it again


def test_an_undone_deletion_lets_the_model_propose_the_cell_again(proj):
    p, ids = proj
    pred = _model_boxes(p.image(ids[0]).path, [[2, 2, 12, 12]], [0.9], [0])
    _store(p, ids[0], pred)
    full = p.load(ids[0])
    emptied = p.load(ids[0])
    emptied.boxes = emptied.boxes.subset(np.zeros(1, bool))
    p.save(ids[0], emptied)
    assert len(p.load(ids[0]).attributes["rejected_boxes"]) == 1
    p.save(ids[0], full)  # undo: the box is back, so it is no longer a rejected one
    assert len(p.load(ids[0]).attributes["rejected_boxes"]) == 0


def test_predicting_over_reference_labels_does_not_double_them(proj):
    p, ids = proj
    ref = _model_boxes(p.image(ids[0]).path, [[2, 2, 12, 12], [20, 2, 30, 12]], [np.nan, np.nan], [1, 1])
    ref.boxes.origins[:] = Origin.REFERENCE
    p.save(ids[0], ref, origin="import")
    pred = _model_boxes(p.image(ids[0]).path, [[3, 2, 12, 13], [21, 3, 30, 12]], [0.9, 0.8], [1, 1])
    _store(p, ids[0], pred)
    assert p.load(ids[0]).counts()["WBC"] == 2


def test_predicted_masks_under_kept_instances_are_not_added_again():
    saved_lab = np.zeros((20, 20), np.int32)
    saved_lab[2:8, 2:8] = 5
    saved = InstanceMasks(saved_lab, [5], [0], [np.nan], [Origin.REFERENCE])
    pred_lab = np.zeros((20, 20), np.int32)
    pred_lab[2:9, 2:9] = 1  # the same nucleus, a little larger
    pred_lab[12:18, 12:18] = 2  # a new one
    merged = wf.merge_masks(saved, InstanceMasks(pred_lab, [1, 2], [0, 0], [0.9, 0.8], [Origin.MODEL] * 2))
    assert len(merged) == 2 and merged.origins.tolist() == [Origin.REFERENCE, Origin.MODEL]
    assert (merged.label_image == 5).sum() == 36 and 0 < (merged.label_image[12:18, 12:18] > 0).sum() == 36


def test_a_registered_version_has_one_name_everywhere(proj, tmp_path):
    """#31 point 8: the list said blood-project-20261203-084052 while its boxes said blood-project@4."""
    from cellcounter.inference import Predictor

    p, _ = proj
    model = make_tiny_model("detector", tmp_path / "m")
    rec = wf.register_model(p, model, None, [1])
    assert Predictor.load(str(model)).model_version == rec.name
    again = wf.register_model(p, model, None, [1])  # a second run within the same second
    assert again.name != rec.name and Predictor.load(str(model)).model_version == again.name


def test_a_doubled_count_error_is_flagged_though_the_map_held():
    """#38 point 5: the count is what a person reads; a steady mAP with a doubled count error passed."""
    metrics = {"after": {"map50": 0.96, "count_mae": {"RBC": 6.5, "WBC": 0.1}},
               "before": {"map50": 0.88, "count_mae": {"RBC": 2.5, "WBC": 0.1}}}
    assert gate.worse_than_parent(metrics) == "count error 6.60 per image (was 2.60)"
    base = {"model": "blood-default@4", "images": 30, "before": {"map50": 0.9, "count_mae": {"RBC": 3.0}},
            "after": {"map50": 0.9, "count_mae": {"RBC": 3.5}}}
    assert gate.forgot({"base": base}) is None  # within 20% and 0.1 of noise
    base["after"]["count_mae"]["RBC"] = 7.9
    assert gate.forgot({"base": base}).startswith("count error 7.90 per image (was 3.00) on 30 of blood-default@4")
    assert "worse than the model it started from" in gate.activation_warning(metrics)


def test_the_verdict_on_a_fine_tune_says_in_a_line_whether_to_keep_it():
    """#34 point 5: the start model and the new one side by side on the user's held-back corrections, then
    what the new one kept of the start model's own skills, in one line a person decides on."""
    base = {"model": "blood-default@3", "images": 30, "before": {"map50": 0.9, "count_mae": {"RBC": 3.0}},
            "after": {"map50": 0.9, "count_mae": {"RBC": 3.1}}}
    better = {"before": {"map50": 0.458, "count_mae": {"RBC": 9.94, "WBC": 0.2}},
              "after": {"map50": 0.85, "count_mae": {"RBC": 2.0, "WBC": 0.1}}, "base": base}
    assert gate.verdict(better) == ("better on your images: count error 10.14 -> 2.10 per image (map50 0.458 -> "
                                  "0.850); nothing lost on 30 of blood-default@3's own validation images")
    assert gate.verdict({**better, "base": {}}).endswith("not checked on the start model's own images")
    same = {"before": better["before"], "after": {**better["before"], "map50": 0.46}}
    assert gate.verdict(same).startswith("no better on your images: count error 10.14 -> 10.14")
    worse = {**better, "after": {"map50": 0.96, "count_mae": {"RBC": 12.0}}}
    assert gate.verdict(worse) == ("worse: keep the current model; count error 12.00 per image (was 10.14) on your "
                                 "held-back images")
    # a new lab gained while the start model's own images lost: both said, the person decides
    lost = {**better, "base": {**base, "after": {"map50": 0.55, "count_mae": {"RBC": 4.5}}}}
    assert gate.verdict(lost).startswith("better on your images: count error 10.14 -> 2.10 per image")
    assert "but it lost map50 0.550 (was 0.900) on 30 of blood-default@3's own validation images" in gate.verdict(lost)
    assert gate.activation_warning(lost)  # and Make active still asks
    sharper_boxes_fewer_right = {"before": {"map50": 0.25, "count_mae": {"RBC": 2.0}},
                                 "after": {"map50": 0.1, "count_mae": {"RBC": 1.0}}}
    assert gate.verdict(sharper_boxes_fewer_right) == ("worse: keep the current model; map50 0.100 (was 0.250) on your "
                                                     "held-back images (count error 2.00 -> 1.00 per image)")
    grader = {"before": {"qwk": 0.71}, "after": {"qwk": 0.74}}
    assert gate.verdict(grader) == ("better on your images: qwk 0.710 -> 0.740; not checked on the start model's "
                                  "own images")
    assert gate.verdict({"after": {"qwk": 0.74}}).startswith("not compared")


def test_every_door_to_activation_has_the_same_gate(proj, tmp_path, capsys):
    """#38 point 5: `project models --activate` made a flagged version active without a question."""
    p, _ = proj
    flagged = make_tiny_model("detector", tmp_path / "flagged")
    card = json.loads((flagged / "card.json").read_text())
    card["metrics"] = {"validation": {"map50": 0.5, "count_mae": {"RBC": 9.0}},
                       "parent_validation": {"map50": 0.5, "count_mae": {"RBC": 2.0}}}
    (flagged / "card.json").write_text(json.dumps(card))
    version = wf.register_model(p, flagged, None, [1])
    with pytest.raises(ProjectError, match="worse than the model it started from.*--force"):
        wf.activate_model(p, version.name)
    path = p.path
    p.close()
    assert main(["project", "models", str(path)]) == 0
    assert "FLAGGED: count error 9.00 per image (was 2.00)" in capsys.readouterr().out
    assert main(["project", "models", str(path), "--activate", version.name]) == 2
    assert "--force" in capsys.readouterr().err
    assert main(["project", "models", str(path), "--activate", version.name, "--force"]) == 0
    assert f"{version.name} is now active" in capsys.readouterr().out


def test_a_backup_carries_its_model_versions_and_check_names_a_missing_one(proj, tmp_path, capsys):
    """#38 point 7: a backup copied only the SQLite file; its versions pointed to missing folders and check said
    "ok"."""
    import shutil

    from cellcounter.models import load_model

    p, _ = proj
    run = tmp_path / "p-training" / "run-1"
    shutil.copytree(make_tiny_model("detector", tmp_path / "tiny"), run / "model")
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "last.pt").write_bytes(b"\0" * 1000)
    version = wf.register_model(p, run / "model", None, [1])
    path = p.path
    p.close()
    assert main(["project", "backup", str(path), str(tmp_path / "copy.ccproj")]) == 0
    shutil.rmtree(tmp_path / "p-training")  # the original's run folder is gone (deleted, or on another disk)
    with Project.open(tmp_path / "copy.ccproj", readonly=True) as copy:
        (kept,) = copy.registry.versions()
        assert kept.name == version.name and load_model(kept.file)[1].task == "blood"
        assert not list((tmp_path / "copy-models").rglob("checkpoints"))  # the model, not the run's leftovers
        assert not [m for m in maintenance.check(copy, quick=True) if "model version" in m]
    assert main(["project", "check", str(path), "--quick"]) != 0
    assert f"model version {version.name!r}: its model folder" in capsys.readouterr().out


def test_a_damaged_image_in_a_batch_is_reported_and_the_others_are_predicted(tmp_path, capsys):
    """#33 point 1: one bad-file policy (skip, report, go on) for predict_jobs and `project predict`."""
    from tests.helpers import blob_predictor

    paths = [make_image(tmp_path / f"{n}.png", seed=i) for i, n in enumerate("abc")]
    with Project.create(tmp_path / "p.ccproj") as p:
        ids = [p.add_image(f, "blood") for f in paths]
    paths[1].write_bytes(b"\x89PNG\r\n\x1a\n damaged")
    with Project.open(tmp_path / "p.ccproj") as p:
        events = list(wf.predict_jobs(blob_predictor("detector"), wf.prediction_jobs(p, ids)))
    failed = [e for e in events if isinstance(e, wf.PredictionFailed)]
    assert [e.job.image_id for e in failed] == [ids[1]] and failed[0].reason.startswith("not a readable image")
    assert [e.job.image_id for e in events if isinstance(e, wf.Predicted)] == [ids[0], ids[2]]
    assert [e.done for e in events if isinstance(e, wf.ImagesDone)] == [1, 2, 3]


def test_the_audit_reports_the_size_of_the_state_an_edit_replaced(tmp_path):
    """Label events keep only the new state; the audit still says what each edit replaced (the previous
    event's state of the same part), and a project written before that keeps its own figures."""
    path = make_image(tmp_path / "a.png")
    with Project.create(tmp_path / "p.ccproj") as p:
        image_id = p.add_image(path, "blood")
        ann = p.load(image_id)
        for n in (1, 3):
            ann.boxes = Boxes(np.tile([[1.0, 1, 9, 9]], (n, 1)), [0] * n)
            p.save(image_id, ann)
        edits = [e for e in p.history.events(image_id) if e["kind"] == "boxes"]
        assert [e["before_bytes"] for e in edits] == [None, edits[0]["after_bytes"]]
        assert edits[1]["after_bytes"] > edits[0]["after_bytes"]
        stored = p._conn.execute("SELECT before FROM events WHERE kind = 'boxes'").fetchall()
        assert all(r[0] is None for r in stored)  # the previous state is not stored twice
