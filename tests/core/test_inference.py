"""Prediction end to end: torch vs ONNX Runtime parity, tiling, cancellation and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from cellcounter.cli import main
from cellcounter.errors import CellCounterError
from cellcounter.formats import read_labels
from cellcounter.inference import Cancelled, Predictor, TiledPredictor, predict_image
from cellcounter.inference.tiling import core_bounds, tile_starts
from cellcounter.metrics import box_iou
from tests.helpers import blob_predictor


@pytest.mark.parametrize("kind", ["detector", "segmenter", "unet", "grader"])
def test_onnx_runtime_matches_torch(tiny_models, rgb_image, kind, tmp_path):
    torch_p = Predictor.load(tiny_models[kind], "torch", "cpu")
    onnx_p = Predictor.load(tiny_models[kind], "onnx", "cpu")
    assert onnx_p.backend.provider == "CPUExecutionProvider"
    if kind == "grader":
        a, b = torch_p.grade_probabilities(rgb_image), onnx_p.grade_probabilities(rgb_image)
        assert np.abs(a - b).max() < 1e-4 and a.sum() == pytest.approx(1.0)
        return
    if kind == "unet":  # the network's maps agree at any size (padded to its multiple and cropped back)
        for image in (rgb_image, rgb_image[:150, :221], rgb_image[:37, :61]):
            a, b = torch_p.maps(image), onnx_p.maps(image)
            assert a.shape == b.shape == (2, *image.shape[:2])
            assert np.abs(a - b).max() < 1e-4 and 0 <= a.min() and a.max() <= 1
        return
    # a second size checks that the exported graph really has a dynamic image size
    for image in (rgb_image, rgb_image[:150, :220]):
        a, b = torch_p.raw(image), onnx_p.raw(image)
        assert len(a.scores) == len(b.scores) > 0
        # the same place can hold detections of two classes: pair boxes within a class
        iou = box_iou(a.boxes, b.boxes) * (a.classes[:, None] == b.classes[None, :])
        j = iou.argmax(axis=1)
        assert iou.max(axis=1).min() > 0.99
        assert np.abs(a.scores - b.scores[j]).max() < 1e-3
        assert np.array_equal(a.classes, b.classes[j])
        if kind == "segmenter":
            for i in range(len(j)):
                # soft masks agree everywhere; binary masks agree wherever they are large enough that
                # the few pixels an untrained model leaves right at 0.5 cannot dominate the IoU
                assert np.abs(a.masks[i].astype(float) - b.masks[j[i]].astype(float)).max() < 1e-2
                ma, mb = a.masks[i] >= 0.5, b.masks[j[i]] >= 0.5
                union = (ma | mb).sum()
                if union >= 200:
                    assert (ma & mb).sum() / union > 0.98


def test_whole_image_prediction_is_an_annotation(tiny_models, rgb_image):
    for kind in ("detector", "segmenter", "unet", "grader"):
        p = Predictor.load(tiny_models[kind])
        ann = p.predict(rgb_image, "x.png")
        assert (ann.width, ann.height) == (240, 200) and ann.model_version == p.model_version
        if kind == "detector":
            assert len(ann.boxes) and (ann.boxes.origins == 0).all() and not np.isnan(ann.boxes.scores).any()
        elif kind in ("segmenter", "unet"):
            assert ann.masks is not None and ann.masks.shape == (200, 240)
        else:
            assert 0 <= ann.grade.value <= 4 and ann.grade.probabilities.shape == (5,)


def _blob_image(size=(700, 900), tile=256, overlap=64):
    """Squares of side 30 everywhere, including straddling every tile border."""
    img = np.zeros((*size, 3), np.uint8)
    centres = []
    ys = tile_starts(size[0], tile, overlap)
    xs = tile_starts(size[1], tile, overlap)
    borders_y = [s + tile for s in ys[:-1]] + [s for s in ys[1:]]
    borders_x = [s + tile for s in xs[:-1]] + [s for s in xs[1:]]
    for y in sorted(set(borders_y + [100, 350])):
        for x in sorted(set(borders_x + [120, 500])):
            if 20 <= y < size[0] - 20 and 20 <= x < size[1] - 20 and all(
                    abs(y - cy) > 40 or abs(x - cx) > 40 for cy, cx in centres):
                centres.append((y, x))
                img[y - 15:y + 15, x - 15:x + 15] = 255
    return img, centres


def test_tiles_cover_the_image_and_cores_partition_it():
    starts = tile_starts(1000, 256, 64)
    assert starts[0] == 0 and starts[-1] == 1000 - 256
    assert all(b - a <= 256 - 64 for a, b in zip(starts, starts[1:]))
    cores = core_bounds(starts, 256, 1000)
    assert cores[0][0] == 0 and cores[-1][1] == 1000
    assert all(a[1] == b[0] for a, b in zip(cores, cores[1:]))


@pytest.mark.parametrize("kind", ["detector", "segmenter", "unet"])
def test_tiled_finds_each_object_exactly_once_like_untiled(kind):
    img, centres = _blob_image()
    pred = blob_predictor(kind)
    whole = pred.predict(img)
    tiled = TiledPredictor(pred, tile_size=256, overlap=64).predict_array(img)
    assert pred.backend.calls > 12
    if kind == "detector":
        assert len(whole.boxes) == len(centres) == len(tiled.boxes)
        iou = box_iou(whole.boxes.xyxy, tiled.boxes.xyxy)
        assert (iou.max(axis=1) > 0.99).all() and (iou.max(axis=0) > 0.99).all()
    else:
        assert len(tiled.masks) == len(centres) == len(whole.masks)
        assert np.array_equal(tiled.masks.label_image > 0, whole.masks.label_image > 0)
        assert (tiled.masks.areas() == 900).all()  # no instance cut in half


def test_tiled_prediction_reports_progress_and_can_be_cancelled(tmp_path):
    img, centres = _blob_image()
    tifffile.imwrite(tmp_path / "big.tif", img, tile=(128, 128), photometric="rgb", compression="zlib")
    seen = []
    predictor = blob_predictor("detector")
    ann = predict_image(predictor, tmp_path / "big.tif", progress=lambda d, t: seen.append((d, t)), tile=256,
                        overlap=64)
    assert len(ann.boxes) == len(centres)
    tiles = len(TiledPredictor(predictor, tile_size=256, overlap=64).tiles(700, 900))
    assert seen[-1][0] == seen[-1][1] == tiles and len(seen) == seen[-1][1]
    calls = []
    with pytest.raises(Cancelled):
        predict_image(predictor, tmp_path / "big.tif", should_stop=lambda: len(calls) > 2 or calls.append(1),
                      tile=256, overlap=64)


def _write_images(folder: Path, n=2) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    paths = []
    for i in range(n):
        p = folder / f"img{i}.png"
        Image.fromarray((rng.random((120, 160, 3)) * 255).astype(np.uint8)).save(p)
        paths.append(p)
    return paths


def test_cli_predict_writes_labels_overlays_and_counts_and_skips_corrupt_images(tiny_models, tmp_path, capsys):
    _write_images(tmp_path / "in")
    (tmp_path / "in" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    rc = main(["predict", str(tmp_path / "in"), "--task", "blood", "--model", str(tiny_models["detector"]),
               "--out", str(tmp_path / "out"), "--backend", "onnx", "--score-threshold", "0.0"])
    err = capsys.readouterr().err
    assert rc == 1 and "broken.jpg" in err and "skipped" in err
    assert (tmp_path / "out" / "img0.json").is_file() and (tmp_path / "out" / "img1_overlay.png").is_file()
    rows = (tmp_path / "out" / "counts.csv").read_text().splitlines()
    assert rows[0] == "image,RBC,WBC,Platelets,total" and len(rows) == 4
    back = read_labels(tmp_path / "out" / "img0.json")[0]
    assert len(back.boxes) > 0 and (back.boxes.origins == 0).all()


def test_cli_predict_masks_to_label_tiff_and_grades_to_csv(tiny_models, tmp_path):
    _write_images(tmp_path / "in", 1)
    assert main(["predict", str(tmp_path / "in"), "--task", "nuclei", "--model", str(tiny_models["segmenter"]),
                 "--out", str(tmp_path / "m"), "--format", "label-tiff"]) == 0
    assert (tmp_path / "m" / "img0_labels.tif").is_file()
    assert main(["predict", str(tmp_path / "in"), "--task", "retinopathy", "--model", str(tiny_models["grader"]),
                 "--out", str(tmp_path / "g"), "--format", "grade-csv"]) == 0
    rows = (tmp_path / "g" / "grades.csv").read_text().splitlines()
    assert rows[0].startswith("Image name,Retinopathy grade,p0,p1,p2,p3,p4,origin") and rows[1].startswith("img0,")
    assert rows[1].endswith(",model")
    # a model for another task is refused clearly
    assert main(["predict", str(tmp_path / "in"), "--task", "nuclei", "--model", str(tiny_models["grader"]),
                 "--out", str(tmp_path / "x")]) == 2


def test_cli_export_onnx(tiny_models, tmp_path):
    assert main(["export-onnx", str(tiny_models["grader"]), str(tmp_path / "g.onnx")]) == 0
    import onnx

    onnx.checker.check_model(str(tmp_path / "g.onnx"))


@pytest.mark.realdata
def test_cli_evaluate_on_bccd_val_and_idrid(tiny_models, bccd, capsys):
    assert main(["evaluate", "--task", "blood", "--model", str(tiny_models["detector"]), "--data", str(bccd),
                 "--split", "val", "--json"]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["task"] == "blood" and res["images"] == 87
    # without --backend: what the app would run here (the tiny model has no int8 graph: a float runtime)
    from cellcounter.inference.choice import default_backend
    from cellcounter.models.card import read_card

    card = read_card(tiny_models["detector"])
    assert res["backend"] == default_backend(card, tiny_models["detector"], "auto")
    assert set(res["ap50"]) == {"RBC", "WBC", "Platelets"} and set(res["count_mae"]) == {"RBC", "WBC", "Platelets"}
    assert 0 <= res["map50"] <= 1


@pytest.mark.realdata
def test_cli_evaluate_masks_on_dsb(tiny_models, dsb, tmp_path, capsys):
    sample = sorted((dsb / "stage1_train").iterdir())[0]
    assert main(["evaluate", "--task", "nuclei", "--model", str(tiny_models["segmenter"]), "--data", str(sample),
                 "--json"]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(res) >= {"task", "images", "mask_ap50", "mask_ap", "aji", "count_mae"} and res["images"] == 1


def test_tiled_prediction_of_a_large_lazily_read_tiff_keeps_memory_bounded(tmp_path):
    import resource

    side, tile = 12000, 1024
    path = tmp_path / "large.tif"

    def tiles():
        t = np.zeros((tile, tile, 3), np.uint8)
        t[500:530, 500:530] = 255  # one object per TIFF tile
        for _ in range((side // tile + 1) ** 2):
            yield t

    n_side = side // tile + 1
    tifffile.imwrite(path, tiles(), shape=(n_side * tile, n_side * tile, 3), dtype=np.uint8, tile=(tile, tile),
                     compression="zlib", photometric="rgb", bigtiff=True)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    ann = predict_image(blob_predictor("detector"), path, tile=1024, overlap=128)
    grew = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - before
    assert len(ann.boxes) == n_side * n_side
    assert grew < 250, f"peak memory grew by {grew:.0f} MB for a {3 * (n_side * tile) ** 2 / 1e6:.0f} MB image"


def test_grad_cam_is_the_class_activation_map_of_the_predicted_grade(tiny_models):
    """For global pooling + a linear layer, Grad-CAM equals CAM: relu(sum_c w_kc A_c), scaled to [0, 1]."""
    import torch

    from cellcounter.inference.gradcam import cam_lowres
    from cellcounter.models import load_model

    model, card = load_model(tiny_models["grader"])
    model.eval()
    torch.manual_seed(0)
    x = torch.randn(1, 3, 96, 96)
    cam, k = cam_lowres(model, x)
    with torch.no_grad():
        a = model.features[:-1](x)[0]  # (C, h, w)
        logits = model(x)
        expected = torch.relu((model.classifier.weight[k][:, None, None] * a).sum(0)).numpy()
    assert k == int(logits.argmax())
    assert cam.shape == expected.shape and cam.max() == pytest.approx(1.0)
    np.testing.assert_allclose(cam, expected / expected.max(), atol=1e-4)
    other = (k + 1) % 5
    cam_other, k2 = cam_lowres(model, x, other)
    assert k2 == other and not np.allclose(cam_other, cam)


def test_heat_map_covers_the_centre_crop_the_grader_saw(tiny_models):
    """A wide fundus photo: the grader sees the centred square; the heat map is image-sized, zero outside it."""
    pred = Predictor.load(tiny_models["grader"], "onnx")
    rng = np.random.default_rng(0)
    image = (rng.random((120, 300, 3)) * 255).astype(np.uint8)
    heat, k = pred.explain(image)
    assert heat.shape == (120, 300) and heat.dtype == np.float32
    assert 0 <= heat.min() and heat.max() <= 1 and heat.max() > 0.5
    assert not heat[:, :85].any() and not heat[:, 215:].any()  # the crop is columns 90-210
    assert heat[:, 95:205].any()
    assert k == pred.predict(image).grade.value
    with pytest.raises(CellCounterError, match="graders only"):
        Predictor.load(tiny_models["detector"]).explain(image)


def test_tiles_follow_the_models_card(tiny_models):
    """Segmenters trained on small crops predict large images in tiles near that size; detectors at 1024."""
    seg = TiledPredictor(Predictor.load(tiny_models["segmenter"]))
    det = TiledPredictor(Predictor.load(tiny_models["detector"]))
    assert seg.tile_size == 512 and det.tile_size == 1024
    assert len(seg.tiles(1000, 1000)) == 9 and len(det.tiles(1000, 1000)) == 1  # 3 x 3 with 128 px overlap
    assert TiledPredictor(Predictor.load(tiny_models["segmenter"]), tile_size=300).tile_size == 300


def test_overlapping_predictions_keep_the_surer_instance():
    """A nucleus predicted twice keeps the higher-scored mask; a partly overlapped one keeps its free pixels."""
    from cellcounter.inference.predictor import RawDetections, masks_from_probabilities

    m = np.zeros((4, 20, 20), np.float32)
    m[0, 2:10, 2:10] = 0.9   # low-score duplicate of instance 1
    m[1, 2:10, 3:10] = 0.9   # the surest
    m[2, 8:14, 8:14] = 0.9   # another nucleus touching it
    m[3, 15:18, 15:18] = 0.2  # below the mask threshold everywhere: no pixels
    det = RawDetections(np.zeros((4, 4)), np.array([0.3, 0.95, 0.6, 0.9]), np.zeros(4, np.int64), m)
    masks = masks_from_probabilities(det, (20, 20), 0.5)
    assert len(masks) == 2 and masks.scores.tolist() == [0.95, 0.6]
    lab = masks.label_image
    assert (lab == masks.ids[0]).sum() == 8 * 7  # the surest keeps all its pixels
    assert (lab == masks.ids[1]).sum() == 36 - 4  # the neighbour loses only the 2 x 2 it shares


def test_a_single_tile_image_is_predicted_as_a_whole(tiny_models):
    rng = np.random.default_rng(3)
    image = (rng.random((120, 150, 3)) * 255).astype(np.uint8)
    pred = Predictor.load(tiny_models["segmenter"])
    whole, tiled = pred.predict(image), TiledPredictor(pred).predict_array(image)
    assert len(whole.masks) > 0 and whole.masks.equals(tiled.masks)


@pytest.mark.parametrize("dtype", [np.uint16, np.int32, np.float32, np.float64])
def test_deep_and_float_images_predict_with_every_kind_of_model(tiny_models, tmp_path, dtype, capsys):
    """Microscopy is often 16-bit or float: the stretched pixels reach the network as float32."""
    import tifffile

    rng = np.random.default_rng(0)
    pixels = (rng.random((90, 120)) * (4000 if dtype != np.float64 else 7.5)).astype(dtype)
    tifffile.imwrite(tmp_path / "deep.tif", pixels)
    for kind, task in (("detector", "blood"), ("segmenter", "nuclei"), ("unet", "nuclei"), ("grader", "retinopathy")):
        p = Predictor.load(tiny_models[kind])
        ann = p.predict(pixels, "deep.tif") if kind == "grader" else TiledPredictor(p, tile_size=64,
                                                                                   overlap=16).predict_array(pixels)
        assert (ann.grade is not None) if kind == "grader" else ann.width == 120
        out = tmp_path / f"out-{kind}"
        assert main(["predict", str(tmp_path / "deep.tif"), "--task", task, "--model", str(tiny_models[kind]),
                     "--out", str(out)]) == 0
        assert "0 failed" in capsys.readouterr().err


def test_every_tile_of_a_deep_image_is_stretched_with_the_whole_image_s_levels(tiny_models, tmp_path):
    from cellcounter.inference.preprocess import intensity_levels, to_float_rgb

    rng = np.random.default_rng(1)
    pixels = (rng.random((64, 96)) * 1000).astype(np.uint16)
    pixels[:, 48:] += 30000  # one bright half: a per-tile stretch would make the halves look alike
    levels = intensity_levels(pixels)
    whole = to_float_rgb(pixels)
    left = to_float_rgb(pixels[:, :48], levels)
    assert left.dtype == np.float32
    np.testing.assert_array_equal(left, whole[:, :48])
    assert whole[:, :48].mean() < 0.1 < 0.9 < whole[:, 48:].mean()
    seen = []
    p = Predictor.load(tiny_models["detector"])
    original = p.raw
    p.raw = lambda tile: (seen.append(np.asarray(tile)), original(tile))[1]
    TiledPredictor(p, tile_size=48, overlap=0).predict_array(pixels)
    assert len(seen) == 4  # 2 x 2 tiles, row by row: the left ones dark, the right ones bright
    assert max(seen[0].mean(), seen[2].mean()) < 0.1 and min(seen[1].mean(), seen[3].mean()) > 0.9
    nan = np.full((20, 30), np.nan, np.float32)  # an all-NaN image is black, not noise
    assert not to_float_rgb(nan).any()


def test_a_second_run_reuses_the_loaded_model_until_its_weights_change(tmp_path):
    import os

    from cellcounter.inference import load_predictor
    from tests.helpers import make_tiny_model

    model = make_tiny_model("detector", tmp_path / "m")
    first = load_predictor(str(model), "torch", "cpu")
    assert load_predictor(str(model), "torch", "cpu") is first
    weights = next(f for f in model.iterdir() if f.suffix in (".pt", ".safetensors"))
    st = weights.stat()
    os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # retrained in place
    assert load_predictor(str(model), "torch", "cpu") is not first
