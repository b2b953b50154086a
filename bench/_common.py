"""Helpers shared by the benchmarks: timing, the machine's description, writing results."""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "bench" / "results"


def machine() -> str:
    try:
        import torch

        gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    except Exception:  # noqa: BLE001 - no torch or no driver: the GPU is unknown
        gpu = "?"
    return f"{platform.machine()} {os.cpu_count()} cores, {gpu}, python {platform.python_version()}"


def median_time(fn, runs: int = 20, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def write(name: str, rows: list[tuple], results: dict) -> None:
    width = max(len(str(r[0])) for r in rows) if rows else 10
    for r in rows:
        print(f"{str(r[0]):<{width}}  " + "  ".join(f"{c:>14}" for c in r[1:]))
    RESULTS.mkdir(parents=True, exist_ok=True)
    results = {"machine": machine(), **results}
    (RESULTS / f"{name}.json").write_text(json.dumps(results, indent=2))
    print(f"wrote {RESULTS / (name + '.json')}")


def model_or_tiny(name: str, kind: str, tmp: Path) -> Path:
    """The bundled model when it exists, else a randomly initialised one of the same architecture."""
    from cellcounter.models.card import RESOURCES_MODELS

    if (RESOURCES_MODELS / name / "card.json").is_file():
        return RESOURCES_MODELS / name
    import torch

    from cellcounter.models import DetectorConfig, GraderConfig, ModelCard, SegmenterConfig, build_model
    from cellcounter.models.config import UNetConfig, config_to_dict

    cfg, task, names = {
        "detector": (DetectorConfig(min_size=480, max_size=640), "blood", ["RBC", "WBC", "Platelets"]),
        "segmenter": (SegmenterConfig(backbone="resnet18", min_size=0, max_size=0, representation_size=256,
                                      detections_per_img=300), "nuclei", ["nucleus"]),
        "unet": (UNetConfig(width=16), "nuclei", ["nucleus"]),
        "grader": (GraderConfig(input_size=256), "retinopathy", [str(i) for i in range(5)]),
    }[kind]
    torch.manual_seed(0)
    from cellcounter.models.card import save_model

    save_model(build_model(cfg), ModelCard(f"random-{kind}", task, names, config_to_dict(cfg)), tmp / kind)
    return tmp / kind
