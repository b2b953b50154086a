"""What differs between model kinds in a training run, in one place per kind.

torchvision's detection references keep one engine and let each task bring its dataset, collate and losses;
here :class:`KindAdapter` is that seam: :func:`iter_training` asks :func:`adapter_for` and never branches on
the kind itself. The key metric per kind is :func:`cellcounter.evaluate.key_metric`, which validation,
checkpoint choice, the int8 verdict and the activation gate all use.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from cellcounter.errors import CellCounterError
from training.config import TrainConfig
from training.data import DetectionDataset, GradeDataset, InstanceDataset, Loader, collate_grades, collate_lists

Losses = dict[str, torch.Tensor]


@dataclass(frozen=True)
class KindAdapter:
    """One model kind's part of a training run.

    ``dataset(loaders, cfg, model_cfg, ignore)`` makes the training set (``ignore``: unlabelled-object boxes per
    image, detectors only); ``collate`` batches it; ``losses(model, batch, device, class_loss)`` runs one batch
    and returns the named losses (``class_loss``: the class-weighted cross entropy of graders).
    """

    name: str
    dataset: Callable[[Sequence[Loader], TrainConfig, object, dict | None], Dataset]
    collate: Callable
    losses: Callable[[nn.Module, object, str, nn.Module], Losses]
    finds_unlabelled: bool = False  # ``ignore_unlabelled`` applies (objects the labels miss, skipped by the loss)
    drop_block: bool = False  # ScheduledDropBlock on the trunk applies
    grades: bool = False  # samples carry an image-level grade (class weights from their frequencies)


def _list_losses(model: nn.Module, batch, device: str, _class_loss) -> Losses:
    images, targets = batch
    images = [im.to(device) for im in images]
    targets = [{k: v.to(device) for k, v in t.items()} for t in targets]
    return model(images, targets)


def _dense_losses(model: nn.Module, batch, device: str, _class_loss) -> Losses:
    x, maps = batch
    return model(x.to(device), {k: v.to(device) for k, v in maps.items()})


def _grade_losses(model: nn.Module, batch, device: str, class_loss: nn.Module) -> Losses:
    x, y = batch
    return {"cross_entropy": class_loss(model(x.to(device)), y.to(device))}


def _dense_dataset(loaders, cfg, _model_cfg, _ignore):
    from training.dense import DenseDataset

    return DenseDataset(loaders, cfg, train=True)


def _dense_collate(batch):
    from training.dense import collate_dense

    return collate_dense(batch)


ADAPTERS = {
    "detector": KindAdapter("detector", lambda loaders, cfg, _m, ignore: DetectionDataset(loaders, cfg, True, ignore),
                            collate_lists, _list_losses, finds_unlabelled=True, drop_block=True),
    "segmenter": KindAdapter("segmenter", lambda loaders, cfg, _m, _i: InstanceDataset(loaders, cfg, True),
                             collate_lists, _list_losses),
    "unet": KindAdapter("unet", _dense_dataset, _dense_collate, _dense_losses),
    "grader": KindAdapter("grader", lambda loaders, cfg, model_cfg, _i: GradeDataset(loaders, cfg, True, model_cfg),
                          collate_grades, _grade_losses, grades=True),
}


def adapter_for(model_kind: str) -> KindAdapter:
    """The adapter of a model's kind (its card's ``config.kind``: detector, segmenter, unet, grader)."""
    return ADAPTERS[model_kind]


def class_weights(cfg: TrainConfig, grades: list[int], n: int) -> torch.Tensor | None:
    """A grader's cross-entropy weights: ``cfg.class_weights`` as given, else inverse class frequencies when
    ``cfg.class_weighted_loss``, else None."""
    if cfg.class_weights:
        if len(cfg.class_weights) != n:
            raise CellCounterError(f"class_weights needs {n} values, got {len(cfg.class_weights)}")
        return torch.tensor(cfg.class_weights, dtype=torch.float32)
    if not cfg.class_weighted_loss:
        return None
    counts = np.bincount(np.asarray(grades), minlength=n).astype(float)
    w = np.where(counts > 0, counts.sum() / (n * np.maximum(counts, 1)), 0.0)
    return torch.tensor(w, dtype=torch.float32)
