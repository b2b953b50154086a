"""The U-Net's post-processing: foreground and distance maps become one instance per object."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from cellcounter.inference.instances import instances_from_maps


def _disc(shape, cy, cx, r):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def _maps(label: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """What a perfect network predicts: the foreground, and each object's distance to its own edge / its largest."""
    dist = np.zeros(label.shape)
    for k in range(1, label.max() + 1):
        own = label == k
        d = ndimage.distance_transform_edt(own)
        dist[own] = d[own] / d.max()
    return (label > 0).astype(np.float32), dist.astype(np.float32)


def _best_iou(label: np.ndarray, truth: np.ndarray) -> list[float]:
    out = []
    for k in range(1, truth.max() + 1):
        t = truth == k
        out.append(max(((label == j) & t).sum() / ((label == j) | t).sum() for j in range(1, label.max() + 1)))
    return out


def test_touching_nuclei_are_split_along_the_valley_between_them():
    shape = (80, 120)
    truth = np.zeros(shape, np.int32)
    truth[_disc(shape, 40, 40, 18)] = 1
    truth[_disc(shape, 40, 72, 16) & (truth == 0)] = 2  # overlapping discs: one blob in the foreground
    truth[_disc(shape, 15, 105, 6)] = 3
    fg, dist = _maps(truth)
    assert ndimage.label(fg > 0.5)[1] == 2  # thresholding alone would merge the touching pair
    label, scores = instances_from_maps(fg, dist)
    assert label.max() == 3 == len(scores)
    assert min(_best_iou(label, truth)) > 0.9
    assert np.allclose(scores, 1.0)


def test_foreground_without_a_core_is_kept_and_specks_are_dropped():
    shape = (60, 60)
    fg = np.zeros(shape, np.float32)
    dist = np.zeros(shape, np.float32)
    fg[_disc(shape, 20, 20, 8)] = 0.8  # found, but the distance map never reaches the marker threshold
    dist[_disc(shape, 20, 20, 8)] = 0.3
    fg[50:52, 50:52] = 0.9  # 4 pixels: noise
    label, scores = instances_from_maps(fg, dist, min_area=12)
    assert label.max() == 1 and label[20, 20] == 1 and label[51, 51] == 0
    assert scores == np.array([0.8], np.float32).astype(np.float64)
    empty, none = instances_from_maps(np.zeros(shape), np.zeros(shape))
    assert empty.max() == 0 and len(none) == 0


def test_objects_are_numbered_one_to_n_and_scored_by_their_mean_foreground():
    shape = (40, 40)
    truth = np.zeros(shape, np.int32)
    truth[_disc(shape, 10, 10, 6)] = 1
    truth[_disc(shape, 28, 28, 6)] = 2
    fg, dist = _maps(truth)
    fg[truth == 2] = 0.6
    label, scores = instances_from_maps(fg, dist)
    assert sorted(np.unique(label)) == [0, 1, 2] and label.dtype == np.int32
    assert sorted(np.round(scores, 3)) == [0.6, 1.0]


class _RampBackend:
    """Maps that are the column and row position in whatever view the network is shown."""

    name, kind, description, takes_network_input = "ramps", "unet", "ramps", False

    def __init__(self):
        self.shapes = []

    def run(self, x):
        _, _, h, w = x.shape
        self.shapes.append((h, w))
        cols = np.broadcast_to(np.arange(w, dtype=np.float32) / w, (h, w))
        rows = np.broadcast_to(np.arange(h, dtype=np.float32)[:, None] / h, (h, w))
        return {"maps": np.stack([cols, rows])[None]}


def test_flip_averaging_sees_each_flip_and_maps_it_back_onto_the_image():
    from cellcounter.inference.predictor import Predictor
    from cellcounter.models import ModelCard
    from cellcounter.models.config import UNetConfig, config_to_dict

    image = np.zeros((30, 45, 3), np.uint8)  # padded to 32 x 48 for a depth-4 network
    plain = Predictor(ModelCard("r", "nuclei", ["nucleus"], config_to_dict(UNetConfig())), _RampBackend())
    assert np.allclose(plain.maps(image)[0, 0], np.arange(45) / 48)
    averaged = Predictor(ModelCard("r", "nuclei", ["nucleus"], config_to_dict(UNetConfig(flip_average=True))),
                         _RampBackend())
    maps = averaged.maps(image)
    assert maps.shape == (2, 30, 45) and averaged.backend.shapes == [(32, 48)] * 4
    # a ramp and its mirror image average to the same value everywhere: every flip was undone exactly
    assert np.allclose(maps[0], 47 / 96) and np.allclose(maps[1], 31 / 64)
