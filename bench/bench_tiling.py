"""Large image: a 20000 x 20000 RGB TIFF counted with the tiled predictor.

Megapixels per second, peak resident memory (bounded: it must not grow with the image), and the
tiling overhead against the sum of per-tile inference times. Run alone: ``python bench/bench_tiling.py``.
"""

from __future__ import annotations

import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile

from _common import ROOT, model_or_tiny, write

SIDE, TIFF_TILE = 20000, 512


def make_tiff(path: Path) -> None:
    from cellcounter.imageio import read_image

    sample = read_image(ROOT / "resources" / "samples" / "blood" / "BloodImage_00000.jpg")[:TIFF_TILE, :TIFF_TILE]
    pad = np.zeros((TIFF_TILE, TIFF_TILE, 3), np.uint8)
    pad[: sample.shape[0], : sample.shape[1]] = sample
    n = -(-SIDE // TIFF_TILE)
    tifffile.imwrite(path, (pad for _ in range(n * n)), shape=(SIDE, SIDE, 3), dtype=np.uint8,
                     tile=(TIFF_TILE, TIFF_TILE), compression="zlib", photometric="rgb", bigtiff=True)


def main() -> int:
    from cellcounter.imageio import open_image
    from cellcounter.inference import Predictor, TiledPredictor

    tmp = Path(tempfile.mkdtemp())
    path = tmp / "slide.tif"
    make_tiff(path)
    predictor = Predictor.load(model_or_tiny("blood-default", "detector", tmp), "onnx")
    tiled = TiledPredictor(predictor, tile_size=1024, overlap=128)
    per_tile = []
    raw = predictor.raw

    def timed_raw(img):
        t = time.perf_counter()
        out = raw(img)
        per_tile.append(time.perf_counter() - t)
        return out

    predictor.raw = timed_raw  # measure the model's own share of the work
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t = time.perf_counter()
    with open_image(path) as src:
        ann = tiled.predict_source(src)
    total = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    mp = SIDE * SIDE / 1e6
    rows = [("what", "value"),
            ("image", f"{SIDE} x {SIDE} RGB, {len(per_tile)} tiles"),
            ("objects found", str(len(ann.boxes))),
            ("total time", f"{total:.1f} s"),
            ("throughput", f"{mp / total:.1f} MP/s"),
            ("sum of per-tile inference", f"{sum(per_tile):.1f} s"),
            ("tiling overhead", f"{100 * (total / sum(per_tile) - 1):.1f} %"),
            ("peak resident memory", f"{peak:.0f} MB (+{peak - rss0:.0f} MB while predicting)")]
    write("tiling", rows, {"side": SIDE, "tiles": len(per_tile), "total_s": total, "mp_per_s": mp / total,
                           "sum_tile_s": sum(per_tile), "overhead": total / sum(per_tile) - 1, "peak_rss_mb": peak,
                           "model": predictor.model_version})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
