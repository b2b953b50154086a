"""Named recipes: the training settings of the studies the product comes from, each piece switchable.

A recipe only fills settings the user left at their defaults; anything set
explicitly (a CLI flag, a field passed in code) wins.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from cellcounter.errors import CellCounterError
from cellcounter.models.config import BLOOD_ANCHOR_SCALES
from training.config import TrainConfig

_BLOOD_BASE: dict[str, Any] = {
    "task": "blood", "backbone": "resnet18", "min_size": 480, "max_size": 640,
    "focal_alpha": 0.25, "focal_gamma": 2.0, "prior_probability": 0.01, "frozen_bn": True,
    "optimizer": "sgd", "lr": 0.01, "momentum": 0.9, "weight_decay": 1e-4,
    "scheduler": "sgdr", "warmup_iters": 100, "sgdr_t0": 500, "sgdr_t_mult": 2, "sgdr_eta_min": 1e-5,
    "hflip": 0.5, "vflip": 0.5, "brightness": 0.1, "contrast": 0.1, "saturation": 0.1, "hue": 0.02,
    "batch_size": 4, "epochs": 30,
}

RECIPES: dict[str, dict[str, Any]] = {
    # Blood-cell study: RetinaNet with focal loss, an extra small anchor scale, frozen BN, SGDR,
    # Mosaic, then GridMask, and DropBlock on P3.
    "blood-detector": {**_BLOOD_BASE, "anchor_scales": BLOOD_ANCHOR_SCALES, "mosaic_p": 0.5, "gridmask_p": 0.5,
                       "gridmask_ratio": 0.4, "gridmask_rotate": 45.0, "dropblock_level": "P3",
                       "dropblock_size": 3, "dropblock_prob": 0.1},
    # The same without the tricks, with RetinaNet's usual three scales: the ablation's baseline.
    "blood-baseline": {**_BLOOD_BASE, "anchor_scales": (1.0, 2 ** (1 / 3), 2 ** (2 / 3))},
    # Nuclei study: Mask R-CNN with small anchors, crops, multiples of 32, saturation jitter, flips,
    # warmup then step decay, heads first then all layers.
    "nuclei-maskrcnn": {
        "task": "nuclei", "backbone": "resnet18", "min_size": 0, "max_size": 0, "anchor_sizes": (8, 16, 32, 64, 128),
        "detections_per_img": 1000, "representation_size": 256, "random_crop": 256,
        "multiscale": (224, 256, 288, 320), "saturation": 0.3, "brightness": 0.1, "contrast": 0.1, "hue": 0.0,
        "hflip": 0.5, "vflip": 0.5, "optimizer": "sgd", "lr": 0.01, "momentum": 0.9, "weight_decay": 1e-4,
        "scheduler": "step", "warmup_iters": 100, "step_milestones": (0.7, 0.9), "step_gamma": 0.1,
        "heads_only_epochs": 1, "batch_size": 2, "epochs": 20,
    },
    # Nuclei, the U-Net family (DIST, StarDist, HoVer-Net): foreground and distance-to-edge maps, split by a
    # watershed; native resolution, crops weighted by area, quarter turns, scale and H&E stain jitter.
    "nuclei-unet": {
        "task": "nuclei", "architecture": "unet", "unet_width": 16, "min_size": 0, "max_size": 0,
        "random_crop": 256, "rot90": True, "scale_jitter": 0.2, "stain_jitter": 0.05, "hflip": 0.5, "vflip": 0.5,
        "brightness": 0.1, "contrast": 0.1, "saturation": 0.1, "hue": 0.02, "optimizer": "adamw", "lr": 2e-3,
        "weight_decay": 1e-4, "scheduler": "step", "warmup_iters": 100, "step_milestones": (0.7, 0.9),
        "step_gamma": 0.1, "batch_size": 8, "epochs": 60, "frozen_bn": False,
    },
    "leaves-maskrcnn": {
        "task": "leaves", "data": "synthetic", "backbone": "resnet18", "min_size": 0, "max_size": 0,
        "anchor_sizes": (8, 16, 32, 64, 128), "detections_per_img": 100, "representation_size": 256,
        "saturation": 0.3, "hflip": 0.5, "vflip": 0.5, "optimizer": "sgd", "lr": 0.01, "scheduler": "step",
        "warmup_iters": 100, "step_milestones": (0.7, 0.9), "heads_only_epochs": 1, "batch_size": 4, "epochs": 10,
    },
    # DR grading: class-weighted loss, resize + centre crop without distortion, rotations and flips,
    # frozen-backbone feature extraction first when the backbone is pretrained.
    "dr-grader": {
        "task": "retinopathy", "backbone": "resnet18", "input_size": 384, "fundus_crop": True, "local_contrast": 1 / 30,
        "class_weighted_loss": True,
        "rotate": 180.0, "hflip": 0.5, "vflip": 0.5, "brightness": 0.1, "contrast": 0.1, "saturation": 0.05,
        "hue": 0.0, "optimizer": "adamw", "lr": 3e-4, "weight_decay": 1e-4, "scheduler": "step",
        "warmup_iters": 20, "step_milestones": (0.7, 0.9), "batch_size": 8, "epochs": 30,
    },
}

#: A fine-tune's length over its recipe: steps per corrected image, within (fewest, most). A from-scratch recipe's
#: epochs are made for hundreds of images; a correction session brings 5 to 50, and a fixed 10 epochs gives 5
#: images 10 steps and 50 images 130. Blood from the new-lab benchmark (docs/performance.md: 20 smears of a lab
#: the model never saw, 40 steps and 80 steps counted alike, 1.65 and 1.59 per image from 10.31); the grader's
#: 20 steps for 20 photos is what gained there (QWK 0.709 -> 0.738); nuclei and leaves are not measured yet.
FINETUNE_STEPS = {"blood": (2, 40, 160), "nuclei": (30, 60, 300), "leaves": (2, 40, 160), "retinopathy": (1, 20, 100)}
#: validations per fine-tune (the best by count error is kept): enough to stop early, few enough to stay cheap
FINETUNE_EVALS = 8


def finetune_plan(task: str, images: int, batch_size: int, val_split: float) -> dict[str, Any]:
    """The epochs, step limit and validation cadence of a fine-tune on ``images`` corrected images, with a
    line saying how they were chosen (the card records it)."""
    per_image, low, high = FINETUNE_STEPS.get(task, (4, 40, 160))
    steps = int(min(high, max(low, per_image * images)))
    n_train = max(1, images - (int(round(images * val_split)) if images >= 2 else 0))
    epochs = max(1, -(-steps // max(1, -(-n_train // batch_size))))  # whole images per step: at least this
    return {"epochs": epochs, "max_steps": steps, "eval_every_epochs": max(1, epochs // FINETUNE_EVALS),
            "plan": f"{per_image} steps per corrected image within {low}-{high}: {steps} steps for {images} images"}


DEFAULT_RECIPE = {"blood": "blood-detector", "nuclei": "nuclei-maskrcnn", "leaves": "leaves-maskrcnn",
                  "retinopathy": "dr-grader"}


def default_recipe(task: str, init: str | None = "none", architecture: str = "") -> str:
    """The task's recipe, or its U-Net recipe when the architecture (asked for, or the start model's) is a U-Net."""
    arch = architecture
    if not arch and (init or "none") not in ("none", "imagenet"):
        from cellcounter.models.card import read_card

        arch = read_card(init).architecture.get("kind", "")
    if arch == "unet" and f"{task}-unet" in RECIPES:
        return f"{task}-unet"
    return DEFAULT_RECIPE.get(task, "")


# What a model sees (its card's preprocessing): a fine-tune keeps its parent's unless told otherwise.
GEOMETRY = ("min_size", "max_size", "input_size")


def _inherited_geometry(cfg: TrainConfig, explicit: set[str] | None, defaults: TrainConfig) -> dict[str, Any]:
    """The parent's input geometry for the settings the user did not set, when fine-tuning a model.

    Training, validation and the app's prediction then all see images at the size the card states; an
    explicit size makes a model whose card records the new size (``training.setup`` writes it).
    """
    if (cfg.init or "none") in ("none", "imagenet"):
        return {}
    from cellcounter.models.card import read_card

    arch = read_card(cfg.init).architecture
    out = {}
    for key in GEOMETRY:
        user_set = (key in explicit) if explicit is not None else getattr(cfg, key) != getattr(defaults, key)
        if not user_set and key in arch:
            out[key] = int(arch[key])
    return out


def apply_recipe(cfg: TrainConfig, explicit: set[str] | None = None) -> TrainConfig:
    """``cfg`` with its recipe's settings filled in where not set explicitly.

    ``explicit`` names the fields the user set; when ``None``, fields still at their
    dataclass default count as not set.
    """
    from cellcounter.tasks import TASKS

    if cfg.task not in TASKS:
        raise CellCounterError(f"unknown task {cfg.task!r}; tasks: {', '.join(TASKS)}")
    name = cfg.recipe or default_recipe(cfg.task, cfg.init, cfg.architecture)
    if name not in RECIPES:
        raise CellCounterError(f"unknown recipe {name!r}; recipes: {', '.join(RECIPES)}")
    defaults = TrainConfig()
    updates = {}
    for key, value in RECIPES[name].items():
        user_set = (key in explicit) if explicit is not None else getattr(cfg, key) != getattr(defaults, key)
        if not user_set:
            updates[key] = value
    # Frozen BatchNorm and a heads-only first stage only make sense over trained weights: a network
    # trained from scratch needs its normalisation statistics learnt and its trunk trained from step one.
    from_scratch = (cfg.init or "none") == "none"
    for key, off in (("frozen_bn", False), ("heads_only_epochs", 0)):
        user_set = (key in explicit) if explicit is not None else getattr(cfg, key) != getattr(defaults, key)
        if from_scratch and not user_set:
            updates[key] = off
    updates.update(_inherited_geometry(cfg, explicit, defaults))
    out = dataclasses.replace(cfg, recipe=name, recipe_applied=True, **updates)
    if name.startswith(("blood", "nuclei", "leaves", "dr")) and RECIPES[name]["task"] != out.task:
        raise CellCounterError(f"recipe {name} is for task {RECIPES[name]['task']}, not {out.task}")
    return out
