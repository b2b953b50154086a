"""The training configuration: one typed dataclass, saved beside every output, mapped 1:1 onto CLI flags."""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cellcounter.annotations import DEFAULT_SCORE_THRESHOLD
from cellcounter.errors import CellCounterError

PROJECT_PREFIX = "project:"  # data="project:PATH": the reviewed images of a project


@dataclass
class TrainConfig:
    """Everything that decides a training run. ``recipe`` fills the defaults; any field set explicitly wins.

    Steps and iterations count optimiser updates (batches), not images.
    """

    # what and where
    task: str = "blood"
    data: str = ""  # labelled folder(s) or file(s) in any readable layout, comma-separated; "synthetic" for leaves
    out: str = "runs/model"
    recipe: str = ""  # a name from training.recipes.RECIPES
    val: str = ""  # a separate labelled folder/file for validation
    val_split: float = 0.2  # fraction held out when neither val nor val_ids is given
    train_ids: str = ""  # name of a split file in the data folder (e.g. "train" for train.txt)
    val_ids: str = ""  # likewise for validation (e.g. "val")
    limit_images: int = 0  # use only the first N training images (0: all); for quick runs and tests
    synthetic_train: int = 2000  # leaves: rosettes generated for training
    synthetic_val: int = 100  # leaves: fixed validation set
    synthetic_size: int = 256

    # model
    init: str = "none"  # none | imagenet | a model folder or name to fine-tune (its weights are the parent)
    init_weights: str = ""  # local ImageNet weights file for init=imagenet (offline machines)
    name: str = ""  # name of the model written (default: from task)
    architecture: str = ""  # masks: "maskrcnn" (the default) or "unet" (foreground + distance maps, watershed)
    backbone: str = "resnet18"
    unet_width: int = 32  # unet: channels of the first level
    min_size: int = 480
    max_size: int = 640
    input_size: int = 384  # grader
    fundus_crop: bool = False  # grader: crop fundus photos to the fundus before resizing
    local_contrast: float = 0.0  # grader: subtract the local average colour (sigma as a fraction of input_size)
    fpn_channels: int = 256
    representation_size: int = 1024
    anchor_sizes: tuple[int, ...] = ()
    anchor_scales: tuple[float, ...] = ()
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    prior_probability: float = 0.01
    frozen_bn: bool = True
    detections_per_img: int = 0  # 0: the model kind's default
    ignore_unlabelled: str = ""  # boxes: a model whose confident detections overlapping no label the loss skips
    ignore_min_score: float = 0.5  # boxes: the score (after the model's calibration) that makes such a detection

    # optimisation
    epochs: int = 10
    max_steps: int = 0  # stop after this many steps (0: run all epochs)
    time_budget_min: float = 0.0  # end the run after this many minutes, writing the best model so far (0: none)
    batch_size: int = 4
    optimizer: str = "sgd"  # sgd | adamw | adagrad
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 1e-4
    scheduler: str = "sgdr"  # sgdr | step | constant
    warmup_iters: int = 100
    sgdr_t0: int = 500  # iterations to the first restart
    sgdr_t_mult: int = 2
    sgdr_eta_min: float = 1e-5
    step_milestones: tuple[float, ...] = (0.7, 0.9)  # fractions of all steps
    step_gamma: float = 0.1
    heads_only_epochs: int = 0  # stage 1: train heads with the backbone frozen
    trunk_lr: float = 1.0  # the trunk's learning rate as a fraction of lr (below 1 keeps more of a start model)
    rehearsal: float = 0.0  # fine-tunes: share of the training images drawn from the start model's own training data
    rehearsal_data: str = ""  # fine-tunes: a labelled folder to rehearse instead (e.g. old labs, fully labelled)
    rehearsal_ids: str = ""  # fine-tunes: which of rehearsal_data's images (a split name or ids file; default all)
    base_check: int = 30  # fine-tunes: score start and new model on up to N of the start model's val images (0: off)
    class_weighted_loss: bool = False  # grader
    class_weights: tuple[float, ...] = ()  # grader: given weights (else from label frequencies)
    balanced_sampling: bool = False  # grader
    grad_clip: float = 10.0

    # augmentation
    hflip: float = 0.5
    vflip: float = 0.5
    brightness: float = 0.1
    contrast: float = 0.1
    saturation: float = 0.1
    hue: float = 0.02
    rotate: float = 0.0  # grader: degrees
    mosaic_p: float = 0.0
    gridmask_p: float = 0.0
    gridmask_ratio: float = 0.5
    gridmask_rotate: float = 0.0
    gridmask_d_min: int = 32
    gridmask_d_max: int = 96
    dropblock_level: str = ""  # "" off; P3, P4, P5, P6 or P7
    dropblock_size: int = 3
    dropblock_prob: float = 0.1  # reached linearly at the end of training
    random_crop: int = 0  # segmenter: crop to this size before resizing (0: off)
    multiscale: tuple[int, ...] = ()  # segmenter: shorter sides to pick from (multiples of 32)
    rot90: bool = False  # unet: random quarter turns
    scale_jitter: float = 0.0  # unet: zoom in or out by up to this fraction
    stain_jitter: float = 0.0  # unet: scale and shift H&E stain densities by up to this fraction

    # running
    device: str = "auto"
    seed: int = 0
    num_workers: int = 0
    checkpoint_every: int = 200
    eval_every_epochs: int = 1
    resume: bool = False
    export_onnx: bool = False
    half: bool = False  # store weights in float16
    keep_checkpoints: bool = True  # keep checkpoints/ when the run has written its model (resuming needs them)
    count_threshold: float = DEFAULT_SCORE_THRESHOLD
    calibrate: bool = True  # boxes and masks: fit per-class score thresholds on the validation images (5 or more)
    plan: str = ""  # how a fine-tune's length was chosen (training.recipes.finetune_plan), for the card
    recipe_applied: bool = False  # set once the recipe's settings are filled in (not a user setting)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2)

    def check(self) -> TrainConfig:
        """Raise, naming the setting, where a value makes no sense (a negative epoch count, a NaN learning
        rate...): such a run would end at once or diverge and still write a model."""
        from cellcounter.tasks import TASKS

        if self.task not in TASKS:
            raise CellCounterError(f"unknown task {self.task!r}; known: {', '.join(TASKS)}")
        from cellcounter.models.config import BACKBONES

        choices = {"optimizer": ("sgd", "adamw", "adagrad"), "scheduler": ("sgdr", "step", "constant"),
                   "backbone": BACKBONES, "architecture": ("", "maskrcnn", "unet"),
                   "dropblock_level": ("", "P3", "P4", "P5", "P6", "P7")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise CellCounterError(f"{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        for name, (low, high, open_low) in _RANGES.items():
            value = getattr(self, name)
            for v in value if isinstance(value, tuple) else (value,):
                bad = not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v)
                bad = bad or v < low or (open_low and v == low) or (high is not None and v > high)
                if bad:
                    where = f"above {low}" if open_low else f"at least {low}"
                    raise CellCounterError(f"{name} must be {where}" + (f" and at most {high}" if high is not None
                                                                          else "") + f", got {v!r}")
        if self.max_size and self.min_size > self.max_size:
            raise CellCounterError(f"min_size ({self.min_size}) must not exceed max_size ({self.max_size})")
        if self.gridmask_d_min > self.gridmask_d_max:
            raise CellCounterError(f"gridmask_d_min ({self.gridmask_d_min}) must not exceed gridmask_d_max "
                                   f"({self.gridmask_d_max})")
        return self

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        hints = typing.get_type_hints(cls)
        unknown = set(d) - set(hints)
        if unknown:
            raise CellCounterError(f"unknown training setting(s): {', '.join(sorted(unknown))}")
        return cls(**{k: tuple(v) if "tuple" in str(hints[k]) else v for k, v in d.items()})

    @classmethod
    def load(cls, path: str | Path) -> TrainConfig:
        return cls.from_dict(json.loads(Path(path).read_text()))


_P = (0.0, 1.0, False)  # a probability or share
# (lowest, highest or None, whether the lowest itself is refused)
_RANGES: dict[str, tuple[float, float | None, bool]] = {
    "epochs": (1, None, False), "max_steps": (0, None, False), "time_budget_min": (0, None, False),
    "batch_size": (1, 4096, False),
    "lr": (0, 10, True), "momentum": (0, 1, False), "weight_decay": (0, 1, False), "warmup_iters": (0, None, False),
    "sgdr_t0": (1, None, False), "sgdr_t_mult": (1, 100, False), "sgdr_eta_min": (0, 10, False),
    "step_milestones": _P, "step_gamma": (0, 1, True), "heads_only_epochs": (0, None, False),
    "trunk_lr": (0, 1, True), "rehearsal": (0, 0.9, False), "base_check": (0, None, False),
    "grad_clip": (0, None, False), "val_split": (0, 0.9, False), "limit_images": (0, None, False),
    "synthetic_train": (1, None, False), "synthetic_val": (1, None, False), "synthetic_size": (32, 4096, False),
    "unet_width": (1, 512, False), "min_size": (0, 8192, False), "max_size": (0, 8192, False),
    "input_size": (16, 4096, False), "local_contrast": (0, 10, False), "fpn_channels": (1, 4096, False),
    "representation_size": (1, 65536, False), "anchor_sizes": (1, 65536, False), "anchor_scales": (1e-3, 1e3, False),
    "focal_alpha": _P, "focal_gamma": (0, 100, False), "prior_probability": (0, 1, True),
    "detections_per_img": (0, 1_000_000, False), "ignore_min_score": _P, "class_weights": (0, 1e6, False),
    "hflip": _P, "vflip": _P, "brightness": _P, "contrast": _P, "saturation": _P, "hue": (0, 0.5, False),
    "rotate": (0, 180, False), "mosaic_p": _P, "gridmask_p": _P, "gridmask_ratio": _P,
    "gridmask_rotate": (0, 360, False),
    "gridmask_d_min": (1, None, False), "gridmask_d_max": (1, None, False), "dropblock_size": (1, 64, False),
    "dropblock_prob": _P, "random_crop": (0, 8192, False), "multiscale": (32, 8192, False),
    "scale_jitter": (0, 0.9, False), "stain_jitter": (0, 0.9, False), "seed": (0, None, False),
    "num_workers": (0, 256, False), "checkpoint_every": (0, None, False), "eval_every_epochs": (1, None, False),
    "count_threshold": _P,
}


def field_help() -> dict[str, str]:
    """The trailing comment of each field, for the CLI's --help (none where the source is not at hand)."""
    import inspect

    try:
        src = inspect.getsource(TrainConfig)
    except (OSError, TypeError):  # a frozen build without the file: the options stay, their help goes
        return {}
    out = {}
    for line in src.splitlines():
        line = line.strip()
        if ":" in line and "#" in line and "=" in line and not line.startswith(("#", '"')):
            name = line.split(":", 1)[0].strip()
            out[name] = line.split("#", 1)[1].strip()
    return out


__all__ = ["TrainConfig", "field", "field_help"]
