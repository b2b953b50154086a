"""Large image: a 20000 x 20000 RGB TIFF counted with the tiled predictor.

Megapixels per second, peak resident memory (bounded: it must not grow with the image), the tiling
overhead against the sum of per-tile inference times, on the backend ``auto`` picks; then the same slide
with 60% of it empty glass (tiles skipped by the tissue mask, time saved), and whether the network gains
from tiles in batches. Run alone: ``python bench/bench_tiling.py [--backend B]``.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile
from _common import ROOT, median_time, model_or_tiny, write

SIDE, TIFF_TILE = 20000, 512


def make_tiff(path: Path, glass: float = 0.0) -> None:
    """The slide: BCCD smear patches everywhere, or with the bottom ``glass`` share of its rows empty glass."""
    from cellcounter.imageio import read_image

    sample = read_image(ROOT / "resources" / "samples" / "blood" / "BloodImage_00000.jpg")[:TIFF_TILE, :TIFF_TILE]
    pad = np.zeros((TIFF_TILE, TIFF_TILE, 3), np.uint8)
    pad[: sample.shape[0], : sample.shape[1]] = sample
    rng = np.random.default_rng(0)
    empty = np.clip(rng.normal(236, 3, (TIFF_TILE, TIFF_TILE, 3)), 0, 255).astype(np.uint8)
    n = -(-SIDE // TIFF_TILE)
    first_glass_row = int(round(n * (1 - glass)))
    tifffile.imwrite(path, (empty if k // n >= first_glass_row else pad for k in range(n * n)), shape=(SIDE, SIDE, 3),
                     dtype=np.uint8, tile=(TIFF_TILE, TIFF_TILE), compression="zlib", photometric="rgb", bigtiff=True)


def count_slide(predictor, path: Path) -> dict:
    """One tiled prediction of the slide: time, the model's share of it, tiles skipped, peak memory."""
    from cellcounter.imageio import open_image
    from cellcounter.inference import TiledPredictor

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
    try:
        with open_image(path) as src:
            ann = tiled.predict_source(src)
    finally:
        predictor.raw = raw
    total = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"tiles": len(per_tile) + tiled.skipped_tiles, "predicted_tiles": len(per_tile),
            "skipped_tiles": tiled.skipped_tiles, "objects": len(ann.boxes), "total_s": total,
            "sum_tile_s": sum(per_tile), "overhead": total / max(1e-9, sum(per_tile)) - 1, "peak_rss_mb": peak,
            "growth_mb": peak - rss0}


def batch_gain(predictor, batch: int = 4, side: int = 1024, runs: int = 5) -> dict:
    """The network on ``batch`` tiles at once against one at a time (same inputs, median of ``runs``)."""
    from cellcounter.inference.detector_post import network_input

    rng = np.random.default_rng(0)
    x = network_input(rng.random((3, side, side), np.float32), predictor.config.image_mean,
                      predictor.config.image_std)
    xs = np.concatenate([x] * batch)
    one = median_time(lambda: [predictor.backend.run(x) for _ in range(batch)], runs, 1)
    together = median_time(lambda: predictor.backend.run(xs), runs, 1)
    return {"batch": batch, "one_at_a_time_s": one, "batched_s": together, "gain": one / together}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="auto")
    args = parser.parse_args()
    from cellcounter.inference import Predictor

    tmp = Path(tempfile.mkdtemp())
    predictor = Predictor.load(model_or_tiny("blood-default", "detector", tmp), args.backend)
    res = {"model": predictor.model_version, "backend": predictor.backend.description, "side": SIDE}
    path = tmp / "slide.tif"
    make_tiff(path)
    full = count_slide(predictor, path)
    path.unlink()
    make_tiff(path, glass=0.6)
    glass = count_slide(predictor, path)
    path.unlink()
    batched = batch_gain(predictor)
    mp = SIDE * SIDE / 1e6
    rows = [("what", "value"),
            ("model, backend", f"{predictor.model_version}, {predictor.backend.description}"),
            ("image", f"{SIDE} x {SIDE} RGB, {full['tiles']} tiles"),
            ("objects found", str(full["objects"])),
            ("total time", f"{full['total_s']:.1f} s"),
            ("throughput", f"{mp / full['total_s']:.1f} MP/s"),
            ("sum of per-tile inference", f"{full['sum_tile_s']:.1f} s"),
            ("tiling overhead", f"{100 * full['overhead']:.1f} %"),
            ("peak resident memory", f"{full['peak_rss_mb']:.0f} MB (+{full['growth_mb']:.0f} MB while predicting)"),
            ("slide with 60% glass: tiles skipped", f"{glass['skipped_tiles']} of {glass['tiles']} "
                                                    f"({100 * glass['skipped_tiles'] / glass['tiles']:.0f}%)"),
            ("slide with 60% glass: total time", f"{glass['total_s']:.1f} s ({full['total_s'] / glass['total_s']:.1f}x "
                                                 "faster than the full slide)"),
            (f"network on {batched['batch']} tiles of 1024 px: batched vs one at a time",
             f"{batched['gain']:.2f}x ({batched['batched_s']:.2f} s vs {batched['one_at_a_time_s']:.2f} s)")]
    res.update(full=full, glass_60=glass, batch=batched, mp_per_s=mp / full["total_s"])
    write("tiling", rows, res)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
