"""Background tiles of a slide are never predicted (#20 point 5, #21 part 1): a low-resolution tissue mask
keeps the tiles that touch tissue, and the objects on tissue are found as without skipping."""

from __future__ import annotations

import numpy as np
import tifffile

from cellcounter.imageio import ImageSource, open_image
from cellcounter.inference import Predictor
from cellcounter.inference.tiling import TiledPredictor
from cellcounter.inference.tissue import tissue_mask


def _slide(tmp_path, h=1024, w=2048):
    img = np.full((h, w, 3), 242, np.uint8)  # glass
    img[200:600, 300:800] = (205, 150, 200)  # a piece of tissue
    rng = np.random.default_rng(1)
    for _ in range(60):
        y, x = rng.integers(220, 560), rng.integers(320, 760)
        img[y:y + 20, x:x + 20] = (90, 40, 120)
    path = tmp_path / "slide.tif"
    tifffile.imwrite(path, img, tile=(256, 256), photometric="rgb")
    return path, img


def test_the_mask_covers_the_tissue_and_not_the_glass(tmp_path):
    path, img = _slide(tmp_path)
    with open_image(path, lazy=True) as src:
        m = tissue_mask(src)
    assert m is not None and 0.05 < m.fraction < 0.3
    assert m.covers(300, 400, 400, 500) and not m.covers(800, 1000, 1200, 2000)
    grey = ImageSource(path, (100, 100), np.dtype(np.uint16), None, 1, np.zeros((100, 100), np.uint16), lazy=False)
    assert tissue_mask(grey) is None  # not brightfield RGB: nothing is skipped
    dark = np.zeros((400, 400, 3), np.uint8)
    assert tissue_mask(ImageSource(path, dark.shape, dark.dtype, None, 1, dark, lazy=False)) is None


def test_skipping_background_tiles_keeps_every_object_on_tissue(tmp_path, tiny_models):
    path, _ = _slide(tmp_path)
    predictor = Predictor.load(tiny_models["detector"])
    with open_image(path, lazy=True) as src:
        skipping = TiledPredictor(predictor, tile_size=512)
        fast = skipping.predict_source(src)
        full = TiledPredictor(predictor, tile_size=512, skip_background=False).predict_source(src)
    assert skipping.skipped_tiles >= 6 and len(skipping.tiles(1024, 2048)) == 15  # the right half is glass
    on_tissue = lambda b: b.subset((b.xyxy[:, 0] < 900) & (b.xyxy[:, 1] < 700))  # noqa: E731
    assert on_tissue(fast.boxes).equals(on_tissue(full.boxes))
