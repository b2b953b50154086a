"""The bundled models: within the size budget, ONNX Runtime agrees with torch, and they reproduce their cards."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cellcounter.cli import main
from cellcounter.imageio import read_image
from cellcounter.inference import Predictor
from cellcounter.metrics import box_iou
from cellcounter.models.card import RESOURCES_MODELS, load_model
from tests.conftest import REPO

BUNDLED = sorted(d.name for d in RESOURCES_MODELS.iterdir() if (d / "card.json").is_file()) \
    if RESOURCES_MODELS.is_dir() else []
SAMPLES = {"blood": REPO / "resources" / "samples" / "blood" / "BloodImage_00000.jpg",
           "nuclei": next((REPO / "resources" / "samples" / "nuclei").glob("*/images/*.png")),
           "leaves": REPO / "resources" / "samples" / "leaves" / "rosette_20261123.png"}


def test_there_are_bundled_models():
    assert {"blood-default", "retinopathy-default", "nuclei-default", "nuclei-maskrcnn", "leaves-default"} <= set(
        BUNDLED)


@pytest.mark.parametrize("name", BUNDLED)
def test_size_card_and_parity(name, tmp_path):
    folder = RESOURCES_MODELS / name
    # the float16 weights under 40 MB; the int8 graph beside them (cellcounter quantize) is a second, smaller copy
    assert (folder / "model.pt").stat().st_size < 40e6
    assert not (folder / "model.int8.onnx").is_file() or (folder / "model.int8.onnx").stat().st_size < 40e6
    model, card = load_model(name)
    assert card.name == name and card.training.get("command", "").startswith("cellcounter-train")
    assert "scratch" in card.pretrained and card.notes
    image = read_image(SAMPLES.get(card.task, SAMPLES["blood"]))
    t, o = Predictor.load(name, "torch", "cpu"), Predictor.load(name, "onnx", "cpu")
    if card.config.kind == "grader":
        assert np.abs(t.grade_probabilities(image) - o.grade_probabilities(image)).max() < 1e-4
        return
    if card.config.kind == "unet":  # the network's maps agree; the watershed after them is the same code
        ma, mb = t.maps(image), o.maps(image)
        assert np.abs(ma - mb).max() < 1e-3
        a, b = t.raw(image), o.raw(image)
        assert len(a.scores) > 0 and abs(len(a.scores) - len(b.scores)) <= max(1, len(a.scores) // 50)
        return
    a, b = t.raw(image), o.raw(image)
    assert len(a.scores) == len(b.scores) and (card.config.kind != "segmenter" or len(a.scores) > 0)
    if len(a.scores):
        # the same place can hold detections of two classes: pair boxes within a class
        iou = box_iou(a.boxes, b.boxes) * (a.classes[:, None] == b.classes[None, :])
        assert iou.max(axis=1).min() > 0.99
        assert np.abs(a.scores - b.scores[iou.argmax(axis=1)]).max() < 1e-3


@pytest.mark.parametrize("name", ["blood-default", "nuclei-default", "retinopathy-default"])
def test_the_default_backend_of_a_bundled_model_is_its_int8_graph_only_where_accepted_and_counts_as_torch(name):
    """What the Predict panel and ``--backend auto`` run on a CPU: the int8 graph where its verdict in the card
    accepts it (judged on validation images, counts included), giving the sample the counts or grade float torch
    gives; a float graph where it does not."""
    from cellcounter.inference import predict_image
    from cellcounter.inference.choice import CPU_DEFAULT

    card = load_model(name)[1]
    verdict = card.metrics["int8"]
    auto = Predictor.load(name, "auto", "cpu")
    if "count_error" in verdict:  # judged on counts too (#32): a count that moves more than 0.1 is refused
        within = verdict["count_error"]["int8"] - verdict["count_error"]["fp32"] <= verdict["count_tolerance"]
        assert verdict["accepted"] == (within and verdict["drop"] <= verdict["tolerance"])
    if not verdict["accepted"]:  # nuclei-default: its int8 graph counted 7 more nuclei wrong per image
        assert "int8" not in auto.description
    else:
        assert verdict["drop"] <= verdict["tolerance"]
        assert CPU_DEFAULT[card.config.kind].endswith("int8") and "int8" in auto.description
    t = Predictor.load(name, "torch", "cpu")
    image = read_image(SAMPLES.get(card.task, SAMPLES["blood"]))
    a, b = predict_image(t, image, "s"), predict_image(auto, image, "s")
    if card.config.kind == "grader":
        assert a.grade.value == b.grade.value
        return
    na, nb = sum(a.counts(score_threshold=0.5).values()), sum(b.counts(score_threshold=0.5).values())
    assert na > 0 and abs(na - nb) <= max(1, na // 10), (na, nb)


@pytest.mark.realdata
def test_retinopathy_default_reproduces_its_test_figures(idrid, capsys):
    from tests.conftest import data_dir

    card = json.loads((RESOURCES_MODELS / "retinopathy-default" / "card.json").read_text())
    more = data_dir("idrid-train-1280")
    assert main(["evaluate", "--task", "retinopathy", "--model", "retinopathy-default", "--data", f"{idrid},{more}",
                 "--split", str(REPO / "resources" / "splits" / "idrid-481" / "test.txt"), "--json",
                 "--backend", "torch"]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["images"] == card["metrics"]["test"]["images"] == 72
    assert res["accuracy"] > card["metrics"]["test"]["majority_class_accuracy"]
    assert res["accuracy"] == pytest.approx(card["metrics"]["test"]["accuracy"], abs=1e-3)
    assert res["qwk"] == pytest.approx(card["metrics"]["test"]["qwk"], abs=1e-3)


@pytest.mark.realdata
def test_blood_default_reproduces_its_validation_figures(capsys):
    from tests.conftest import data_dir

    txl = data_dir("txl-pbc")
    card = json.loads((RESOURCES_MODELS / "blood-default" / "card.json").read_text())
    assert main(["evaluate", "--task", "blood", "--model", "blood-default", "--data", str(txl), "--split",
                 str(REPO / "resources" / "splits" / "txl-pbc" / "select.txt"), "--json", "--backend", "onnx"]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    val = card["metrics"]["validation"]
    assert res["images"] == val["images"] == 124
    # the card's figures come from the float32 model in training; the bundle stores float16 weights
    assert res["map50"] == pytest.approx(val["map50"], abs=3e-3)
    for name, ap in val["ap50"].items():
        assert res["ap50"][name] == pytest.approx(ap, abs=5e-3)


@pytest.mark.realdata
def test_blood_default_counts_every_lab_within_its_targets_on_kept_aside_smears():
    """#30: on TXL-PBC images kept out of training and selection, the red-cell count is within 1.5 per image
    in each of the four labs, as the card records."""
    import sys

    from tests.conftest import data_dir

    sys.path.insert(0, str(REPO / "scripts"))
    from blood_per_lab import per_lab

    card = json.loads((RESOURCES_MODELS / "blood-default" / "card.json").read_text())
    figures = per_lab("blood-default", data_dir("txl-pbc"), str(REPO / "resources" / "splits" / "txl-pbc" /
                                                                  "holdout.txt"), "torch")
    recorded = card["metrics"]["kept_aside"]["per_lab"]
    assert set(figures["labs"]) == set(recorded) == {"BCCD", "BCDD", "PBC", "Raabin-WBC", "all"}
    for lab, m in figures["labs"].items():
        assert m["count_mae"]["RBC"] <= 1.5, (lab, m["count_mae"])
        assert m["count_mae"]["RBC"] == pytest.approx(recorded[lab]["count_mae"]["RBC"], abs=0.05)
        assert m["ap50"]["RBC"] >= 0.9, (lab, m["ap50"])


def test_the_apps_blood_sample_shows_about_as_many_cells_as_it_holds():
    """#30: the sample holds about 25 cells; v3 counted 7 of them at the default threshold."""
    from cellcounter.inference import predict_image

    image = read_image(SAMPLES["blood"])
    for backend in ("auto", "torch"):
        counts = predict_image(Predictor.load("blood-default", backend, "cpu"), image, "s").counts(score_threshold=0.5)
        # 22 and 21 with auto: the int8 graph scores many anchors alike, and which of two equal-scored overlapping
        # boxes NMS keeps is arbitrary (torch's top-k; the numpy tail takes the lower anchor index): measured on
        # TXL-PBC's 122 kept-aside smears, RBC count error 1.246 one way, 1.254 the other
        assert sum(counts.values()) >= 21 and counts["WBC"] == 1, (backend, counts)


@pytest.mark.realdata
@pytest.mark.parametrize("source", ["dsb2018-stained", "monuseg"])
def test_nuclei_default_reproduces_its_kept_aside_figures(source, capsys):
    from tests.conftest import data_dir

    card = json.loads((RESOURCES_MODELS / "nuclei-default" / "card.json").read_text())
    data = str(data_dir("dsb2018-stained")) if source == "dsb2018-stained" else \
        f"{data_dir('monuseg')},{data_dir('monuseg-more')}"
    assert main(["evaluate", "--task", "nuclei", "--model", "nuclei-default", "--data", data,
                 "--split", str(REPO / "resources" / "splits" / "nuclei-24" / "val.txt"), "--json",
                 "--backend", "torch"]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    kept = card["metrics"]["kept_aside"][source]
    assert res["images"] == kept["images"] == (15 if source == "dsb2018-stained" else 5)
    for key in ("mask_ap50", "mask_ap", "aji"):
        assert res[key] == pytest.approx(kept[key], abs=2e-3)


@pytest.mark.realdata
def test_the_studys_mask_rcnn_stays_selectable_and_reproduces_its_figures(capsys):
    from tests.conftest import data_dir

    card = json.loads((RESOURCES_MODELS / "nuclei-maskrcnn" / "card.json").read_text())
    assert card["architecture"]["kind"] == "segmenter"
    assert main(["evaluate", "--task", "nuclei", "--model", "nuclei-maskrcnn", "--data",
                 str(data_dir("dsb2018-stained")), "--split", str(REPO / "resources" / "splits" / "nuclei" / "val.txt"),
                 "--json", "--backend", "torch"]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    kept = card["metrics"]["kept_aside"]["dsb2018-stained"]
    assert res["images"] == kept["images"] == 15
    for key in ("mask_ap50", "mask_ap", "aji"):
        assert res[key] == pytest.approx(kept[key], abs=2e-3)


@pytest.mark.parametrize("name", ["blood-default", "nuclei-default", "nuclei-maskrcnn", "leaves-default"])
def test_a_bundled_calibration_is_only_one_that_counted_better_on_images_it_was_not_fitted_on(name):
    """#37: the calibrations once shipped were fitted on the images whose count error they reported."""
    card = json.loads((RESOURCES_MODELS / name / "card.json").read_text())
    calibration = card.get("score_calibration") or {}
    checked = (card.get("metrics") or {}).get("score_calibration")
    for cls in calibration:
        r = checked["per_class"][cls]
        assert r["kept"] and r["held_back_count_mae_calibrated"] < r["held_back_count_mae_raw"], (name, cls)
    if name in ("blood-default", "nuclei-default"):  # checked by cross-validation, the figures in the card
        assert checked["folds"] == 5 and all("held_back_count_mae_raw" in r for r in checked["per_class"].values())
