"""Every backend a user can choose gives the torch model's answers: the detector's network and its shared
post-processing, OpenVINO, int8 graphs within their tolerance, and what ``auto`` picks."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from cellcounter.errors import CellCounterError
from cellcounter.inference import Predictor
from cellcounter.inference.choice import INT8_NAME, default_backend, openvino_available
from cellcounter.inference.preprocess import detection_input
from cellcounter.metrics import box_iou
from cellcounter.models.card import CARD_NAME, ModelCard

needs_openvino = pytest.mark.skipif(not openvino_available(), reason="openvino is not installed")


def test_the_detectors_network_and_its_post_processing_are_retinanet_itself(tiny_models, rgb_image):
    """The split (network on any backend, the tail in numpy outside it) gives exactly what the whole torchvision
    RetinaNet gives, at sizes that are and are not multiples of the padding."""
    p = Predictor.load(tiny_models["detector"], "torch", "cpu")
    p.score_thresholds = None
    model = p.backend.model
    for image in (rgb_image, rgb_image[:150, :221], rgb_image[:97, :45]):
        x, scale = detection_input(image, p.config.min_size, p.config.max_size)
        with torch.inference_mode():
            whole = model([torch.from_numpy(x)])[0]
        split = p.raw(image)
        assert len(split.scores) == len(whole["scores"]) > 0
        h, w = image.shape[:2]
        want = np.clip(whole["boxes"].numpy() / scale, 0, [w, h, w, h])
        # detections of equal score may come in either order (torch's top-k orders ties arbitrarily)
        a = np.lexsort((split.boxes[:, 1], split.boxes[:, 0], -np.round(split.scores, 5)))
        b = np.lexsort((want[:, 1], want[:, 0], -np.round(whole["scores"].numpy(), 5)))
        np.testing.assert_allclose(split.boxes[a], want[b], atol=1e-3)
        np.testing.assert_allclose(split.scores[a], whole["scores"].numpy()[b], atol=1e-6)
        np.testing.assert_array_equal(split.classes[a], whole["labels"].numpy()[b])


def _agree(a, b, iou_min=0.99, score_tol=1e-3):
    assert len(a.scores) == len(b.scores) > 0
    iou = box_iou(a.boxes, b.boxes) * (a.classes[:, None] == b.classes[None, :])
    j = iou.argmax(axis=1)
    assert iou.max(axis=1).min() > iou_min
    assert np.abs(a.scores - b.scores[j]).max() < score_tol


@needs_openvino
@pytest.mark.parametrize("kind", ["detector", "segmenter", "unet", "grader"])
def test_openvino_matches_torch(tiny_models, rgb_image, kind):
    torch_p = Predictor.load(tiny_models[kind], "torch", "cpu")
    ov_p = Predictor.load(tiny_models[kind], "openvino", "cpu")
    assert ov_p.backend.name == "openvino" and "OpenVINO" in ov_p.description
    if kind == "grader":
        np.testing.assert_allclose(torch_p.grade_probabilities(rgb_image), ov_p.grade_probabilities(rgb_image),
                                   atol=1e-4)
    elif kind == "unet":
        for image in (rgb_image, rgb_image[:150, :221]):
            np.testing.assert_allclose(torch_p.maps(image), ov_p.maps(image), atol=1e-4)
    else:
        for image in (rgb_image, rgb_image[:150, :220]):
            _agree(torch_p.raw(image), ov_p.raw(image))


@pytest.fixture(scope="module")
def int8_models(tiny_models, tmp_path_factory):
    """The tiny models with an int8 graph each, calibrated on images like the test's."""
    from cellcounter.inference.predictor import graph_path
    from cellcounter.inference.quantize import calibration_inputs, quantize_onnx

    rng = np.random.default_rng(1)
    images = []
    for _ in range(6):
        img = (rng.random((200, 240, 3)) * 60 + 150).astype(np.uint8)
        for _ in range(3):
            y, x = rng.integers(20, 180), rng.integers(20, 220)
            img[y - 15:y + 15, x - 15:x + 15] = (120, 40, 140)
        images.append(img)
    out = {}
    for kind in ("detector", "unet", "grader"):
        d = tmp_path_factory.mktemp("int8") / kind
        shutil.copytree(tiny_models[kind], d)
        p = Predictor.load(d, "torch", "cpu")
        inputs = calibration_inputs(p, images, limit=8)
        quantize_onnx(graph_path(d, p.card, p.backend.model), d / INT8_NAME, inputs)
        out[kind] = d
    return out


@pytest.mark.parametrize("runtime", ["onnx", pytest.param("openvino", marks=needs_openvino)])
@pytest.mark.parametrize("kind", ["detector", "unet", "grader"])
def test_an_int8_graph_is_quantised_and_stays_close_to_float(int8_models, rgb_image, kind, runtime):
    import onnx

    graph = onnx.load(str(int8_models[kind] / INT8_NAME))
    ops = {n.op_type for n in graph.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= ops  # QDQ around the convolutions
    weights = [t for t in graph.graph.initializer if t.data_type == onnx.TensorProto.INT8]
    assert weights and any(len(t.dims) == 4 for t in weights)  # conv weights stored as int8
    f = Predictor.load(int8_models[kind], runtime, "cpu")
    q = Predictor.load(int8_models[kind], f"{runtime}-int8", "cpu")
    if kind == "grader":
        np.testing.assert_allclose(f.grade_probabilities(rgb_image), q.grade_probabilities(rgb_image), atol=0.05)
    elif kind == "unet":
        a, b = f.maps(rgb_image), q.maps(rgb_image)
        assert np.abs(a - b).mean() < 0.02 and np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.98
    else:
        a, b = f.raw(rgb_image), q.raw(rgb_image)
        top_a, top_b = a.boxes[np.argsort(-a.scores)[:5]], b.boxes[np.argsort(-b.scores)[:20]]
        assert box_iou(top_a, top_b).max(axis=1).min() > 0.7  # its surest boxes are still found


def test_auto_takes_int8_only_where_the_card_accepts_it_and_falls_back_without_openvino(
        int8_models, tiny_models, monkeypatch):
    from cellcounter.fileutil import atomic_write_text
    from cellcounter.inference import choice
    from cellcounter.inference.quantize import judge

    d = int8_models["detector"]
    card = ModelCard.from_file(d / CARD_NAME)
    monkeypatch.setattr(choice, "CPU_DEFAULT", {**choice.CPU_DEFAULT, "detector": "openvino-int8"})
    monkeypatch.setattr(choice, "openvino_available", lambda: True)
    assert default_backend(card, d, "cpu") == "openvino"  # no verdict in the card yet: float
    card.metrics["int8"] = judge("detector", {"map50": 0.80}, {"map50": 0.785})
    assert card.metrics["int8"]["accepted"] is False and default_backend(card, d, "cpu") == "openvino"
    flips = judge("detector", {"map50": 0.80, "count_mae": {"RBC": 1.2, "Platelets": 0.1}},
                  {"map50": 0.799, "count_mae": {"RBC": 1.25, "Platelets": 0.4}})  # mAP held, a count flipped
    assert flips["accepted"] is False and flips["count_error"] == {"fp32": 1.3, "int8": 1.65}
    card.metrics["int8"] = judge("detector", {"map50": 0.80}, {"map50": 0.795})
    assert default_backend(card, d, "cpu") == "openvino-int8"
    assert default_backend(card, tiny_models["detector"], "cpu") == "openvino"  # accepted, but no int8 file
    monkeypatch.setattr(choice, "openvino_available", lambda: False)
    assert default_backend(card, d, "cpu") == "onnx-int8"
    atomic_write_text(d / CARD_NAME, card.to_json())
    p = Predictor.load(d, "auto", "cpu")
    assert p.backend.name == "onnx" and "int8" in str(p.backend.session._model_path)
    with pytest.raises(CellCounterError, match="no int8 graph"):
        Predictor.load(tiny_models["detector"], "onnx-int8", "cpu")
    with pytest.raises(CellCounterError, match="unknown backend"):
        Predictor.load(d, "tensorflow", "cpu")


def test_an_older_whole_graph_export_still_predicts(tiny_models, rgb_image, tmp_path):
    """Model folders exported before the network-only format (post-processing inside) keep working."""
    import warnings

    from cellcounter.inference.backends import DETECTION_OUTPUTS

    d = tmp_path / "old"
    shutil.copytree(tiny_models["detector"], d)
    p = Predictor.load(d, "torch", "cpu")
    model = p.backend.model
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, ([torch.rand(3, 96, 96)],), str(d / "model.onnx"), opset_version=17, dynamo=False,
                          input_names=["image"], output_names=["boxes", "scores", "labels"],
                          dynamic_axes={"image": {1: "height", 2: "width"}})
    old = Predictor.load(d, "onnx", "cpu")
    assert not old.backend.takes_network_input and DETECTION_OUTPUTS["detector"] == ("cls_logits", "bbox_regression")
    _agree(p.raw(rgb_image), old.raw(rgb_image))
    assert json.loads((d / CARD_NAME).read_text())["name"] == p.card.name


def test_cli_quantize_writes_the_int8_graph_and_its_verdict_into_the_card(tiny_models, tmp_path, capsys):
    from cellcounter.cli import main
    from tests.helpers import disc_folder

    d = tmp_path / "unet"
    shutil.copytree(tiny_models["unet"], d)
    data = disc_folder(tmp_path / "discs", 3)
    assert main(["quantize", "--task", "nuclei", "--model", str(d), "--calibration", str(data), "--images", "2",
                 "--data", str(data)]) == 0
    verdict = ModelCard.from_file(d / CARD_NAME).metrics["int8"]
    assert verdict["score"] == "aji" and verdict["drop"] == pytest.approx(verdict["fp32"] - verdict["int8"], abs=1e-3)
    assert verdict["accepted"] == (verdict["drop"] <= 0.01) and "2 images of" in verdict["calibration"]
    assert (d / INT8_NAME).is_file() and ("accepted" in capsys.readouterr().out)
    seg = tmp_path / "seg"
    shutil.copytree(tiny_models["segmenter"], seg)
    assert main(["quantize", "--task", "nuclei", "--model", str(seg), "--calibration", str(data),
                 "--data", str(data)]) == 2
    assert "int8 graphs are made for detectors" in capsys.readouterr().err


@needs_openvino
def test_running_openvino_sends_nothing_and_writes_nothing_under_home(tiny_models, tmp_path):
    """``import openvino`` alone would send a usage event and leave a client id in ~/intel: not through us."""
    import os
    import subprocess
    import sys

    code = ("import numpy as np; from cellcounter.inference import Predictor; "
            f"p = Predictor.load({str(tiny_models['grader'])!r}, 'openvino', 'cpu'); "
            "p.grade_probabilities(np.full((64, 64, 3), 128, np.uint8)); "
            "import sys; assert sys.modules['openvino_telemetry'] is None")
    env = {**os.environ, "HOME": str(tmp_path), "CELLCOUNTER_CACHE": str(tmp_path / "cache")}
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=300)
    assert not (tmp_path / "intel").exists()


def test_onnx_runtime_keeps_no_device_id_or_event_queue_under_home(tiny_models, tmp_path):
    """#32 point 7: ONNX Runtime's telemetry wrote ~/.cache/Microsoft/DeveloperTools/.onnxruntime/{deviceid,
    onnxruntime.db}; through cellcounter nothing of it is written (only our own export cache)."""
    import os
    import subprocess
    import sys

    code = ("import numpy as np; from cellcounter.inference import Predictor; "
            f"p = Predictor.load({str(tiny_models['grader'])!r}, 'onnx', 'cpu'); "
            "p.grade_probabilities(np.full((64, 64, 3), 128, np.uint8))")
    env = {k: v for k, v in os.environ.items() if k not in ("XDG_CACHE_HOME", "ORT_DISABLE_TELEMETRY")}
    env.update(HOME=str(tmp_path), CELLCOUNTER_CACHE=str(tmp_path / "cache"))
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=300)
    written = [p.relative_to(tmp_path).parts[:2] for p in tmp_path.rglob("*") if p.is_file()]
    assert all(parts[0] == "cache" for parts in written), written
