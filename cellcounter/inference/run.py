"""The one way to predict an image: the app, ``predict``, ``project predict``, the cluster workers, ``evaluate``,
int8 calibration and training's validation all come here.

:func:`predict_image` chooses how a model sees an image (graders whole, detectors and segmenters in tiles of
their card's size, one intensity stretch for the whole image); :func:`predict_file` adds the one policy for a
bad file (its reason is returned, the batch goes on); :func:`load_predictor` keeps the last model loaded.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cellcounter.annotations import ImageAnnotation
from cellcounter.errors import CellCounterError
from cellcounter.imageio import open_image
from cellcounter.imagesource import ImageSource
from cellcounter.inference.predictor import Predictor
from cellcounter.inference.tiling import Progress, ShouldStop, TiledPredictor
from cellcounter.regions import Region

#: what makes one image fail without stopping a batch: unreadable or damaged files, sizes a model refuses,
#: images too large for memory
BAD_FILE_ERRORS = (CellCounterError, ValueError, OSError, MemoryError)


def failure_reason(exc: BaseException, path: str | Path) -> str:
    """Why ``path`` could not be predicted, in words, without the path again (the caller names the file)."""
    why = str(exc) or type(exc).__name__
    return why[len(f"{path}: "):] if why.startswith(f"{path}: ") else why


def predict_image(predictor: Predictor, image: np.ndarray | ImageSource | str | Path, image_path: str | None = None,
                  progress: Progress | None = None, should_stop: ShouldStop | None = None,
                  regions: Sequence[Region] = (), *, tile: int = 0, overlap: int = -1,
                  skip_background: bool | None = None) -> ImageAnnotation:
    """``image`` (pixels, an open source or a file) predicted by ``predictor``.

    Graders see the whole image; detectors and segmenters see tiles of ``tile`` pixels (0: their card's size;
    one tile when the image is smaller) overlapping by ``overlap`` (-1: the default), so every caller gets the
    same result for the same pixels. With ``regions``, only they are predicted (tiles outside all of them
    skipped) and only objects centred in one are kept; graders ignore regions. ``skip_background`` skips tiles
    without tissue (``None``: for slides read lazily).
    """
    if isinstance(image, (str, Path)):
        with open_image(image) as src:
            return predict_image(predictor, src, image_path or str(image), progress, should_stop, regions,
                                 tile=tile, overlap=overlap, skip_background=skip_background)
    if predictor.config.kind == "grader":
        pixels = image.read() if isinstance(image, ImageSource) else image
        path = image_path or (str(image.path) if isinstance(image, ImageSource) else "image")
        return predictor.predict(pixels, path)
    tiled = TiledPredictor(predictor, tile, overlap, regions=list(regions), skip_background=skip_background)
    if isinstance(image, ImageSource):
        return tiled.predict_source(image, progress, should_stop)
    return tiled.predict_array(image, image_path or "image", progress, should_stop)


def predict_file(predictor: Predictor, path: str | Path, regions: Sequence[Region] = (), *, tile: int = 0,
                 overlap: int = -1, keep_pixels: bool = False) -> tuple[ImageAnnotation | str, np.ndarray | None]:
    """One image file's prediction, or the reason it failed (a bad file never stops a batch), and, with
    ``keep_pixels``, its pixels when it was read whole (for an overlay; a slide read lazily gives none)."""
    try:
        with open_image(path) as src:
            ann = predict_image(predictor, src, str(path), regions=regions, tile=tile, overlap=overlap)
            return ann, src.read() if keep_pixels and not src.lazy else None
    except BAD_FILE_ERRORS as exc:
        return failure_reason(exc, path), None


_LOADED: dict[tuple, Predictor] = {}


def load_predictor(model: str | Path, backend: str = "auto", device: str = "auto") -> Predictor:
    """The model loaded on ``backend``, kept for the next call (the app's Run, a cluster worker's next file).

    Loading costs about 0.4 s on the CPU (weights, session set-up), more than predicting a BCCD image. Keyed by
    the folder and the modification times of its card and weights (the counting build's models have no
    weights file), so a model retrained in place is loaded afresh; one model at a time, as a bundled model is
    tens of MB and its session more.
    """
    from cellcounter.models.card import CARD_NAME, WEIGHTS_NAME, resolve_model

    directory = resolve_model(model)
    stamps = tuple(f.stat().st_mtime_ns for f in (directory / CARD_NAME, directory / WEIGHTS_NAME) if f.exists())
    key = (str(directory), stamps, backend, device)
    if key not in _LOADED:
        _LOADED.clear()
        _LOADED[key] = Predictor.load(directory, backend, device)
    return _LOADED[key]
