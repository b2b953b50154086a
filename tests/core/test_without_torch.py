"""Prediction without torch (the counting build carries none): the numpy detector tail, resize and NMS held
to torch/torchvision's own code, and the bundled models predicting in a process where torch cannot load."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torchvision.ops import batched_nms as tv_batched_nms

from cellcounter.inference.detector_post import DetectorPostprocess, batched_nms, level_sizes
from cellcounter.inference.preprocess import resize_bilinear
from cellcounter.models import DetectorConfig, build_model
from tests.conftest import REPO

# the interpreter flag that makes torch unimportable, as on a machine (or in an installer) without it
NO_TORCH = "import sys; sys.modules.update(torch=None, torchvision=None)\n"


@pytest.mark.parametrize("shape", [(480, 640, 360, 480), (100, 37, 400, 150), (7, 9, 3, 20), (1, 5, 4, 4)])
def test_the_resize_is_torchs_bilinear(shape):
    h0, w0, h, w = shape
    x = np.random.default_rng(0).random((3, h0, w0), dtype=np.float32)
    want = F.interpolate(torch.from_numpy(x)[None], size=(h, w), mode="bilinear", align_corners=False)[0].numpy()
    np.testing.assert_allclose(resize_bilinear(x, h, w), want, atol=1e-5)


def test_nms_keeps_what_torchvision_keeps():
    rng = np.random.default_rng(3)
    xy = rng.random((400, 2)) * 200
    wh = rng.random((400, 2)) * 40 + 5
    boxes = np.concatenate([xy, xy + wh], 1).astype(np.float32)
    scores = rng.permutation(400).astype(np.float32) / 400  # no ties: one right answer
    classes = rng.integers(0, 3, 400)
    want = tv_batched_nms(torch.from_numpy(boxes), torch.from_numpy(scores), torch.from_numpy(classes), 0.5).numpy()
    np.testing.assert_array_equal(batched_nms(boxes, scores, classes, 0.5), want)
    np.testing.assert_array_equal(batched_nms(boxes, scores, classes, 0.5, limit=7), want[:7])


@pytest.mark.parametrize("padded,image", [((256, 320), (250, 301)), ((192, 256), (192, 256))])
def test_the_detector_tail_is_torchvisions_retinanet(padded, image):
    """Anchors, decoding, per-level top-k (a small one, so it bites), threshold, NMS and clipping agree with
    torchvision's RetinaNet.postprocess_detections on the same network outputs."""
    from torchvision.models.detection.image_list import ImageList

    cfg = DetectorConfig(min_size=192, max_size=256, score_thresh=0.2, topk_candidates=50, detections_per_img=60,
                         fpn_channels=16)
    model = build_model(cfg).eval()
    sizes = level_sizes(*padded)
    a = len(cfg.anchor_scales) * len(cfg.aspect_ratios)
    n = sum(h * w for h, w in sizes) * a
    rng = np.random.default_rng(1)
    logits = rng.normal(-2.5, 1.5, (1, n, cfg.num_classes)).astype(np.float32)
    deltas = rng.normal(0, 0.3, (1, n, 4)).astype(np.float32)

    counts = [h * w * a for h, w in sizes]
    images = ImageList(torch.empty((1, 0, *padded)), [image])
    anchors = model.anchor_generator(images, [torch.empty((1, 0, h, w)) for h, w in sizes])
    heads = {"cls_logits": list(torch.from_numpy(logits).split(counts, 1)),
             "bbox_regression": list(torch.from_numpy(deltas).split(counts, 1))}
    with torch.no_grad():
        (want,) = model.postprocess_detections(heads, [list(x.split(counts)) for x in anchors], [image])
    got = DetectorPostprocess(cfg)(logits, deltas, padded, image)
    assert len(want["scores"]) > 20
    np.testing.assert_array_equal(got["labels"], want["labels"].numpy())
    np.testing.assert_allclose(got["scores"], want["scores"].numpy(), rtol=1e-6)
    np.testing.assert_allclose(got["boxes"], want["boxes"].numpy(), atol=1e-3)


def _predict(args, env, block_torch: bool):
    code = (NO_TORCH if block_torch else "") + (
        "from cellcounter.cli import main\nrc = main(sys.argv[1:])\n"
        "print('TORCH', rc, [m for m in ('torch', 'torchvision') if sys.modules.get(m) is not None])\n")
    out = subprocess.run([sys.executable, "-c", "import sys\n" + code, *args], capture_output=True, text=True,
                         cwd=REPO, env=env)
    return out


def test_the_bundled_models_predict_their_samples_where_torch_cannot_load(tmp_path, monkeypatch):
    """What the counting build does: blood (int8 detector), nuclei (U-Net, float graph) and leaves (Mask R-CNN,
    whole graph) predicted with ``auto`` in a process where ``import torch`` fails, giving what the same
    backend gives with torch present. The float graphs come from the cache a full build fills (the counting
    installer ships them beside the weights)."""

    env = dict(os.environ)
    samples = REPO / "resources" / "samples"
    nuclei = next((samples / "nuclei").glob("*/images/*.png"))
    cases = [("blood-default", "blood", samples / "blood" / "BloodImage_00000.jpg"),
             ("nuclei-default", "nuclei", nuclei),
             ("leaves-default", "leaves", samples / "leaves" / "rosette_20261123.png")]
    for model, task, image in cases:
        # with torch: the backend `auto` would choose without it (which also exports a missing float graph)
        backend = "openvino-int8" if model == "blood-default" else "openvino"
        fmt = "coco" if task == "blood" else "label-tiff"
        outs = {}
        for block in (False, True):
            out = tmp_path / f"{model}-{block}"
            args = ["predict", str(image), "--task", task, "--model", model, "--out", str(out), "--format", fmt]
            ran = _predict(args + ([] if block else ["--backend", backend]), env, block_torch=block)
            assert ran.returncode == 0, ran.stderr[-800:]
            if block:
                assert ran.stdout.strip().splitlines()[-1] == "TORCH 0 []", ran.stdout[-300:]
            assert "via OpenVINO" in ran.stdout + ran.stderr, ran.stderr[-300:]
            outs[block] = out
        a, b = ((o / "counts.csv").read_text() for o in (outs[False], outs[True]))
        assert a == b and int(a.splitlines()[-1].split(",")[-1]) > 0, (model, a, b)
        if fmt == "coco":
            a, b = (json.loads(next(o.glob("*.json")).read_text())["annotations"] for o in outs.values())
            np.testing.assert_allclose([x["bbox"] for x in a], [x["bbox"] for x in b], atol=1e-2)
        else:
            import tifffile

            a, b = (tifffile.imread(next(o.glob("*_labels.tif"))) for o in outs.values())
            assert a.max() > 0 and np.array_equal(a, b)


def test_training_says_it_needs_the_full_build_where_torch_cannot_load(tmp_path):
    """``project train`` (and the packaged ``cellcounter-app train``) in a build without torch: a plain error
    naming the full build and exit status 2, not an ImportError."""

    from cellcounter.project import Project
    from tests.conftest import make_image

    with Project.create(tmp_path / "p.ccproj") as proj:
        proj.add_image(make_image(tmp_path / "a.png"), "blood")
    ran = _predict(["project", "train", str(tmp_path / "p.ccproj")], dict(os.environ), block_torch=True)
    assert ran.returncode == 0 and ran.stdout.strip().splitlines()[-1] == "TORCH 2 []", ran.stderr[-500:]
    assert "fine-tuning needs torch" in ran.stderr and "full build" in ran.stderr, ran.stderr[-500:]
    code = NO_TORCH + "sys.argv = ['cellcounter-app', 'train', '--help']\nexec(open('packaging/launcher.py').read())\n"
    ran = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert ran.returncode == 2 and "training needs torch" in ran.stderr and "full build" in ran.stderr, ran.stderr


@pytest.mark.gui
@pytest.mark.skipif(not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")),
                    reason="opens the window: run it with `make test` (uses xvfb-run)")
def test_the_app_opens_predicts_and_counts_where_torch_cannot_load(tmp_path):
    """#35 point 4: the window's self-test (what the counting installer runs) in a process where ``import
    torch`` fails: the blood sample predicted on OpenVINO and ONNX Runtime int8, the other samples by their
    default models, the Fine-tune panel saying it needs the full build, and torch never imported."""

    from cellcounter.inference import Predictor

    for model in ("nuclei-default", "leaves-default"):  # their float graphs, as the counting installer ships
        Predictor.load(model, "openvino")
    code = NO_TORCH + ("from app.main import main\nrc = main(sys.argv[1:])\n"
                       "print('TORCH', rc, [m for m in ('torch', 'torchvision') if sys.modules.get(m) is not None])\n")
    env = dict(os.environ, CELLCOUNTER_PROJECTS=str(tmp_path / "projects"))
    ran = subprocess.run([sys.executable, "-c", "import sys\n" + code, "--selftest", "--screenshot",
                          str(tmp_path / "shot.png")], capture_output=True, text=True, cwd=REPO, env=env, timeout=600)
    lines = ran.stdout.strip().splitlines()
    assert ran.returncode == 0 and lines[-1] == "TORCH 0 []", (ran.stdout[-500:], ran.stderr[-1500:])
    summary = json.loads(lines[-2])
    assert set(summary["backends"]) == {"auto", "onnx-int8"} and summary["torch"] is False
    assert all("OpenVINO" in b["runs_on"] or "onnxruntime" in b["runs_on"] for b in summary["backends"].values())
    assert sum(summary["counts"].values()) >= 21
    samples = summary["samples"]
    assert samples["retinopathy"]["result"] == 2  # IDRiD_003, graded moderate by its readers
    assert sum(samples["nuclei"]["result"].values()) > 20 and sum(samples["leaves"]["result"].values()) > 5
    assert not summary["fine_tune"]["enabled"] and "full build" in summary["fine_tune"]["says"]
    assert (tmp_path / "shot.png").stat().st_size > 10_000


def test_the_heat_map_on_openvino_is_grad_cam_without_autograd(tiny_models):
    """#35: the counting build's heat map (class activation map from the graph, float or int8) is the torch
    Grad-CAM a full build shows, for the tiny grader and for the bundled one on its fundus sample."""
    from cellcounter.imageio import read_image
    from cellcounter.inference import Predictor

    image = (np.random.default_rng(0).random((120, 150, 3)) * 255).astype(np.uint8)
    want, k = Predictor.load(tiny_models["grader"], "torch").explain(image)
    got, k2 = Predictor.load(tiny_models["grader"], "openvino").explain(image)
    assert k2 == k and got.shape == want.shape and got.max() == pytest.approx(want.max(), abs=1e-4)
    np.testing.assert_allclose(got, want, atol=1e-3)
    fundus = read_image(REPO / "resources" / "samples" / "fundus" / "IDRiD_003.jpg")
    want, k = Predictor.load("retinopathy-default", "torch").explain(fundus, target=2)
    got, _ = Predictor.load("retinopathy-default", "openvino-int8").explain(fundus, target=2)
    assert np.corrcoef(got.ravel(), want.ravel())[0, 1] > 0.99 and np.abs(got - want).max() < 0.05
