"""Per-class score calibration: the threshold that counts best moves to 0.5, class order and AP unchanged."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from cellcounter.annotations import Boxes, ImageAnnotation, Origin
from cellcounter.calibration import MIN_CHECK_IMAGES, calibrate_scores, checked_thresholds, fit_thresholds
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


def test_a_threshold_is_kept_only_where_it_counts_better_on_images_it_was_not_fitted_on():
    """#37: a calibration fitted on the images whose count error it then reports looked better than it was."""
    rng = np.random.default_rng(0)
    gts, preds = [], []
    for _ in range(20):
        n_plt = int(rng.integers(1, 4))
        # platelets: truly found at 0.3 (a real shift: held-back counts improve); RBC: noise around 0.5 that an
        # in-sample fit can always improve a little, and images it was not fitted on cannot
        noise = rng.uniform(0.3, 0.7, 6)
        gts.append(_ann([np.nan] * (n_plt + 3), [2] * n_plt + [0] * 3))
        preds.append(_ann(list(rng.uniform(0.28, 0.34, n_plt)) + [0.05] + list(noise), [2] * (n_plt + 1) + [0] * 6))
    for g in gts:
        g.boxes.origins[:] = Origin.HUMAN
    kept, report = checked_thresholds(gts, preds, groups=["a"] * 10 + ["b"] * 10)
    assert "Platelets" in kept and 0.05 < kept["Platelets"] <= 0.28
    plt = report["Platelets"]
    assert plt["kept"] and plt["held_back_count_mae_calibrated"] < plt["held_back_count_mae_raw"]
    assert set(plt["by_group"]) == {"a", "b"} and plt["by_group"]["a"]["images"] == 10
    for name, r in report.items():  # what is kept improved held-back counts; what is not, did not
        assert r["kept"] == (name in kept) == (r["held_back_count_mae_calibrated"] < r["held_back_count_mae_raw"])
        assert r["folds"] == 5 and r["images"] == 20
    with pytest.raises(Exception, match=f"at least {MIN_CHECK_IMAGES} are needed"):
        checked_thresholds(gts[:MIN_CHECK_IMAGES - 1], preds[:MIN_CHECK_IMAGES - 1])


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


def test_calibrate_writes_the_checked_thresholds_into_the_card_with_their_held_back_figures(model, tmp_path, capsys):
    folder = tmp_path / "voc"
    (folder / "Annotations").mkdir(parents=True)
    (folder / "JPEGImages").mkdir()
    rng = np.random.default_rng(0)
    for i in range(12):
        Image.fromarray((rng.random((120, 160, 3)) * 255).astype(np.uint8)).save(folder / "JPEGImages" / f"{i}.jpg")
        (folder / "Annotations" / f"{i}.xml").write_text(
            f"<annotation><filename>{i}.jpg</filename><size><width>160</width><height>120</height><depth>3</depth>"
            "</size><object><name>WBC</name><bndbox><xmin>10</xmin><ymin>10</ymin><xmax>50</xmax><ymax>50</ymax>"
            "</bndbox></object></annotation>")
    written = json.loads((model / "card.json").read_text())
    written["licence"] = "CC-BY 4.0, lab of X"  # a key a person added, unknown to this version
    written["score_calibration"] = {"RBC": 0.3}  # an earlier calibration: refitted on the raw scores, not on it
    (model / "card.json").write_text(json.dumps(written))
    assert main(["calibrate", "--task", "blood", "--model", str(model), "--data", str(folder), "--write",
                 "--json"]) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out.strip().splitlines()[-1])
    text = (model / "card.json").read_text()
    card = json.loads(text)
    assert card["licence"] == "CC-BY 4.0, lab of X" and text.endswith("}\n")  # kept; a text file's last line
    assert card["score_calibration"] == report["score_calibration"]
    assert card["metrics"]["score_calibration"]["folds"] == 5 and card["metrics"]["score_calibration"]["images"] == 12
    for name, r in report["per_class"].items():
        assert set(NAMES) == set(report["per_class"])
        assert (name in card["score_calibration"]) == r["kept"]
        assert r["kept"] == (r["held_back_count_mae_calibrated"] < r["held_back_count_mae_raw"])
        assert "count error on held-back images" in captured.out
    assert main(["evaluate", "--task", "blood", "--model", str(model), "--data", str(folder), "--json",
                 "--backend", "torch"]) == 0
    after = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["count_mae"]
    for name, r in report["per_class"].items():  # evaluate at 0.5 counts as the kept threshold did on all images
        if r["kept"]:
            assert after[name] == pytest.approx(r["in_sample_count_mae_calibrated"], abs=1e-9)
    few = tmp_path / "few"
    (few / "Annotations").mkdir(parents=True)
    (few / "JPEGImages").mkdir()
    for i in range(3):
        for sub in ("Annotations", "JPEGImages"):
            name = f"{i}.xml" if sub == "Annotations" else f"{i}.jpg"
            (few / sub / name).write_bytes((folder / sub / name).read_bytes())
    assert main(["calibrate", "--task", "blood", "--model", str(model), "--data", str(few), "--write"]) == 2
    assert "too few to check a calibration" in capsys.readouterr().err
