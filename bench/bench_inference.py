"""Per-image inference on every backend a user can choose, for each model kind, and a stock torchvision baseline.

torch eager, ONNX Runtime and OpenVINO on the same exported network graph, float and int8 (where the model
has an int8 graph), with what ``--backend auto`` picks. Median latency after warm-up, in one run, so the
ratios to torch compare like with like. Run alone: ``python bench/bench_inference.py [--runs N]``.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from _common import ROOT, median_time, model_or_tiny, write

BACKENDS = ("torch", "onnx", "onnx-int8", "openvino", "openvino-int8")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    import torch
    import torchvision

    from cellcounter.imageio import read_image
    from cellcounter.inference import Predictor, predict_image
    from cellcounter.inference.choice import INT8_NAME, default_backend, openvino_available
    from cellcounter.models.card import resolve_model

    tmp = Path(tempfile.mkdtemp())
    blood = read_image(ROOT / "resources" / "samples" / "blood" / "BloodImage_00000.jpg")
    nuclei_path = next((ROOT / "resources" / "samples" / "nuclei").glob("*/images/*.png"))
    nuclei = read_image(nuclei_path)
    he_tile = ROOT.parent / "shared" / "data" / "monuseg-more" / "tissue_image" / "TCGA-B0-5710-01Z-00-DX1.tif"
    tile = read_image(he_tile) if he_tile.is_file() else np.tile(nuclei, (4, 4, 1))[:1000, :1000]
    fundus = (np.random.default_rng(0).random((1424, 2144, 3)) * 255).astype(np.uint8)
    rows = [("model, device", *[f"{b} ms" for b in BACKENDS], "auto")]
    res: dict = {"backends": list(BACKENDS)}
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    cases = (("blood-default", "detector", blood, "BCCD 640 x 480"),
             ("nuclei-maskrcnn", "segmenter", nuclei, "DSB 320 x 256"),
             ("nuclei-default", "unet", tile, "H&E tile 1000 x 1000"),
             ("retinopathy-default", "grader", fundus, "fundus 2144 x 1424"))
    for name, kind, image, what in cases:
        model = model_or_tiny(name, kind, tmp)
        directory = resolve_model(model)
        for device in devices:
            times = {}
            for backend in BACKENDS:
                if backend.endswith("int8") and not (directory / INT8_NAME).is_file():
                    continue
                if backend.startswith("openvino") and (device != "cpu" or not openvino_available()):
                    continue
                if kind == "segmenter" and backend.endswith("int8"):
                    continue  # Mask R-CNN is exported whole, post-processing included: no int8 graph
                p = Predictor.load(model, backend, device)
                runs = args.runs if kind not in ("segmenter", "unet") else max(3, args.runs // 4)
                times[backend] = median_time(lambda: predict_image(p, image), runs)
            auto = default_backend(Predictor.load(model, "torch", device).card, directory, device)
            t0 = times["torch"]
            rows.append((f"{kind} ({name}, {what}) {device}",
                         *[f"{times[b] * 1000:.0f} ({t0 / times[b]:.2f}x)" if b in times else "" for b in BACKENDS],
                         auto))
            res[f"{kind}_{device}"] = {"model": name, "image": what, "seconds": times, "auto": auto,
                                       "speedup_over_torch": {b: t0 / t for b, t in times.items()}}
    # what a user writing their own script would run: torchvision's stock RetinaNet at default settings
    torch.set_grad_enabled(False)
    stock = torchvision.models.detection.retinanet_resnet50_fpn(weights=None, weights_backbone=None,
                                                               num_classes=3).eval()
    x = torch.from_numpy(blood).permute(2, 0, 1).float() / 255
    ts = median_time(lambda: stock([x]), 10)
    ours = min(res["detector_cpu"]["seconds"].values())
    rows.append(("stock torchvision RetinaNet-R50 (800 px), torch", f"{ts * 1000:.0f}",
                 f"our fastest is {ts / ours:.1f}x faster", "", "", "", ""))
    res["stock_torchvision_s"] = ts
    res["stock_over_ours_fastest"] = ts / ours
    write("inference", rows, res)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
