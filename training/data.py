"""Training data: labelled images in the shared annotation model, made into torch samples.

Augmentation is torchvision.transforms.v2 on tv_tensors (boxes and masks follow
the pixels), plus Mosaic and GridMask from :mod:`training.augment`. Every
sample's randomness is seeded from (run seed, epoch, index), so a resumed run
sees exactly the batches an uninterrupted one would, with any number of workers.
"""

from __future__ import annotations

import random
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2

from cellcounter.annotations import ImageAnnotation
from cellcounter.errors import CellCounterError
from cellcounter.evaluate import select_ids, split_ids
from cellcounter.formats import read_labels
from cellcounter.imageio import read_image
from cellcounter.inference.preprocess import resize_scale, to_float_rgb, view_input
from cellcounter.tasks import get_task
from training.augment import GridMask, mosaic
from training.config import PROJECT_PREFIX, TrainConfig
from training.synthetic_leaves import VALIDATION_SEED, rosette_annotation

Loader = Callable[[], tuple[np.ndarray, ImageAnnotation]]


@dataclass
class Split:
    train: list[Loader]
    val: list[Loader]
    train_names: list[str]
    val_names: list[str]
    val_anns: list[ImageAnnotation] = field(default_factory=list)  # what ``val`` loads (its labels, unloaded)


IGNORE_LABEL = -1  # an ignore box travelling through the augmentations beside the labelled ones


def _file_loader(ann: ImageAnnotation, max_side: int = 0) -> Loader:
    cache: dict[str, np.ndarray] = {}

    def load() -> tuple[np.ndarray, ImageAnnotation]:
        if "img" not in cache:
            img = read_image(ann.image_path)
            if max_side and min(img.shape[:2]) > max_side:  # huge fundus photos: keep a smaller copy
                from PIL import Image

                s = max_side / min(img.shape[:2])
                rgb = (to_float_rgb(img) * 255).astype(np.uint8)
                img = np.asarray(Image.fromarray(rgb).resize((round(img.shape[1] * s), round(img.shape[0] * s)),
                                                             Image.BILINEAR))
            cache["img"] = img
        return cache["img"], ann

    return load


def _synthetic_loader(seed: int, size: int) -> Loader:
    return lambda: rosette_annotation(seed, size)


def load_split(cfg: TrainConfig, annotations: Sequence[ImageAnnotation] | None = None) -> Split:
    """Training and validation loaders from the config's data, val, ids and split settings.

    ``annotations`` (a project's reviewed labels, in memory) replace ``cfg.data`` as the one source; the
    config's ``val_split`` and seed still choose which of them validate.
    """
    task = get_task(cfg.task)
    if cfg.data == "synthetic":
        if cfg.task != "leaves":
            raise CellCounterError("synthetic data exists for the leaves task only")
        n_tr = cfg.limit_images or cfg.synthetic_train
        tr = [_synthetic_loader(cfg.seed * 1_000_003 + i, cfg.synthetic_size) for i in range(n_tr)]
        va = [_synthetic_loader(VALIDATION_SEED + i, cfg.synthetic_size) for i in range(cfg.synthetic_val)]
        return Split(tr, va, [f"synthetic:{cfg.seed * 1_000_003 + i}" for i in range(n_tr)],
                     [f"synthetic:{VALIDATION_SEED + i}" for i in range(cfg.synthetic_val)])
    if not cfg.data and annotations is None:
        raise CellCounterError("no training data given (--data PATH)")
    train: list[ImageAnnotation] = []
    val: list[ImageAnnotation] = []
    if annotations is None and cfg.data.startswith(PROJECT_PREFIX):  # a resumed project run: its reviewed labels
        from cellcounter.project.store import Project
        from cellcounter.project.workflows import training_set

        with Project.open(cfg.data[len(PROJECT_PREFIX):], readonly=True) as proj:
            annotations = training_set(proj, cfg.task)
    if annotations is not None:
        train, val = _held_out(cfg, [a for a in annotations if Path(a.image_path).is_file()])
    else:
        for data in [Path(d.strip()) for d in cfg.data.split(",") if d.strip()]:
            tr, va = _source_split(cfg, data, task.class_names)
            train += tr
            val += va
    if cfg.val:
        val = _labelled(Path(cfg.val), task.class_names)
    if cfg.limit_images:
        train = train[: cfg.limit_images]
    if not train:
        raise CellCounterError(f"{cfg.data}: no training images with labels found")
    train_loaders, train_names = training_loaders(cfg, train)
    return Split(train_loaders, validation_loaders(cfg, val), train_names, [a.image_path for a in val], list(val))


def _max_side(cfg: TrainConfig) -> int:
    return int(cfg.input_size * 1.25) if get_task(cfg.task).kind == "grade" else 0


def training_loaders(cfg: TrainConfig, anns: Sequence[ImageAnnotation]) -> tuple[list[Loader], list[str]]:
    """One loader per training sample (an image visited once per crop it holds) and its image path."""
    loaders, names = [], []
    for a in anns:
        loader = _file_loader(a, _max_side(cfg))
        for _ in range(_crops_per_image(cfg, a)):  # the same loader: the image is read and cached once
            loaders.append(loader)
            names.append(a.image_path)
    return loaders, names


def validation_loaders(cfg: TrainConfig, anns: Sequence[ImageAnnotation]) -> list[Loader]:
    return [_file_loader(a, _max_side(cfg)) for a in anns]


def _source_split(cfg: TrainConfig, data: Path, class_names) -> tuple[list[ImageAnnotation], list[ImageAnnotation]]:
    """One data source's training and validation annotations (ids, or a seeded random hold-out)."""
    anns = sorted(_labelled(data, class_names), key=lambda a: a.image_path)
    train = select_ids(anns, split_ids(data, cfg.train_ids)) if cfg.train_ids else anns
    if cfg.val:
        return train, []
    if cfg.val_ids:
        return train, select_ids(anns, split_ids(data, cfg.val_ids))
    return _held_out(cfg, train)


def _held_out(cfg: TrainConfig, train: list[ImageAnnotation]) -> tuple[list[ImageAnnotation], list[ImageAnnotation]]:
    """A seeded random ``val_split`` share of the images held out for validation."""
    if cfg.val:
        return train, []
    rng = np.random.default_rng(cfg.seed)
    order = rng.permutation(len(train))
    n_val = int(round(len(train) * cfg.val_split))
    if cfg.val_split > 0 and len(train) >= 2:
        n_val = max(n_val, 1)  # a few reviewed images still get a validation image
    return [train[i] for i in sorted(order[n_val:])], [train[i] for i in sorted(order[:n_val])]


def _labelled(path: Path, class_names) -> list[ImageAnnotation]:
    """The annotations at ``path`` whose image exists."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # readers' warnings were shown when the data was converted/inspected
        return [a for a in read_labels(path, None, class_names) if Path(a.image_path).is_file()]


def _crops_per_image(cfg: TrainConfig, ann: ImageAnnotation) -> int:
    """With random crops, how often an image is visited per epoch: about its area in crops.

    A 1000 x 1000 tile then weighs as much as fifteen 256 x 256 crops of it, not as one small image.
    """
    if not cfg.random_crop:
        return 1
    from cellcounter.imageio import image_size

    w, h = image_size(ann.image_path)
    return max(1, round(h * w / cfg.random_crop**2))


def _colour(cfg: TrainConfig) -> list:
    if cfg.brightness or cfg.contrast or cfg.saturation or cfg.hue:
        return [v2.ColorJitter(cfg.brightness, cfg.contrast, cfg.saturation, cfg.hue)]
    return []


def _flips(cfg: TrainConfig) -> list:
    out = []
    if cfg.hflip:
        out.append(v2.RandomHorizontalFlip(cfg.hflip))
    if cfg.vflip:
        out.append(v2.RandomVerticalFlip(cfg.vflip))
    return out


class _Seeded(Dataset):
    def __init__(self, loaders: Sequence[Loader], cfg: TrainConfig, train: bool) -> None:
        self.loaders = list(loaders)
        self.cfg = cfg
        self.train = train
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.loaders)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __getitem__(self, i: int):
        seed = (self.cfg.seed * 1_000_003 + self.epoch * 10_007 + i) % (2**32)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            random.seed(seed)
            return self.sample(i, np.random.default_rng(seed))

    def sample(self, i: int, rng: np.random.Generator):
        raise NotImplementedError


class DetectionResize:
    """The resize prediction applies (:func:`~cellcounter.inference.preprocess.detection_input`), as a v2 step:
    the same output size (:func:`~cellcounter.inference.preprocess.resize_scale`, rounded alike) and the same
    interpolation (bilinear, pixel centres aligned, no antialias), so a model trains on the pixels it is
    shown; boxes and masks follow."""

    def __init__(self, min_size: int, max_size: int) -> None:
        self.min_size, self.max_size = min_size, max_size

    def __call__(self, *inputs):
        h, w = inputs[0].shape[-2:]
        scale = resize_scale(h, w, self.min_size, self.max_size)
        if abs(scale - 1.0) < 1e-6:
            return inputs if len(inputs) > 1 else inputs[0]
        size = [max(1, round(h * scale)), max(1, round(w * scale))]
        return v2.Resize(size, antialias=False)(*inputs)


def _image_tensor(img: np.ndarray) -> tv_tensors.Image:
    return tv_tensors.Image(torch.from_numpy(to_float_rgb(img).transpose(2, 0, 1).copy()))


class DetectionDataset(_Seeded):
    """Images with boxes: ``(image (3, H, W) float, {"boxes", "labels"[, "ignore"]})``; labels 0-based (RetinaNet).

    ``ignore`` (image path to ``x1 y1 x2 y2`` boxes) marks unlabelled objects the loss must skip; they follow
    every augmentation as boxes of label -1 and come out as the target's ``ignore``.
    """

    def __init__(self, loaders, cfg, train, ignore: dict[str, np.ndarray] | None = None):
        super().__init__(loaders, cfg, train)
        self.ignore = ignore or {}
        steps: list = []
        if train:
            steps += _flips(cfg) + _colour(cfg)
            if cfg.gridmask_p:
                steps.append(GridMask(cfg.gridmask_p, cfg.gridmask_ratio, cfg.gridmask_rotate, cfg.gridmask_d_min,
                                      cfg.gridmask_d_max))
        if cfg.min_size > 0:
            steps.append(DetectionResize(cfg.min_size, cfg.max_size))
        steps.append(v2.SanitizeBoundingBoxes(min_size=1.0))
        self.transform = v2.Compose(steps)

    def _raw(self, i: int):
        img, ann = self.loaders[i]()
        ignore = self.ignore.get(ann.image_path, np.zeros((0, 4)))
        boxes = np.concatenate([ann.boxes.xyxy.reshape(-1, 4), ignore.reshape(-1, 4)])
        labels = np.concatenate([ann.boxes.classes, np.full(len(ignore), IGNORE_LABEL)])
        return _image_tensor(img), {"boxes": torch.as_tensor(boxes, dtype=torch.float32),
                                    "labels": torch.as_tensor(labels, dtype=torch.int64)}

    def sample(self, i, rng):
        if self.train and self.cfg.mosaic_p and rng.random() < self.cfg.mosaic_p and len(self) >= 4:
            others = rng.choice([j for j in range(len(self)) if j != i], size=3, replace=False)
            size = max(self.cfg.min_size, 256) if self.cfg.min_size > 0 else 512
            image, target = mosaic([self._raw(j) for j in [i, *others]], size, rng)
            image = tv_tensors.Image(image)
        else:
            image, target = self._raw(i)
        h, w = image.shape[-2:]
        boxes = tv_tensors.BoundingBoxes(target["boxes"], format="XYXY", canvas_size=(h, w))
        image, out = self.transform(image, {"boxes": boxes, "labels": target["labels"]})
        b, lab = out["boxes"].as_subclass(torch.Tensor), out["labels"]
        labelled = lab != IGNORE_LABEL
        target = {"boxes": b[labelled], "labels": lab[labelled]}
        if self.ignore:
            target["ignore"] = b[~labelled]
        return image.as_subclass(torch.Tensor), target


class InstanceDataset(_Seeded):
    """Images with instance masks: ``{"boxes", "labels" (1-based), "masks" (N, H, W)}`` for Mask R-CNN."""

    def __init__(self, loaders, cfg, train):
        super().__init__(loaders, cfg, train)
        steps: list = []
        if train:
            if cfg.random_crop:
                steps.append(v2.RandomCrop(cfg.random_crop, pad_if_needed=True))
            if cfg.multiscale:
                steps.append(v2.RandomShortestSize(list(cfg.multiscale), antialias=True))
            steps += _flips(cfg) + _colour(cfg)
        if cfg.min_size > 0:
            steps.append(DetectionResize(cfg.min_size, cfg.max_size))
        steps.append(v2.SanitizeBoundingBoxes(min_size=1.0))
        self.transform = v2.Compose(steps)

    def sample(self, i, rng):
        img, ann = self.loaders[i]()
        m = ann.masks.relabelled() if ann.masks is not None else None
        h, w = img.shape[:2]
        if m is None or len(m) == 0:
            masks = torch.zeros((0, h, w), dtype=torch.uint8)
            boxes = torch.zeros((0, 4))
            labels = torch.zeros(0, dtype=torch.int64)
        else:
            ids = torch.arange(1, len(m) + 1)[:, None, None]
            masks = (torch.from_numpy(m.label_image)[None] == ids).to(torch.uint8)
            boxes = torch.as_tensor(m.bounding_boxes().xyxy, dtype=torch.float32)
            labels = torch.as_tensor(m.classes + 1, dtype=torch.int64)
        target = {"boxes": tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=(h, w)),
                  "masks": tv_tensors.Mask(masks), "labels": labels}
        image, out = self.transform(_image_tensor(img), target)
        # boxes follow the masks exactly (a crop can cut an instance; its box must shrink with it)
        mk = out["masks"].as_subclass(torch.Tensor)
        keep = mk.flatten(1).any(1).bool() if len(mk) else torch.zeros(0, dtype=torch.bool)
        mk = mk[keep]
        b = _mask_boxes(mk)
        return image.as_subclass(torch.Tensor), {"boxes": b, "labels": out["labels"][keep], "masks": mk}


def _mask_boxes(masks: torch.Tensor) -> torch.Tensor:
    if len(masks) == 0:
        return torch.zeros((0, 4))
    from torchvision.ops import masks_to_boxes

    b = masks_to_boxes(masks)
    b[:, 2:] += 1  # pixel-edge coordinates: the box covers the last pixel
    return b


class GradeDataset(_Seeded):
    """Images with a grade: ``(image (3, S, S) normalised, grade)``.

    Each image goes through :func:`~cellcounter.inference.preprocess.grader_view`, the function
    prediction uses (fundus crop, resize, local contrast as the card says), then the augmentation,
    then the same centre crop and normalisation (:func:`~cellcounter.inference.preprocess.view_input`): never
    stretched.
    """

    def __init__(self, loaders, cfg, train, model_cfg):
        super().__init__(loaders, cfg, train)
        self.model_cfg = model_cfg
        grey = 0.5 if model_cfg.local_contrast > 0 else 0.0  # what the view's surround is
        steps: list = []
        if train:
            if cfg.rotate:
                steps.append(v2.RandomRotation(cfg.rotate, fill=grey))
            steps += _flips(cfg) + _colour(cfg)
        self.transform = v2.Compose(steps) if steps else None  # the centre crop and normalisation: view_input
        self._views: dict[int, np.ndarray] = {}

    def grade(self, i: int) -> int:
        return int(self.loaders[i]()[1].grade.value)

    def _view(self, i: int) -> np.ndarray:
        from cellcounter.inference.preprocess import grader_view

        if i not in self._views:  # deterministic: computed once per image, kept at half precision
            self._views[i] = grader_view(self.loaders[i]()[0], self.model_cfg)[0].astype(np.float16)
        return self._views[i]

    def sample(self, i, rng):
        _, ann = self.loaders[i]()
        if ann.grade is None:
            raise CellCounterError(f"{ann.image_path}: no grade")
        view = self._view(i).astype(np.float32)
        if self.transform is not None:
            moved = self.transform(tv_tensors.Image(torch.from_numpy(view).permute(2, 0, 1)))
            view = moved.as_subclass(torch.Tensor).permute(1, 2, 0).numpy()
        return torch.from_numpy(view_input(view, self.model_cfg)[0]), int(ann.grade.value)


def collate_lists(batch):
    return [b[0] for b in batch], [b[1] for b in batch]


def collate_grades(batch):
    return torch.stack([b[0] for b in batch]), torch.tensor([b[1] for b in batch])
