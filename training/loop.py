"""``iter_training(config)``: the one training loop the GUI and the CLI share.

It yields :class:`TrainEvent`s (step, epoch, losses, learning rate, ETA,
validation metrics) and stops cleanly between steps when ``should_stop()``
says so. Checkpoints are written every ``checkpoint_every`` steps and on stop;
``resume=True`` continues from the last one with the same result as an
uninterrupted run. Under ``torchrun`` it trains with DistributedDataParallel.
"""

from __future__ import annotations

import copy
import json
import math
import os
import pickle
import platform
import shutil
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader

from cellcounter.annotations import ImageAnnotation
from cellcounter.errors import CellCounterError
from cellcounter.evaluate import evaluate_annotations, key_metric
from cellcounter.fileutil import atomic_open, atomic_write_text
from cellcounter.inference.backends import TorchBackend
from cellcounter.inference.device import resolve_device
from cellcounter.inference.predictor import Predictor
from cellcounter.inference.run import predict_image
from cellcounter.models.card import load_weights, save_model
from cellcounter.tasks import get_task
from training.augment import ScheduledDropBlock
from training.config import TrainConfig
from training.data import load_split
from training.kinds import adapter_for, class_weights
from training.recipes import apply_recipe
from training.setup import build_for_training, make_optimizer, make_scheduler, set_trunk_trainable
from training.unlabelled import ignore_regions


def selection_score(metrics: dict, kind: str) -> float:
    """How good a validation result is for choosing the checkpoint to keep (higher is better).

    A model that counts is judged first by what its user reads, the count error per image summed over the
    classes (a fine-tune whose mAP rises while it counts worse must not be chosen); the key score (mAP@0.5,
    AJI) breaks ties within a thousandth of a count. The grader is judged by its QWK.
    """
    from cellcounter.evaluate import total_count_error

    key = metrics.get(key_metric(kind))
    key = -math.inf if not isinstance(key, (int, float)) or np.isnan(key) else float(key)
    if kind == "grade":
        return key
    err = total_count_error(metrics)
    if err is None or np.isnan(err):
        return -math.inf
    return -err + 1e-3 * max(key, 0.0)


@dataclass
class TrainEvent:
    # prepare (work before the first step), start, step, eval, base_eval (the start model on its own
    # validation images), checkpoint, stopped, done
    kind: str
    step: int = 0
    total_steps: int = 0
    epoch: int = 0
    epochs: int = 0
    losses: dict[str, float] = field(default_factory=dict)
    lr: float = 0.0
    eta_s: float = 0.0
    metrics: dict = field(default_factory=dict)
    message: str = ""
    model_dir: str = ""


def _load_checkpoint(path: Path) -> dict:
    """A checkpoint to resume from, read without running code from it."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise CellCounterError(f"{path}: refused: the checkpoint holds code or objects other than weights and "
                               "training state (loading it could run that code)") from None
    except (RuntimeError, EOFError, OSError, ValueError, IndexError, KeyError) as exc:
        raise CellCounterError(f"{path}: not a readable checkpoint ({str(exc).splitlines()[0][:200]})") from None
    if not isinstance(state, dict) or not {"model", "step", "best", "history", "evals"} <= set(state):
        raise CellCounterError(f"{path}: not a cellcounter training checkpoint")
    return state


def _dist_info() -> tuple[int, int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0"))


def _epoch_order(cfg: TrainConfig, n: int, epoch: int, grades: list[int] | None) -> np.ndarray:
    rng = np.random.default_rng(cfg.seed * 7_919 + epoch)
    if cfg.balanced_sampling and grades:
        g = np.asarray(grades)
        freq = np.bincount(g)
        w = 1.0 / freq[g]
        return rng.choice(n, size=n, replace=True, p=w / w.sum())
    return rng.permutation(n)


def _batches(order: np.ndarray, rank: int, world: int, batch_size: int) -> list[list[int]]:
    mine = order[rank::world].tolist()
    return [mine[i:i + batch_size] for i in range(0, len(mine), batch_size)]


def _hardware(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(0)
    return f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"


def _save_checkpoint(path: Path, model: nn.Module, opt, state: dict) -> None:
    payload = {"model": model.state_dict(), "optimizer": opt.state_dict(), **state}
    with atomic_open(path, "wb") as fh:
        torch.save(payload, fh)


def evaluate_model(model: nn.Module, card, loaders, device: str,
                   count_threshold: float) -> tuple[dict, tuple[list, list]]:
    """The validation figures of :func:`cellcounter.evaluate.evaluate_annotations`, through the real predictor,
    and the ``(references, predictions)`` they were computed from (for the plots)."""
    snapshot = copy.deepcopy(model).eval()
    predictor = Predictor(card, TorchBackend(snapshot, card, device, amp=False))
    gts, preds = [], []
    for load in loaders:
        img, ann = load()
        p = predict_image(predictor, img, ann.image_path)  # as the app and `evaluate` predict: tiled alike
        gts.append(ann)
        preds.append(p)
    return evaluate_annotations(card.task, gts, preds, count_threshold), (gts, preds)


def _start_scores(cfg: TrainConfig, model: nn.Module, card, loaders, anns, device: str) -> tuple[dict, bool]:
    """The start model's scores on ``loaders`` (labels ``anns``): kept from an earlier run where one computed
    them, since they depend on the model and the images only (:mod:`training.scorecache`)."""
    from training.scorecache import kept_scores

    def compute() -> dict:
        return evaluate_model(model, card, loaders, device, cfg.count_threshold)[0]

    if len(anns) != len(loaders):
        return compute(), False
    settings = {k: v for k, v in json.loads(card.to_json()).items() if k != "created"}  # all that shapes a prediction
    return kept_scores(cfg.init, anns, cfg.count_threshold, compute, extra=json.dumps(settings, sort_keys=True))


def _images_digest(split) -> str:
    """Which images a run trains and validates on: a resumed run must find the same ones."""
    import hashlib

    names = "\n".join(sorted(map(str, split.train_names))) + "\n--\n" + "\n".join(sorted(map(str, split.val_names)))
    return hashlib.sha256(names.encode()).hexdigest()


def iter_training(config: TrainConfig, should_stop: Callable[[], bool] | None = None,
                  annotations: Sequence[ImageAnnotation] | None = None) -> Iterator[TrainEvent]:
    """Train as ``config`` says, yielding events; ``annotations`` (in memory, e.g. a project's reviewed labels)
    replace ``config.data`` as the training set."""
    cfg = (config if config.recipe_applied else apply_recipe(config)).check()
    rank, world, local_rank = _dist_info()
    distributed = world > 1
    device = resolve_device(cfg.device)
    if distributed:
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
        if device.startswith("cuda"):
            device = f"cuda:{local_rank}"
            torch.cuda.set_device(local_rank)
    out = Path(cfg.out)
    ckpt_dir = out / "checkpoints"
    is_main = rank == 0
    if is_main:
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "config.json", cfg.to_json())

    torch.manual_seed(cfg.seed)
    task = get_task(cfg.task)
    split = load_split(cfg, annotations)
    model, card, parent, init_desc = build_for_training(cfg)
    if cfg.rehearsal and not parent:
        raise CellCounterError("rehearsal is not possible: a run from scratch has no start model to rehearse")
    guard = _guard(cfg, split) if parent else ""  # on every rank: rehearsed images join the training set
    base_val = guard.val if isinstance(guard, BaseCheck) and is_main else []
    mcfg = card.config
    kind = adapter_for(mcfg.kind)
    ignore = None
    if kind.finds_unlabelled and cfg.ignore_unlabelled:
        if is_main:
            yield TrainEvent("prepare", 0, 0, 0, cfg.epochs, message=f"finding unlabelled objects with "
                             f"{cfg.ignore_unlabelled} in {len(set(split.train_names))} training images")
        ignore = ignore_regions(cfg.ignore_unlabelled, split.train, cfg.ignore_min_score, out, device)
    ds = kind.dataset(split.train, cfg, mcfg, ignore)
    grades = [ds.grade(i) for i in range(len(ds))] if kind.grades else None
    steps_per_epoch = math.ceil(math.ceil(len(ds) / world) / cfg.batch_size)
    total = cfg.epochs * steps_per_epoch
    if cfg.max_steps:
        total = min(total, cfg.max_steps)

    model.to(device)
    opt = make_optimizer(cfg, model)
    sched = make_scheduler(cfg, opt, total)
    dropblock = None
    if cfg.dropblock_level and kind.drop_block:
        dropblock = ScheduledDropBlock(model, cfg.dropblock_level, cfg.dropblock_size, cfg.dropblock_prob, total)
    weights = class_weights(cfg, grades or [], len(task.class_names))
    loss_fn = nn.CrossEntropyLoss(weight=None if weights is None else weights.to(device))

    step, best, history, evals = 0, -math.inf, [], []
    before: dict = {}  # the start model's scores on this run's validation images
    base_before: dict = {}  # the start model's score on its own validation images
    image_set = _images_digest(split)
    last_pairs = None
    last = ckpt_dir / "last.pt"
    if cfg.resume:
        if not last.is_file():
            raise CellCounterError(f"{last}: no checkpoint to resume from")
        state = _load_checkpoint(last)
        model.load_state_dict(state["model"])
        step = int(state["step"])
        history, evals = json.loads(state["history"]), json.loads(state["evals"])
        best = max((selection_score(e, task.kind) for e in evals), default=-math.inf)  # by today's rule
        base_before = json.loads(state.get("base_before", "{}"))
        before = json.loads(state.get("before", "{}"))
        if state.get("image_set", image_set) != image_set:
            raise CellCounterError(f"{last}: the training or validation images are not those this run started "
                                   "with (were images reviewed or un-reviewed since?); start a new run")
        # Replay the schedule on the fresh optimiser first (chained schedules such as the warmup multiply
        # the current rate, so they must start from the configured one), then restore the optimiser's
        # state, whose rate is the one the replay reached.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the "step before optimizer.step" warning does not apply here
            for _ in range(step):
                sched.step()
        replayed = [g["lr"] for g in opt.param_groups]
        opt.load_state_dict(state["optimizer"])
        if any(abs(a - g["lr"]) > 1e-9 * max(1.0, abs(a)) for a, g in zip(replayed, opt.param_groups)):
            raise CellCounterError(f"{last}: the learning-rate schedule does not match this checkpoint "
                                   "(were schedule settings changed?)")
    train_model: nn.Module = model
    if distributed:
        train_model = nn.parallel.DistributedDataParallel(model, device_ids=[local_rank] if device != "cpu" else None)

    def checkpoint() -> None:
        if is_main:
            _save_checkpoint(last, model, opt, {"step": step, "best": best, "history": json.dumps(history),
                                                "evals": json.dumps(evals), "config": cfg.to_json(),
                                                "base_before": json.dumps(base_before),
                                                "before": json.dumps(before), "image_set": image_set})

    if parent and is_main and not cfg.resume:  # the parent's scores on the same images as the new model's
        if split.val:
            yield TrainEvent("prepare", 0, total, 0, cfg.epochs,
                             message=f"scoring the start model on {len(split.val)} validation images")
            before, kept = _start_scores(cfg, model, card, split.val, split.val_anns, device)
            yield TrainEvent("eval", 0, total, 0, cfg.epochs, metrics=before,
                             message="before training (parent model" + (", kept from an earlier run)" if kept else ")"))
        if base_val:
            yield TrainEvent("prepare", 0, total, 0, cfg.epochs, message=f"scoring the start model on "
                             f"{len(base_val)} of {guard.model}'s own validation images")
            base_before, kept = _start_scores(cfg, model, card, base_val, guard.anns, device)
            yield TrainEvent("base_eval", 0, total, 0, cfg.epochs, metrics=base_before,
                             message=f"before training, on {guard.model}'s own validation images"
                                     + (" (kept from an earlier run)" if kept else ""))
        model.train()
    yield TrainEvent("start", step, total, step // max(1, steps_per_epoch), cfg.epochs,
                     message=f"{len(split.train)} training and {len(split.val)} validation images; {init_desc}; "
                             f"{device}" + (f" x{world}" if distributed else "")
                             + (f"; {guard.describe()}" if isinstance(guard, BaseCheck) else
                                f"; {guard}" if guard else ""))
    t0, t0_step = time.time(), step
    while step < total:
        epoch = step // steps_per_epoch
        ds.set_epoch(epoch)
        frozen = epoch < cfg.heads_only_epochs
        set_trunk_trainable(model, not frozen)
        batches = _batches(_epoch_order(cfg, len(ds), epoch, grades), rank, world, cfg.batch_size)
        skip = step - epoch * steps_per_epoch
        loader = DataLoader(ds, batch_sampler=batches[skip:], collate_fn=kind.collate, num_workers=cfg.num_workers)
        model.train()
        for batch in loader:
            if should_stop is not None and should_stop():
                checkpoint()
                yield TrainEvent("stopped", step, total, epoch, cfg.epochs,
                                 message=f"stopped at step {step}; resume from {last} (--resume)")
                _finish_dist(distributed)
                return
            torch.manual_seed(cfg.seed * 7_919 + step)  # DropBlock and proposal sampling draw from it
            if dropblock is not None:
                dropblock.set_step(step)
            losses = kind.losses(train_model, batch, device, loss_fn)
            loss = sum(losses.values())
            if not torch.isfinite(loss) or (history and loss.item() > 1e3 * max(1e-3, history[0]["loss"])):
                raise CellCounterError(f"training diverged at step {step} (loss {loss.item():.3g}); "
                                       "lower the learning rate or lengthen the warmup")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip:
                nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], cfg.grad_clip)
            opt.step()
            sched.step()
            step += 1
            rec = {"step": step, "epoch": epoch, "loss": loss.item(), "lr": opt.param_groups[0]["lr"],
                   **{k: v.item() for k, v in losses.items()}}
            history.append(rec)
            rate = (time.time() - t0) / max(1, step - t0_step)
            yield TrainEvent("step", step, total, epoch, cfg.epochs, {k: rec[k] for k in losses},
                             rec["lr"], rate * (total - step), message="heads only" if frozen else "")
            if cfg.checkpoint_every and step % cfg.checkpoint_every == 0:
                checkpoint()
                yield TrainEvent("checkpoint", step, total, epoch, cfg.epochs, message=str(last))
            if cfg.time_budget_min and time.time() - t0 > 60 * cfg.time_budget_min and step < total:
                total = step  # the budget is spent: validate, select and write what there is, as at the end
                yield TrainEvent("prepare", step, total, epoch, cfg.epochs, message=f"the time budget of "
                                 f"{cfg.time_budget_min:g} min is spent: ending at step {step}")
            if step >= total:
                break
        end_of_epoch = step % steps_per_epoch == 0 or step >= total
        if end_of_epoch and is_main and split.val and (
                (epoch + 1) % max(1, cfg.eval_every_epochs) == 0 or step >= total):
            res, pairs = evaluate_model(model, card, split.val, device, cfg.count_threshold)
            res["step"] = step
            evals.append(res)
            score = selection_score(res, task.kind)
            if last_pairs is None or score > best:
                last_pairs = pairs  # kept for the plots of the model that will be written
            if score > best:
                best = score
                with atomic_open(ckpt_dir / "best.pt", "wb") as fh:
                    torch.save(model.state_dict(), fh)
            model.train()
            yield TrainEvent("eval", step, total, epoch, cfg.epochs, metrics=res)
        if distributed:
            dist.barrier()
        checkpoint()

    if is_main:
        if before:
            card.metrics["parent_validation"] = before
        base = (guard, base_before, base_val) if base_val else None
        if base:
            yield TrainEvent("prepare", step, total, cfg.epochs, cfg.epochs, message=f"scoring the new model on "
                             f"{len(base_val)} of {guard.model}'s own validation images")
        model_dir = _write_outputs(cfg, model, card, split, history, evals, device, init_desc, time.time() - t0,
                                   last_pairs, base)
        if not cfg.keep_checkpoints:  # the model is written: the optimiser's state and the rest are dead weight
            shutil.rmtree(ckpt_dir, ignore_errors=True)
        yield TrainEvent("done", step, total, cfg.epochs, cfg.epochs, metrics=evals[-1] if evals else {},
                         model_dir=str(model_dir), message=f"model written to {model_dir}")
    if dropblock is not None:
        dropblock.remove()
    _finish_dist(distributed)


def _finish_dist(distributed: bool) -> None:
    if distributed and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def _write_outputs(cfg, model, card, split, history, evals, device, init_desc, seconds, pairs, base=None) -> Path:
    from training.plots import save_plots

    out = Path(cfg.out)
    best_path = out / "checkpoints" / "best.pt"
    final_eval = evals[-1] if evals else {}
    if best_path.is_file():  # model selection on the validation score
        model.load_state_dict(load_weights(best_path))
        best_eval = max(evals, key=lambda e: selection_score(e, get_task(card.task).kind))
    else:
        best_eval = final_eval
    card.name = cfg.name or card.name
    card.metrics = {**{k: v for k, v in card.metrics.items() if k == "parent_validation"},
                    "validation": dict(best_eval),
                    "selected_at_step": best_eval.get("step"), "validation_images": len(split.val),
                    "selected_by": _selected_by(get_task(card.task).kind)}
    if base is not None:  # what the selected weights kept of the start model's skills
        guard, before, val = base
        after = evaluate_model(model, card, val, device, cfg.count_threshold)[0]
        card.metrics["base_validation"] = {"model": guard.model, "images": len(val), "before": before or None,
                                           "after": after, "rehearsal": guard.rehearsed}
    card.training = {
        "recipe": cfg.recipe, "config": json.loads(cfg.to_json()), "seed": cfg.seed, "steps": len(history),
        "seconds": round(seconds, 1), "hardware": _hardware(device), "initialisation": init_desc,
        "train_images": [Path(p).name for p in split.train_names],
        "val_images": [Path(p).name for p in split.val_names], "command": command_line(cfg),
    }
    _calibrate(cfg, card, pairs)
    model_dir = save_model(model.cpu(), card, out / "model", half=cfg.half)
    if cfg.export_onnx:
        from cellcounter.inference.export import export_onnx

        export_onnx(model, card, model_dir / "model.onnx")
    atomic_write_text(out / "history.json", json.dumps({"steps": history, "evals": evals}, indent=1))
    save_plots(out, history, card, pairs)
    return model_dir


@dataclass
class BaseCheck:
    """The start model's own data, as a fine-tune uses it: ``val`` to score before and after (loading
    ``anns``), ``rehearsed`` training images of ``rehearsed_from`` mixed in."""

    model: str
    val: list
    rehearsed: int
    anns: list = field(default_factory=list)
    rehearsed_from: str = ""
    no_check: str = ""  # why there is no check of what the start model knew, where there is none

    def describe(self) -> str:
        parts = [f"{self.rehearsed} image(s) rehearsed ({self.rehearsed_from})"] if self.rehearsed else []
        if self.val:
            parts.append(f"scored on {len(self.val)} of {self.model}'s validation images")
        elif self.no_check:
            parts.append(self.no_check)
        return "; ".join(parts)


def _guard(cfg: TrainConfig, split) -> BaseCheck | str:
    """Rehearsal and the base check of a fine-tune (see :mod:`training.base`); the rehearsed images are added
    to ``split``. A string says why they are not possible here."""
    if not cfg.rehearsal and not cfg.base_check:
        return ""
    from training.base import base_sets, rehearsal_count, rehearsal_images, sample
    from training.data import training_loaders, validation_loaders

    sets = base_sets(cfg.init, cfg.task)
    if isinstance(sets, str) and not cfg.rehearsal:
        return f"no check of what the start model knew: {sets}"
    own = {Path(p).resolve() for p in split.train_names} | {Path(p).resolve() for p in split.val_names}
    source, pool = rehearsal_images(cfg, sets) if cfg.rehearsal else ("", [])
    pool = [a for a in pool if Path(a.image_path).resolve() not in own]
    rehearse = sample(pool, rehearsal_count(len(set(split.train_names)), cfg.rehearsal), cfg.seed)
    loaders, names = training_loaders(cfg, rehearse)
    split.train += loaders
    split.train_names += names
    if isinstance(sets, str):  # rehearsing without the start model's own validation images: no check
        return BaseCheck(source, [], len(rehearse), rehearsed_from=source,
                         no_check=f"no check of what the start model knew: {sets}" if cfg.base_check else "")
    val = [a for a in sets.val if Path(a.image_path).resolve() not in own]
    val = sample(val, cfg.base_check, 0) if cfg.base_check else []
    return BaseCheck(sets.model, validation_loaders(cfg, val), len(rehearse), val, rehearsed_from=source)


def _calibrate(cfg: TrainConfig, card, pairs) -> None:
    """The new model's per-class score calibration, fitted on the selected weights' validation predictions and
    kept per class only where it counts better on validation images it was not fitted on
    (:func:`cellcounter.calibration.checked_thresholds`). With too few validation images to check one, a
    fine-tune keeps its parent's calibration and a run from scratch keeps raw scores; the card says which."""
    from cellcounter.calibration import MIN_CHECK_IMAGES, checked_thresholds
    from cellcounter.models.card import read_card

    card.score_calibration = {}
    if not cfg.calibrate or pairs is None or get_task(cfg.task).kind == "grade":
        return
    gts, preds = pairs
    if len(gts) < MIN_CHECK_IMAGES:
        parent = {}
        if card.parent:
            parent = dict(read_card(cfg.init).score_calibration or {})
        card.score_calibration = parent
        card.metrics["score_calibration"] = {
            "kept_from": f"the parent, {card.parent}" if parent else "none: raw scores",
            "why": f"only {len(gts)} validation image(s); a calibration is fitted only where at least "
                   f"{MIN_CHECK_IMAGES} can check it on images it was not fitted on"}
        return
    thresholds, report = checked_thresholds(gts, preds, seed=cfg.seed)
    card.score_calibration = thresholds
    card.metrics["score_calibration"] = {"data": "this run's validation images", "images": len(gts),
                                         "per_class": report}


def _selected_by(kind: str) -> str:
    return key_metric(kind) if kind == "grade" else f"count error per image, then {key_metric(kind)}"


def command_line(cfg: TrainConfig) -> str:
    """The ``cellcounter-train`` command that reproduces this run (settings that differ from the recipe)."""
    from training.recipes import GEOMETRY, RECIPES

    base = TrainConfig(**{**asdict(TrainConfig()), **RECIPES.get(cfg.recipe, {})})
    # a fine-tune inherits its parent's input size unless told: the size it ran at is always written out
    keep = {"task", "data", "out"} | (set(GEOMETRY) if (cfg.init or "none") not in ("none", "imagenet") else set())
    parts = ["cellcounter-train"]
    for k, v in asdict(cfg).items():
        if k in ("resume", "recipe_applied", "plan") or (v == getattr(base, k) and k not in keep):
            continue
        flag = "--" + k.replace("_", "-")
        if isinstance(v, bool):
            parts.append(flag if v else f"--no-{k.replace('_', '-')}")
        elif isinstance(v, tuple):
            parts.append(f"{flag} {','.join(str(x) for x in v)}")
        else:
            parts.append(f"{flag} {v}")
    return " ".join(parts)


def run_training(config: TrainConfig, should_stop: Callable[[], bool] | None = None,
                 on_event: Callable[[TrainEvent], None] | None = None) -> TrainEvent:
    """Run :func:`iter_training` to the end; returns the last event."""
    last = TrainEvent("none")
    for ev in iter_training(config, should_stop):
        if on_event is not None:
            on_event(ev)
        last = ev
    return last
