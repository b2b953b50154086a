"""Building the model, optimiser and learning-rate schedule a training config asks for."""

from __future__ import annotations

from torch import nn, optim
from torch.optim import lr_scheduler

from cellcounter.errors import CellCounterError
from cellcounter.models import DetectorConfig, GraderConfig, ModelCard, SegmenterConfig, build_model, load_model
from cellcounter.models.config import TASK_KIND_TO_MODEL, ModelConfig, UNetConfig, config_to_dict
from cellcounter.models.pretrained import backbone_body, init_backbone_imagenet
from cellcounter.tasks import get_task
from training.config import TrainConfig


def model_config(cfg: TrainConfig) -> ModelConfig:
    task = get_task(cfg.task)
    kind = TASK_KIND_TO_MODEL[task.kind]
    n = len(task.class_names)
    if kind == "detector":
        kw = {}
        if cfg.anchor_sizes:
            kw["anchor_sizes"] = tuple(cfg.anchor_sizes)
        if cfg.anchor_scales:
            kw["anchor_scales"] = tuple(cfg.anchor_scales)
        if cfg.detections_per_img:
            kw["detections_per_img"] = cfg.detections_per_img
        return DetectorConfig(backbone=cfg.backbone, num_classes=n, focal_alpha=cfg.focal_alpha,
                              focal_gamma=cfg.focal_gamma, prior_probability=cfg.prior_probability,
                              min_size=cfg.min_size, max_size=cfg.max_size, fpn_channels=cfg.fpn_channels,
                              frozen_bn=cfg.frozen_bn, **kw)
    if kind == "segmenter" and cfg.architecture == "unet":
        return UNetConfig(num_classes=n, width=cfg.unet_width)
    if kind == "segmenter" and cfg.architecture not in ("", "maskrcnn"):
        raise CellCounterError(f"unknown architecture {cfg.architecture!r} for {cfg.task}: use maskrcnn or unet")
    if kind == "segmenter":
        kw = {"anchor_sizes": tuple(cfg.anchor_sizes)} if cfg.anchor_sizes else {}
        if cfg.detections_per_img:
            kw["detections_per_img"] = cfg.detections_per_img
        return SegmenterConfig(backbone=cfg.backbone, num_classes=n, min_size=cfg.min_size, max_size=cfg.max_size,
                               representation_size=cfg.representation_size, fpn_channels=cfg.fpn_channels,
                               frozen_bn=cfg.frozen_bn, **kw)
    return GraderConfig(backbone=cfg.backbone, num_classes=n, input_size=cfg.input_size, fundus_crop=cfg.fundus_crop,
                       local_contrast=cfg.local_contrast)


def build_for_training(cfg: TrainConfig) -> tuple[nn.Module, ModelCard, str | None, str]:
    """The model to train, its card, the parent version (when fine-tuning) and what it was initialised from."""
    task = get_task(cfg.task)
    if cfg.init not in ("none", "imagenet", ""):
        model, parent = load_model(cfg.init)
        if parent.task != cfg.task or list(parent.class_names) != list(task.class_names):
            raise CellCounterError(f"{cfg.init}: a model for {parent.task} with classes {parent.class_names} cannot "
                                   f"be fine-tuned for {cfg.task} with classes {list(task.class_names)}")
        arch = _with_geometry(parent.architecture, cfg)  # resizing happens before the model: weights unchanged
        card = ModelCard(cfg.name or parent.name, cfg.task, list(task.class_names), arch,
                         version=_next_version(parent.version), parent=f"{parent.name}@{parent.version}",
                         pretrained=parent.pretrained)
        return model.train(), card, card.parent, f"fine-tuned from {card.parent}"
    mcfg = model_config(cfg)
    model = build_model(mcfg)
    pretrained = "none (trained from scratch)"
    if cfg.init == "imagenet":
        init_backbone_imagenet(model, cfg.backbone, cfg.init_weights or None)
        pretrained = f"ImageNet {cfg.backbone} backbone" + (f" from {cfg.init_weights}" if cfg.init_weights else "")
    card = ModelCard(cfg.name or f"{cfg.task}-custom", cfg.task, list(task.class_names), config_to_dict(mcfg),
                     pretrained=pretrained)
    return model.train(), card, None, pretrained


def _with_geometry(arch: dict, cfg: TrainConfig) -> dict:
    """The parent's architecture with the input size training uses (so predicting matches training)."""
    if arch.get("kind") == "unet":  # native pixels: nothing to carry over
        return dict(arch)
    keys = ("input_size",) if arch.get("kind") == "grader" else ("min_size", "max_size")
    return {**arch, **{k: int(getattr(cfg, k)) for k in keys}}


def _next_version(v: str) -> str:
    try:
        return str(int(v) + 1)
    except ValueError:
        return f"{v}.1"


def trunk(model: nn.Module) -> nn.Module:
    """What "heads only" freezes: the ResNet body (and FPN) of detectors and segmenters, the U-Net's encoder,
    the features of graders."""
    if hasattr(model, "backbone"):
        return model.backbone
    if hasattr(model, "down"):  # the U-Net's encoder
        return model.down
    return backbone_body(model)


def set_trunk_trainable(model: nn.Module, trainable: bool) -> None:
    for p in trunk(model).parameters():
        p.requires_grad_(trainable)


def make_optimizer(cfg: TrainConfig, model: nn.Module) -> optim.Optimizer:
    """The optimiser over all parameters; the trunk's at ``trunk_lr`` times the rate when that is below 1."""
    params: list | list[dict] = list(model.parameters())
    if cfg.trunk_lr != 1.0:
        if not 0 < cfg.trunk_lr <= 1:
            raise CellCounterError(f"trunk_lr must be in (0, 1], not {cfg.trunk_lr}")
        body = {id(p) for p in trunk(model).parameters()}
        params = [{"params": [p for p in params if id(p) not in body]},  # first: its rate is the one logged
                  {"params": [p for p in params if id(p) in body], "lr": cfg.lr * cfg.trunk_lr}]
    if cfg.optimizer == "sgd":
        return optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adagrad":
        return optim.Adagrad(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    raise CellCounterError(f"unknown optimizer {cfg.optimizer!r}: use sgd, adamw or adagrad")


def warmup_steps(cfg: TrainConfig, total_steps: int) -> int:
    """The warmup a run of ``total_steps`` gets: the recipe's, but never more than a tenth of the run (a 40-step
    fine-tune under a 100-step warmup would never reach its learning rate)."""
    if cfg.warmup_iters <= 0:
        return 0
    return min(cfg.warmup_iters, max(1, total_steps // 10)) if total_steps > 0 else cfg.warmup_iters


def make_scheduler(cfg: TrainConfig, opt: optim.Optimizer, total_steps: int) -> lr_scheduler.LRScheduler:
    """Per-step schedule: linear warmup, then SGDR (cosine with warm restarts), step decay or constant, scaled to
    the run: warmup at most a tenth of it, and a first cosine cycle no longer than what follows the warmup."""
    warm_n = warmup_steps(cfg, total_steps)
    if cfg.scheduler == "sgdr":
        t0 = max(1, cfg.sgdr_t0)
        if total_steps > 0:
            t0 = min(t0, max(1, total_steps - warm_n + 1))  # the last step near eta_min, not restarted
        main = lr_scheduler.CosineAnnealingWarmRestarts(opt, T_0=t0, T_mult=max(1, cfg.sgdr_t_mult),
                                                        eta_min=cfg.sgdr_eta_min)
    elif cfg.scheduler == "step":
        after = max(1, total_steps - warm_n)
        main = lr_scheduler.MultiStepLR(opt, milestones=sorted({max(1, int(f * after)) for f in cfg.step_milestones}),
                                        gamma=cfg.step_gamma)
    elif cfg.scheduler == "constant":
        main = lr_scheduler.ConstantLR(opt, factor=1.0, total_iters=0)
    else:
        raise CellCounterError(f"unknown scheduler {cfg.scheduler!r}: use sgdr, step or constant")
    if warm_n <= 0:
        return main
    warm = lr_scheduler.LinearLR(opt, start_factor=1e-3, end_factor=1.0, total_iters=warm_n)
    return lr_scheduler.SequentialLR(opt, [warm, main], milestones=[warm_n])
