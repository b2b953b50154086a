"""Everything measured on a GPU, in one run (a lent GPU's time is short): prepare, run once, read the JSON.

For each bundled model: median latency of torch CUDA with mixed precision, ONNX Runtime's CUDA and
TensorRT providers (where this onnxruntime has them), each checked against torch on the CPU (counts at
0.5 and the largest score difference); then the 20,000 x 20,000 slide (``bench_tiling``) and a training
step of each recipe (``bench_train``) on the GPU, each in its own process.

Run alone: ``CELLCOUNTER_DATA=/path/to/data python bench/bench_gpu.py``; writes ``bench/results/gpu.json``.
Without a GPU it says so and exits 0: the figures in docs/performance.md say whether it ever ran.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
from _common import RESULTS, ROOT, median_time, write

MODELS = (("blood-default", "resources/samples/blood/BloodImage_00000.jpg"),
          ("nuclei-default", None), ("retinopathy-default", None))


def _image(name: str, sample: str | None) -> np.ndarray:
    from cellcounter.imageio import read_image

    if sample:
        return read_image(ROOT / sample)
    rng = np.random.default_rng(0)
    side = (1000, 1000) if name.startswith("nuclei") else (1424, 2144)
    return (rng.random((*side, 3)) * 255).astype(np.uint8)


def _onnx_on(name: str, provider: str):
    """``name`` on ONNX Runtime with ``provider`` first, or None where that provider is missing or fails."""
    import onnxruntime as ort

    from cellcounter.inference import Predictor

    if provider not in ort.get_available_providers():
        return None
    try:
        predictor = Predictor.load(name, "onnx", "cuda", providers=[provider, "CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - a TensorRT without its libraries: say so, measure the rest
        print(f"{provider}: {exc}", file=sys.stderr)
        return None
    return predictor if predictor.backend.provider == provider else None


def _agreement(ref, ann) -> dict:
    a, b = ref.counts(score_threshold=0.5), ann.counts(score_threshold=0.5)
    out = {"counts_cpu": a, "counts": b}
    if ref.grade is not None:
        out["max_probability_difference"] = float(np.abs(ref.grade.probabilities - ann.grade.probabilities).max())
    return out


def main() -> int:
    import torch

    from cellcounter.inference import Predictor, predict_image

    if not torch.cuda.is_available():
        print("bench_gpu: no CUDA GPU here; nothing measured (run it where one is lent)")
        return 0
    res: dict = {"gpu": torch.cuda.get_device_name(0), "models": {}}
    rows = [("model, backend", "median ms", "counts at 0.5 (CPU torch)")]
    for name, sample in MODELS:
        image = _image(name, sample)
        cpu = Predictor.load(name, "torch", "cpu")
        ref = predict_image(cpu, image, "bench")
        res["models"][name] = {}
        for label, make in (("torch cuda amp", lambda: Predictor.load(name, "torch", "cuda")),
                            ("onnx cuda", lambda: _onnx_on(name, "CUDAExecutionProvider")),
                            ("onnx tensorrt", lambda: _onnx_on(name, "TensorrtExecutionProvider"))):
            t = time.perf_counter()
            p = make()
            if p is None:
                rows.append((f"{name}, {label}", "not available", ""))
                continue
            load_s = time.perf_counter() - t
            ann = predict_image(p, image, "bench")
            s = median_time(lambda: predict_image(p, image, "bench"), 20, 3)
            agree = _agreement(ref, ann)
            res["models"][name][label] = {"median_s": s, "load_s": load_s, **agree}
            rows.append((f"{name}, {label}", f"{s * 1000:.1f}", f"{agree['counts']} ({agree['counts_cpu']})"))
    write("gpu", rows, res)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for script, extra in (("bench_tiling.py", ["--backend", "torch"]), ("bench_train.py", [])):
        t = time.perf_counter()
        done = subprocess.run([sys.executable, str(ROOT / "bench" / script), *extra], env=env, cwd=ROOT)
        res[script] = {"returncode": done.returncode, "seconds": time.perf_counter() - t}
        print(f"{script}: exit {done.returncode}")
    results = {k: json.loads((RESULTS / f"{k}.json").read_text()) for k in ("tiling", "train")
               if (RESULTS / f"{k}.json").is_file()}
    (RESULTS / "gpu.json").write_text(json.dumps({**res, **results}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
