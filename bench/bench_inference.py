"""Per-image inference: torch eager vs ONNX Runtime for each model kind, and a plain torchvision baseline.

Median latency over 20 runs after warm-up, on the CPU here (and the GPU when there is one).
Run alone: ``python bench/bench_inference.py``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from _common import ROOT, median_time, model_or_tiny, write


def main() -> int:
    import torch
    import torchvision

    from cellcounter.imageio import read_image
    from cellcounter.inference import Predictor

    tmp = Path(tempfile.mkdtemp())
    blood = read_image(ROOT / "resources" / "samples" / "blood" / "BloodImage_00000.jpg")
    nuclei_path = next((ROOT / "resources" / "samples" / "nuclei").glob("*/images/*.png"))
    nuclei = read_image(nuclei_path)
    fundus = (np.random.default_rng(0).random((1424, 2144, 3)) * 255).astype(np.uint8)
    rows = [("model", "torch ms", "onnx ms", "torch/onnx")]
    res: dict = {}
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for name, kind, image in (("blood-default", "detector", blood), ("nuclei-maskrcnn", "segmenter", nuclei),
                              ("nuclei-default", "unet", nuclei), ("retinopathy-default", "grader", fundus)):
        model = model_or_tiny(name, kind, tmp)
        for device in devices:
            t = Predictor.load(model, "torch", device)
            o = Predictor.load(model, "onnx", device)
            runs = 20 if kind != "segmenter" else 10
            tt = median_time(lambda: t.predict(image), runs)
            to = median_time(lambda: o.predict(image), runs)
            rows.append((f"{kind} ({t.model_version}) {device}", f"{tt * 1000:.0f}", f"{to * 1000:.0f}",
                         f"{tt / to:.2f}x"))
            res[f"{kind}_{device}"] = {"torch_s": tt, "onnx_s": to, "ratio": tt / to, "model": t.model_version,
                                       "onnx_provider": o.backend.provider}
    # what a user writing their own script would run: torchvision's stock RetinaNet at default settings
    torch.set_grad_enabled(False)
    stock = torchvision.models.detection.retinanet_resnet50_fpn(weights=None, weights_backbone=None,
                                                               num_classes=3).eval()
    x = torch.from_numpy(blood).permute(2, 0, 1).float() / 255
    ts = median_time(lambda: stock([x]), 10)
    ours = res["detector_cpu"]["onnx_s"]
    rows.append(("stock torchvision RetinaNet-R50 (800 px)", f"{ts * 1000:.0f}", "", f"ours is {ts / ours:.1f}x faster"))
    res["stock_torchvision_s"] = ts
    res["stock_over_ours_onnx"] = ts / ours
    write("inference", rows, res)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
