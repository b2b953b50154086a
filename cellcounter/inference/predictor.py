"""One predictor interface over both backends, returning the shared annotation model."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from cellcounter.annotations import Boxes, Grade, ImageAnnotation, InstanceMasks, Origin
from cellcounter.calibration import calibrate_scores, thresholds_by_index
from cellcounter.errors import CellCounterError, FormatError
from cellcounter.fileutil import not_regular_reason
from cellcounter.flavour import needs_torch
from cellcounter.inference.backends import Backend, OnnxBackend, OpenVinoBackend, TorchBackend
from cellcounter.inference.choice import BACKENDS, default_backend
from cellcounter.inference.instances import instances_from_maps
from cellcounter.inference.preprocess import check_has_pixels, detection_input, grader_input, to_chw
from cellcounter.models.card import CARD_NAME, ONNX_NAME, WEIGHTS_NAME, ModelCard, load_model, resolve_model


def onnx_cache_path(directory: Path, card: ModelCard) -> Path:
    """Where the ONNX export of a model without one lives: the user's cache, keyed by the weights' hash."""
    import hashlib
    import os

    from platformdirs import user_cache_dir

    h = hashlib.sha256()
    with open(directory / WEIGHTS_NAME, "rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    base = Path(os.environ.get("CELLCOUNTER_CACHE") or user_cache_dir("cellcounter", appauthor=False))
    from cellcounter.inference.choice import EXPORT_FORMAT

    h.update(json.dumps(card.architecture, sort_keys=True, default=str).encode())
    # the file name is the hash of the weights and settings only: card text never becomes part of a path
    return base / "onnx" / f"{h.hexdigest()[:32]}-f{EXPORT_FORMAT}.onnx"


def graph_path(directory: Path, card: ModelCard, net=None, int8: bool = False) -> Path:
    """The model's ONNX graph: its int8 one, else the float one beside the weights or, for a model without one
    (or with one of an older export format), exported once into the user's cache from ``net`` (the torch
    model, loaded from the folder when not given)."""
    if int8:
        from cellcounter.inference.choice import INT8_NAME

        path = directory / INT8_NAME
        if not path.is_file():
            raise CellCounterError(f"{directory}: no int8 graph ({INT8_NAME}); make one with `cellcounter quantize`")
        return path
    path = directory / ONNX_NAME
    if path.is_file():
        return path
    weights = directory / WEIGHTS_NAME
    if not weights.exists():
        raise CellCounterError(f"{directory}: the model has neither an ONNX graph ({ONNX_NAME}) nor weights "
                               f"({WEIGHTS_NAME})")
    why = not_regular_reason(weights)  # the cache is named by the weights' hash: never read a device for it
    if why:
        raise FormatError(weights, why)
    path = onnx_cache_path(directory, card)
    if not path.is_file():  # exported once per model version, then reused
        needs_torch(f"{directory}: this model has no ONNX graph ({ONNX_NAME}) to run without torch, and making "
                    "one needs torch")
        from cellcounter.inference.export import export_onnx

        export_onnx(net if net is not None else load_model(directory)[0], card, path)
    return path


MIN_SIDE = 16  # pixels: below it there is nothing a model can find, and resizing it up costs without end
MAX_GRADER_ASPECT = 8.0  # a fundus photograph is about square; a grader scales the shorter side up to its input


def check_predictable(height: int, width: int, grader: bool = False) -> None:
    """Refuse images no model can be run on sensibly, before any memory is spent on them."""
    if min(height, width) < MIN_SIDE:
        raise CellCounterError(f"image is {width} x {height} pixels: each side must be at least {MIN_SIDE} to predict")
    if grader and max(height, width) > MAX_GRADER_ASPECT * min(height, width):
        raise CellCounterError(f"image is {width} x {height} pixels: a grader needs a photo at most "
                               f"{MAX_GRADER_ASPECT:g} times as long as it is wide")


class Cancelled(CellCounterError):
    """The user stopped the work; nothing partial is returned."""


@dataclass
class RawDetections:
    """Detections in image pixel coordinates; ``masks`` are probabilities ``(N, H, W)`` when present (Mask
    R-CNN), ``label`` a label image whose object ``i + 1`` is detection ``i`` (the U-Net)."""

    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray
    masks: np.ndarray | None = None
    label: np.ndarray | None = None
    slices: list | None = None  # ndimage.find_objects of ``label``, when already at hand

    def instance_masks(self, threshold: float) -> Iterator[tuple[int, np.ndarray, int, int]]:
        """Each detection's binary mask with the image row and column of its top-left corner, surest first."""
        objects = None
        if self.label is not None:
            objects = self.slices if self.slices is not None else ndimage.find_objects(self.label)
        for i in np.argsort(-self.scores, kind="stable"):
            if objects is not None:
                sl = objects[i]
                if sl is not None:
                    yield int(i), self.label[sl] == i + 1, sl[0].start, sl[1].start
            elif self.masks is not None:
                yield int(i), self.masks[i] >= threshold, 0, 0


class Predictor:
    """Runs one model on whole images. Use :meth:`load`; see :class:`TiledPredictor` for large images."""

    def __init__(self, card: ModelCard, backend: Backend, directory: Path | None = None,
                 model=None) -> None:
        self.card = card
        self.config = card.config
        self.backend = backend
        self.directory = directory
        self._torch_model = model  # the torch model the backend was made from, when at hand
        self._post = None
        # the card's per-class calibration, applied to every detection (tiled or whole, any backend)
        self.score_thresholds = thresholds_by_index(card.score_calibration, card.class_names)

    @classmethod
    def load(cls, model: str | Path, backend: str = "torch", device: str = "auto", *, calibrated: bool = True,
             providers: Sequence[str] | None = None) -> Predictor:
        """The model (folder or name) on ``backend``: one of :data:`BACKENDS`; ``auto`` is the measured
        default of the model's kind on this device (:func:`default_backend`).

        ``calibrated=False`` leaves the card's score calibration out (to fit a new one on the model's own
        scores); ``providers`` chooses ONNX Runtime's execution providers (``onnx`` backends only).
        """
        directory = resolve_model(model)
        if backend == "torch":
            needs_torch("the torch backend needs torch; choose --backend auto, onnx or openvino")
            net, card = load_model(directory)
            predictor = cls(card, TorchBackend(net, card, device), directory, net)
        else:
            # the ONNX runtimes need the card only: the weights are read (with torch) only to export a graph
            card = ModelCard.from_file(directory / CARD_NAME)
            if backend == "auto":
                return cls.load(directory, default_backend(card, directory, device), device, calibrated=calibrated,
                                providers=providers)
            runtime, _, precision = backend.partition("-")
            if backend not in BACKENDS:
                raise CellCounterError(f"unknown backend {backend!r}: use {', '.join(BACKENDS)}")
            path = graph_path(directory, card, int8=precision == "int8")
            engine = (OnnxBackend(path, card, device, providers) if runtime == "onnx"
                      else OpenVinoBackend(path, card, device))
            predictor = cls(card, engine, directory)
        if not calibrated:
            predictor.score_thresholds = None
        return predictor

    @contextlib.contextmanager
    def using(self, backend: Backend) -> Iterator[Predictor]:
        """Run through ``backend`` within the block (a recorder of the network inputs, for int8 calibration)."""
        original, self.backend = self.backend, backend
        try:
            yield self
        finally:
            self.backend = original

    @property
    def torch_model(self):
        """The torch model this predictor was made from (torch backend), else ``None``."""
        return self._torch_model

    @property
    def model_version(self) -> str:
        return f"{self.card.name}@{self.card.version}"

    @property
    def description(self) -> str:
        return f"{self.model_version} via {self.backend.description}"

    def raw(self, image: np.ndarray) -> RawDetections:
        """Detector or segmenter outputs for one image (any size)."""
        kind = self.config.kind
        if kind == "grader":
            raise CellCounterError("a grader gives grades, not detections")
        if kind == "unet":
            return self._watershed(image)
        h, w = image.shape[:2]
        x, scale = detection_input(image, self.config.min_size, self.config.max_size)
        if self.backend.takes_network_input:
            out = self._network(x)
        else:  # a whole graph, post-processing included (Mask R-CNN)
            out = self.backend.run(x)
        classes = out["labels"].astype(np.int64) - (1 if kind == "segmenter" else 0)
        boxes = out["boxes"].astype(np.float64).reshape(-1, 4) / scale
        boxes = np.clip(boxes, 0, [w, h, w, h])
        masks = None
        if kind == "segmenter":
            masks = out["masks"][:, 0]
            if scale != 1.0 and len(masks):
                masks = resize_masks(masks, h, w)
        scores = out["scores"].astype(np.float64)
        if self.score_thresholds is not None:
            scores = calibrate_scores(scores, classes, self.score_thresholds)
        return RawDetections(boxes, scores, classes, masks)

    def _network(self, chw: np.ndarray) -> dict[str, np.ndarray]:
        """A detector's network on any backend, then its post-processing, the same after each."""
        from cellcounter.inference.detector_post import DetectorPostprocess, network_input

        if self._post is None:
            self._post = DetectorPostprocess(self.config)  # anchors and thresholds: the config, not the weights
        x = network_input(chw, self.config.image_mean, self.config.image_std)
        out = self.backend.run(x)
        return self._post(out["cls_logits"], out["bbox_regression"], x.shape[2:], chw.shape[1:])

    def maps(self, image: np.ndarray) -> np.ndarray:
        """A U-Net's ``(2, H, W)`` foreground and distance maps of ``image`` (padded by reflection to the
        network's multiple, then cropped back)."""
        chw = to_chw(image)
        h, w = chw.shape[1:]
        m = 2 ** self.config.depth
        ph, pw = (-h) % m, (-w) % m
        if ph or pw:
            chw = np.pad(chw, ((0, 0), (0, ph), (0, pw)), mode="reflect" if min(h, w) > m else "edge")
        if not self.config.flip_average:
            return self.backend.run(chw[None])["maps"][0, :, :h, :w]
        total = None
        for axes in ((), (2,), (1,), (1, 2)):  # the image and its three flips, each flipped back and averaged
            view = np.ascontiguousarray(np.flip(chw, axes) if axes else chw)
            out = self.backend.run(view[None])["maps"][0]
            out = np.flip(out, axes) if axes else out
            total = out if total is None else total + out
        return (total / 4)[:, :h, :w]

    def _watershed(self, image: np.ndarray) -> RawDetections:
        cfg = self.config
        fg, dist = self.maps(image)
        label, scores = instances_from_maps(fg, dist, cfg.fg_threshold, cfg.marker_threshold, cfg.min_area)
        slices = ndimage.find_objects(label)
        boxes = np.array([[sl[1].start, sl[0].start, sl[1].stop, sl[0].stop] for sl in slices],
                         np.float64).reshape(-1, 4)
        classes = np.zeros(len(scores), np.int64)
        if self.score_thresholds is not None:
            scores = calibrate_scores(scores, classes, self.score_thresholds)
        return RawDetections(boxes, scores, classes, None, label, slices)

    def grade_probabilities(self, image: np.ndarray) -> np.ndarray:
        cfg = self.config
        check_predictable(image.shape[0], image.shape[1], grader=True)
        logits = self.backend.run(grader_input(image, cfg))["logits"][0]
        e = np.exp(logits - logits.max())
        return e / e.sum()

    def explain(self, image: np.ndarray, target: int | None = None) -> tuple[np.ndarray, int]:
        """Heat map of a grader over ``image``: the class activation map from the graph on OpenVINO, Grad-CAM
        of the torch model otherwise (the same map for these graders' pooling + linear heads)."""
        if self.config.kind != "grader":
            raise CellCounterError("heat maps exist for graders only")
        if hasattr(self.backend, "class_activation"):
            from cellcounter.inference.heatmap import class_activation_heat

            return class_activation_heat(self.backend, self.config, image, target)
        from cellcounter.inference.gradcam import grad_cam

        if isinstance(self.backend, TorchBackend):
            model = self.backend.model
        else:
            needs_torch("the grade's heat map (Grad-CAM) needs torch")
            if self.directory is None:
                raise CellCounterError("no torch model at hand for the heat map: load the predictor from a folder")
            if self._torch_model is None:
                self._torch_model = load_model(self.directory)[0].eval()
            model = self._torch_model
        return grad_cam(model, self.config, image, target)

    def predict(self, image: np.ndarray, image_path: str = "image") -> ImageAnnotation:
        """Predictions for a whole image as an annotation (origin: model)."""
        h, w = image.shape[:2]
        check_predictable(h, w, self.config.kind == "grader")
        check_has_pixels(image)
        ann = ImageAnnotation(image_path, w, h, tuple(self.card.class_names), task=self.card.task,
                              model_version=self.model_version)
        if self.config.kind == "grader":
            p = self.grade_probabilities(image)
            ann.grade = Grade(int(np.argmax(p)), p, Origin.MODEL)
            return ann
        det = self.raw(image)
        n = len(det.scores)
        if self.config.kind == "detector":
            ann.boxes = Boxes(det.boxes, det.classes, det.scores, np.full(n, Origin.MODEL, np.uint8))
        else:
            ann.masks = masks_from_probabilities(det, (h, w), getattr(self.config, "mask_threshold", 0.5))
        return ann


class InstancePainter:
    """Paints predicted instances into one label image, surest first.

    An instance takes only the pixels no surer instance holds, and is dropped as a duplicate when it
    mostly repeats one already painted (intersection over union above ``duplicate_iou``): the same
    nucleus predicted twice by the model, or seen by two overlapping tiles.
    """

    def __init__(self, shape: tuple[int, int], duplicate_iou: float = 0.5) -> None:
        self.label = np.zeros(shape, np.int32)
        self.duplicate_iou = duplicate_iou
        self.classes: list[int] = []
        self.scores: list[float] = []
        self._areas: list[int] = [0]  # pixels held per instance id

    def paste(self, mask: np.ndarray, y0: int, x0: int, cls: int, score: float) -> None:
        """Add a binary ``mask`` whose top-left corner is at ``(y0, x0)`` of the image."""
        ys, xs = np.nonzero(mask)
        if len(ys) == 0:
            return
        ys, xs = ys + y0, xs + x0
        under = self.label[ys, xs]
        taken = under > 0
        if taken.any():
            ids, counts = np.unique(under[taken], return_counts=True)
            for k, n in zip(ids, counts):
                if n / (len(ys) + self._areas[k] - n) > self.duplicate_iou:
                    return
        ys, xs = ys[~taken], xs[~taken]
        if len(ys) == 0:
            return
        self.label[ys, xs] = len(self.classes) + 1
        self._areas.append(len(ys))
        self.classes.append(int(cls))
        self.scores.append(float(score))

    def result(self) -> InstanceMasks:
        n = len(self.classes)
        return InstanceMasks(self.label, np.arange(1, n + 1), np.array(self.classes, np.int64),
                             np.array(self.scores, np.float64), np.full(n, Origin.MODEL, np.uint8))


def masks_from_probabilities(det: RawDetections, shape: tuple[int, int], threshold: float) -> InstanceMasks:
    """Threshold soft masks and paint them surest first (see :class:`InstancePainter`)."""
    painter = InstancePainter(shape)
    for i, mask, y0, x0 in det.instance_masks(threshold):
        painter.paste(mask, y0, x0, det.classes[i], det.scores[i])
    return painter.result()


def resize_masks(masks: np.ndarray, height: int, width: int) -> np.ndarray:
    """Soft masks ``(N, h, w)`` back to the image size, one at a time to keep memory bounded."""
    from cellcounter.inference.preprocess import resize_bilinear

    out = np.empty((len(masks), height, width), dtype=np.float16)
    for i, m in enumerate(masks):
        out[i] = resize_bilinear(m[None], height, width)[0]
    return out
