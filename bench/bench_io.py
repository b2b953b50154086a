"""IO benchmark: label reading speed on the real data, and lazy vs full reads of a large TIFF.

Run alone (``python bench/bench_io.py``); prints a table and writes ``bench/results/io.json``.
"""

from __future__ import annotations

import json
import platform
import resource
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import tifffile

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cellcounter.formats import read_labels  # noqa: E402
from cellcounter.imageio import open_image  # noqa: E402

DATA = ROOT.parent / "shared" / "data"


def timed(fn, repeat=3):
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def main() -> int:
    cpu = platform.processor() or "?"
    results: dict = {"machine": f"{platform.machine()}, {cpu}, python {platform.python_version()}"}
    rows = []
    for name in ("bccd", "dsb2018-stained", "monuseg", "idrid"):
        if not (DATA / name).is_dir():
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            secs, anns = timed(lambda n=name: read_labels(DATA / n), repeat=2)
        rows.append((f"read {name}", f"{len(anns)} images", f"{secs:.2f} s", f"{1000 * secs / len(anns):.1f} ms/image"))
        results[f"read_{name}_s"] = secs

    with tempfile.TemporaryDirectory() as tmp:
        side, tile = 8192, 512
        path = Path(tmp) / "big.tif"
        rng = np.random.default_rng(0)
        noise = rng.integers(0, 255, (tile, tile, 3), dtype=np.uint8)
        tifffile.imwrite(path, (noise for _ in range((side // tile) ** 2)), shape=(side, side, 3), dtype=np.uint8,
                         tile=(tile, tile), compression="zlib", photometric="rgb")
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        t_lazy, region = timed(lambda: open_image(path, lazy=True).read_region(4000, 5000, 4000, 5000))
        rss_lazy = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        t_full, full = timed(lambda: open_image(path, lazy=False).read()[4000:5000, 4000:5000].copy(), repeat=1)
        assert np.array_equal(region, full)
        rows.append(("1000x1000 region of 8192x8192 TIFF", "lazy", f"{t_lazy * 1000:.0f} ms",
                     f"+{(rss_lazy - rss0) / 1024:.0f} MB peak"))
        rows.append(("same region", "full read", f"{t_full * 1000:.0f} ms", f"ratio {t_full / t_lazy:.1f}x"))
        results.update(region_lazy_s=t_lazy, region_full_s=t_full, region_ratio=t_full / t_lazy)

    width = max(len(r[0]) for r in rows)
    for r in rows:
        print(f"{r[0]:<{width}}  {r[1]:>12}  {r[2]:>10}  {r[3]}")
    out = ROOT / "bench" / "results" / "io.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
