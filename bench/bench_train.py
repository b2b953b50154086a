"""Training throughput: images per second for each recipe, and the share of time spent waiting for data.

Run alone: ``python bench/bench_train.py`` (CPU here; the GPU where there is one).
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import time
from pathlib import Path

from _common import ROOT, write

DATA = Path(os.environ.get("CELLCOUNTER_DATA", ROOT.parent / "shared" / "data"))


def main() -> int:
    import torch

    from training import TrainConfig, apply_recipe
    from training.loop import iter_training

    tmp = Path(tempfile.mkdtemp())
    runs = {
        "blood-detector": dict(task="blood", data=str(DATA / "bccd"), min_size=320, max_size=427, batch_size=4),
        "nuclei-maskrcnn": dict(task="nuclei", data=str(DATA / "dsb2018-stained"), batch_size=2),
        "leaves-maskrcnn": dict(task="leaves", data="synthetic", synthetic_size=256, batch_size=4),
        "dr-grader": dict(task="retinopathy", data=str(DATA / "idrid"), input_size=256, batch_size=8),
    }
    rows = [("recipe", "images/s", "data wait %")]
    res = {}
    device = "cuda" if torch.cuda.is_available() else "cpu"
    for recipe, kw in runs.items():
        if kw["data"] != "synthetic" and not Path(kw["data"]).exists():
            continue
        cfg = apply_recipe(TrainConfig(recipe=recipe, out=str(tmp / recipe), max_steps=8, epochs=50, val_split=0.0,
                                       checkpoint_every=0, device=device, limit_images=32, **kw), set(kw) | {
            "max_steps", "epochs", "val_split", "checkpoint_every", "device", "limit_images"})
        cfg = dataclasses.replace(cfg, synthetic_val=0)
        stamps = []
        t_start = time.perf_counter()
        for ev in iter_training(cfg):
            if ev.kind == "step":
                stamps.append(time.perf_counter())
        steps = len(stamps) - 2  # the first two include start-up
        elapsed = stamps[-1] - stamps[1]
        ips = steps * cfg.batch_size / elapsed
        # data time: loading the same batches alone, without the model
        from training.data import DetectionDataset, GradeDataset, InstanceDataset, load_split
        from training.setup import model_config

        split = load_split(cfg)
        cls = {"blood": DetectionDataset, "nuclei": InstanceDataset, "leaves": InstanceDataset}.get(cfg.task)
        ds = cls(split.train, cfg, True) if cls else GradeDataset(split.train, cfg, True, model_config(cfg))
        for i in range(min(len(ds), cfg.batch_size)):  # warm the image cache as training did
            ds[i]
        t = time.perf_counter()
        n = 0
        for i in range(steps * cfg.batch_size):
            ds[i % len(ds)]
            n += 1
        data_s = time.perf_counter() - t
        rows.append((f"{recipe} ({device})", f"{ips:.2f}", f"{100 * data_s / elapsed:.0f}"))
        res[recipe] = {"images_per_s": ips, "data_share": data_s / elapsed, "device": device,
                       "total_s": time.perf_counter() - t_start}
    write("train", rows, res)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
