"""Project store benchmark: latency of committing one edit, and time to open a 1,000-image project.

Run alone (``python bench/bench_store.py``); prints a table and writes ``bench/results/store.json``.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cellcounter.annotations import Boxes, ImageAnnotation, InstanceMasks  # noqa: E402
from cellcounter.project import Project  # noqa: E402

N_EDITS = 10_000
N_IMAGES = 1_000


def main() -> int:
    tmp = Path(tempfile.mkdtemp())
    try:
        rng = np.random.default_rng(0)
        img_dir = tmp / "images"
        img_dir.mkdir()
        for i in range(N_IMAGES):
            Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(img_dir / f"im{i:04d}.png")
        proj = Project.create(tmp / "p.ccproj")
        t = time.perf_counter()
        ids = [proj.add_image(img_dir / f"im{i:04d}.png", "blood") for i in range(N_IMAGES)]
        add_s = time.perf_counter() - t

        # one edit = move one box among 30 (what a drag in the app saves)
        ann = proj.load(ids[0])
        xyxy = rng.uniform(0, 40, (30, 4))
        xyxy[:, 2:] = xyxy[:, :2] + 8
        lat = np.empty(N_EDITS)
        for i in range(N_EDITS):
            xyxy[i % 30, :2] += 0.5
            ann.boxes = Boxes(xyxy.copy(), np.zeros(30, int))
            t = time.perf_counter()
            proj.save(ids[0], ann)
            lat[i] = time.perf_counter() - t

        # a mask edit on a 1000 x 1000 tile with 600 instances
        lab = np.zeros((1000, 1000), np.int32)
        k = 0
        for y in range(20, 1000, 40):
            for x in range(20, 1000, 40):
                k += 1
                if k > 600:
                    break
                lab[y - 12:y + 12, x - 12:x + 12] = k
        Image.fromarray(np.zeros((1000, 1000, 3), np.uint8)).save(img_dir / "tile.png")
        tile_id = proj.add_image(img_dir / "tile.png", "nuclei")
        big = ImageAnnotation(str(img_dir / "tile.png"), 1000, 1000, ("nucleus",), masks=InstanceMasks(lab))
        proj.save(tile_id, big)
        mlat = np.empty(50)
        for i in range(50):
            lab = big.masks.label_image.copy()
            lab[30 + i:33 + i, 30:40] = 1
            big.masks = InstanceMasks(lab, big.masks.ids, big.masks.classes, big.masks.scores, big.masks.origins)
            t = time.perf_counter()
            proj.save(tile_id, big)
            mlat[i] = time.perf_counter() - t
        proj.close()

        t = time.perf_counter()
        with Project.open(tmp / "p.ccproj") as p:
            n = len(p.images())
        open_s = time.perf_counter() - t
        t = time.perf_counter()
        with Project.open(tmp / "p.ccproj", readonly=True) as p:
            p.status()
        status_s = time.perf_counter() - t
        size_mb = (tmp / "p.ccproj").stat().st_size / 1e6
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    res = {
        "edit_commit_median_ms": float(np.median(lat) * 1000),
        "edit_commit_p99_ms": float(np.percentile(lat, 99) * 1000),
        "mask_edit_commit_median_ms": float(np.median(mlat) * 1000),
        "add_image_ms": add_s / N_IMAGES * 1000,
        "open_1000_images_s": open_s,
        "status_1000_images_s": status_s,
        "images": n,
        "file_mb_after_10k_edits": size_mb,
    }
    for k, v in res.items():
        print(f"{k:<30} {v:10.3f}")
    out = ROOT / "bench" / "results" / "store.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
