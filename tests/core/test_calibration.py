"""Per-class score calibration: the threshold that counts best moves to 0.5, class order and AP unchanged."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from cellcounter.annotations import Boxes, ImageAnnotation, Origin
from cellcounter.calibration import calibrate_scores, fit_thresholds
from cellcounter.cli import main
from cellcounter.errors import FormatError
from cellcounter.inference import Predictor
from cellcounter.models import load_model

NAMES = ("RBC", "WBC", "Platelets")


def test_each_class_threshold_moves_to_one_half_and_the_order_within_a_class_stays():
    scores = np.array([0.1, 0.3, 0.6, 0.2, 0.3, 0.9, 0.5])
    classes = np.array([0, 0, 0, 2, 2, 2, 1])
    out = calibrate_scores(scores, classes, [0.3, None, 0.2])
    assert out[1] == pytest.approx(0.5) and out[3] == pytest.approx(0.5)  # each class's threshold
    assert out[6] == 0.5 and out[0] == pytest.approx(0.1 * 0.5 / 0.3)
    for k in (0, 2):
        sel = classes == k
        assert (np.argsort(out[sel]) == np.argsort(scores[sel])).all()
    assert ((out >= 0) & (out <= 1)).all()


def _ann(scores, classes, n_true=None):
    n = len(scores)
    boxes = Boxes(np.tile([0.0, 0, 4, 4], (n, 1)), classes, scores, np.full(n, Origin.MODEL))
    return ImageAnnotation("x.png", 10, 10, NAMES, boxes=boxes)


def test_fit_picks_the_threshold_that_counts_best_per_class():
    # truth: 2 platelets per image; the model scores them 0.3 and 0.35 and a false one 0.1
    gts = [_ann([np.nan, np.nan], [2, 2]) for _ in range(3)]
    preds = [_ann([0.3, 0.35, 0.1, 0.9], [2, 2, 2, 0]) for _ in range(3)]
    for g in gts:
        g.boxes.origins[:] = Origin.HUMAN
    thresholds, report = fit_thresholds(gts, preds)
    assert 0.1 < thresholds["Platelets"] <= 0.3
    assert report["Platelets"]["count_mae_at_0.5"] == 2 and report["Platelets"]["count_mae_calibrated"] == 0
    assert thresholds["RBC"] > 0.9 and report["RBC"]["count_mae_at_0.5"] == 1  # only above 0.9 is the false RBC gone


@pytest.fixture
def model(detector_copy):
    return detector_copy


def test_a_calibrated_card_changes_the_scores_of_every_prediction_and_nothing_else(model, rgb_image):
    plain = Predictor.load(model).predict(rgb_image)
    card = json.loads((model / "card.json").read_text())
    card["score_calibration"] = {"RBC": 0.4, "Platelets": 0.6}
    (model / "card.json").write_text(json.dumps(card))
    calibrated = Predictor.load(model).predict(rgb_image)
    assert len(plain.boxes) and np.allclose(plain.boxes.xyxy, calibrated.boxes.xyxy)
    expect = calibrate_scores(plain.boxes.scores, plain.boxes.classes, [0.4, None, 0.6])
    assert np.allclose(calibrated.boxes.scores, expect)


@pytest.mark.parametrize("calibration, says", [({"Monocyte": 0.3}, "names classes the model does not have"),
                                               ({"RBC": 1.5}, "score_calibration.RBC must be a number between"),
                                               ([0.3], "score_calibration must be an object")])
def test_a_nonsense_calibration_is_refused_naming_it(model, calibration, says):
    card = json.loads((model / "card.json").read_text())
    card["score_calibration"] = calibration
    (model / "card.json").write_text(json.dumps(card))
    with pytest.raises(FormatError, match=says):
        load_model(model)


def test_calibrate_writes_the_thresholds_into_the_card_and_counts_improve(model, tmp_path, capsys):
    folder = tmp_path / "voc"
    (folder / "Annotations").mkdir(parents=True)
    (folder / "JPEGImages").mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray((rng.random((120, 160, 3)) * 255).astype(np.uint8)).save(folder / "JPEGImages" / f"{i}.jpg")
        (folder / "Annotations" / f"{i}.xml").write_text(
            f"<annotation><filename>{i}.jpg</filename><size><width>160</width><height>120</height><depth>3</depth>"
            "</size><object><name>WBC</name><bndbox><xmin>10</xmin><ymin>10</ymin><xmax>50</xmax><ymax>50</ymax>"
            "</bndbox></object></annotation>")
    written = json.loads((model / "card.json").read_text())
    written["licence"] = "CC-BY 4.0, lab of X"  # a key a person added, unknown to this version
    (model / "card.json").write_text(json.dumps(written))
    assert main(["calibrate", "--task", "blood", "--model", str(model), "--data", str(folder), "--write",
                 "--json"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    text = (model / "card.json").read_text()
    card = json.loads(text)
    assert card["licence"] == "CC-BY 4.0, lab of X" and text.endswith("}\n")  # kept; a text file's last line
    assert card["score_calibration"] == report["score_calibration"] and set(card["score_calibration"]) == set(NAMES)
    for r in report["per_class"].values():
        assert r["count_mae_calibrated"] <= r["count_mae_at_0.5"]
    assert main(["evaluate", "--task", "blood", "--model", str(model), "--data", str(folder), "--json"]) == 0
    after = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["count_mae"]
    for name, r in report["per_class"].items():  # evaluate at 0.5 now counts as the calibrated threshold did
        assert after[name] == pytest.approx(r["count_mae_calibrated"], abs=1e-9)
