"""Fine-tuning on a project's reviewed labels: what the app's Fine-tune panel and ``cellcounter project train`` run.

The training set is the reviewed images' labels exactly as their reviewers saw
them (:func:`cellcounter.project.workflows.training_set`), taken in memory and
frozen when the run starts; the new model is registered as a project version
(not active until asked) with its parent, images and scores before and after.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cellcounter.annotations import ImageAnnotation
from cellcounter.errors import CellCounterError
from cellcounter.models.card import CARD_NAME
from cellcounter.project.registry import ModelVersion
from cellcounter.project.store import Project
from cellcounter.project.workflows import default_model, register_model, training_set
from training.base import rehearsal_pool, rehearsal_unavailable
from training.config import PROJECT_PREFIX, TrainConfig
from training.recipes import RECIPES, apply_recipe, default_recipe, finetune_plan

if TYPE_CHECKING:
    from training.loop import TrainEvent


def project_task(project: Project, task: str | None = None) -> str:
    """The task to train: the one given, else the one task of the reviewed images."""
    if task:
        return task
    tasks = {r.task for r in project.images("reviewed") if r.task}
    if len(tasks) != 1:
        raise CellCounterError(f"{project.path}: the reviewed images are of "
                               f"{'no known task' if not tasks else 'tasks ' + ', '.join(sorted(tasks))}: "
                               "say which to train (--task)")
    return tasks.pop()


#: the share of a fine-tune's training images rehearsed, per task (the others: none), where the start model's
#: training data or the sample its folder ships are at hand: a blood fine-tune on a new lab's smears forgot the
#: labs it knew without it and kept its gain with it (#34, docs/performance.md)
DEFAULT_REHEARSAL = {"blood": 0.5}


def default_rehearsal(task: str, start: str) -> float:
    """The rehearsal share a fine-tune of ``task`` from ``start`` runs unless told: the task's, where there is
    something to rehearse, else 0 (a run from scratch, a model whose data are nowhere here)."""
    share = DEFAULT_REHEARSAL.get(task, 0.0)
    if not share or start == "none":
        return 0.0
    try:
        return 0.0 if rehearsal_unavailable(start, task) else share
    except CellCounterError:  # an unreadable start model: its own error comes when the run starts
        return 0.0


def project_run(project: Project, task: str, recipe: str | None = None, epochs: int | None = None,
                init: str | None = None, out: str | Path | None = None, rehearsal: float | None = None,
                trunk_lr: float | None = None, time_budget_min: float = 0.0, finetune: bool = True,
                rehearse_from: str = "", rehearse_ids: str = "",
                ) -> tuple[TrainConfig, list[ImageAnnotation], list[int]]:
    """The run's config, its frozen training set and the ids of the images in it.

    ``init`` is what to start from: a model path or name, ``"none"`` for from scratch, or ``None`` for the
    project's active version of the task, else the bundled default model. ``rehearsal`` (default
    :func:`default_rehearsal`) mixes that share of the start model's own training images (or of the sample of
    them its folder ships) into the run
    (:mod:`training.base`), or of the labelled folder ``rehearse_from`` (its images listed by ``rehearse_ids``
    when given); the run refuses it, naming why, where they are not on this machine. ``trunk_lr``
    (a fraction of the learning rate for the backbone; the recipe's when ``None``) keeps more of the start
    model; ``time_budget_min`` ends the run after that many minutes with the best model so far.

    Every reviewed image of the task trains (a second fine-tune starts from the active version and still
    learns from all corrections so far, not only the newest). Without ``epochs``, a fine-tune runs the
    task's plan (:func:`training.recipes.finetune_plan`: steps scaled to the number of corrected images,
    validated about eight times, the checkpoint that counts best kept); ``finetune=False`` runs the
    recipe's settings for 10 epochs instead, as does a run from scratch.
    """
    if recipe is not None and recipe not in RECIPES:
        raise CellCounterError(f"unknown recipe {recipe!r}; known: {', '.join(RECIPES)}")
    ids, anns = _reviewed(project, task)
    start = init if init is not None else (default_model(project, task) or "none")
    run = Path(out) if out else runs_folder(project) / time.strftime("run-%Y%m%d-%H%M%S")
    run.mkdir(parents=True, exist_ok=True)
    cfg = TrainConfig(task=task, data=f"{PROJECT_PREFIX}{project.path.resolve()}", out=str(run),
                      recipe=recipe or default_recipe(task, start), epochs=epochs or 10, init=start,
                      val_split=0.2, name=f"{task}-project",
                      rehearsal=default_rehearsal(task, start) if rehearsal is None else rehearsal,
                      rehearsal_data=rehearse_from, rehearsal_ids=rehearse_ids,
                      time_budget_min=time_budget_min, half=True, keep_checkpoints=False)
    # a project's fine-tune keeps its model (float16 weights and card), not its checkpoints: about 295 MB a run
    explicit = {"task", "data", "out", "recipe", "init", "val_split", "name", "rehearsal", "rehearsal_data",
                "rehearsal_ids",
                "time_budget_min", "half", "keep_checkpoints", "epochs"}
    if trunk_lr is not None:
        cfg = dataclasses.replace(cfg, trunk_lr=trunk_lr)
        explicit.add("trunk_lr")
    # what is given here is set, even where it equals a dataclass default (10 epochs is not "unset": left to
    # the recipe it would become the recipe's 30)
    cfg = apply_recipe(cfg, explicit=explicit)
    if epochs is None and finetune and start != "none":
        cfg = dataclasses.replace(cfg, **finetune_plan(task, len(anns), cfg.batch_size, cfg.val_split))
    cfg = cfg.check()
    # from scratch, the loop itself refuses rehearsal before any work
    if rehearse_from and not cfg.rehearsal:
        raise CellCounterError("a folder to rehearse was given but no rehearsal share (e.g. --rehearsal 0.5)")
    if cfg.rehearsal and cfg.rehearsal_data and start != "none":
        rehearsal_pool(cfg)  # a missing or empty folder is refused now, not minutes into the run
    why = (rehearsal_unavailable(start, task) if cfg.rehearsal and start != "none" and not cfg.rehearsal_data
           else None)
    if why:
        raise CellCounterError(f"rehearsal is not possible: {why}")
    return cfg, anns, ids


def _reviewed(project: Project, task: str) -> tuple[list[int], list[ImageAnnotation]]:
    return [r.id for r in project.images("reviewed") if r.task in (None, task)], training_set(project, task)


def runs_folder(project: Project) -> Path:
    """Where a project's fine-tunes write their runs unless told otherwise."""
    return project.path.with_name(project.path.stem + "-training")


def stopped_runs(project: Project, task: str | None = None) -> list[Path]:
    """The project's runs that were stopped (or died) before writing a model, newest first: each has a
    checkpoint to resume from. Only runs in :func:`runs_folder` are found."""
    folder = runs_folder(project)
    if not folder.is_dir():
        return []
    data = f"{PROJECT_PREFIX}{project.path.resolve()}"
    found = []
    for run in folder.iterdir():
        if not (run / "checkpoints" / "last.pt").is_file() or (run / "model" / CARD_NAME).is_file():
            continue
        try:
            cfg = TrainConfig.load(run / "config.json")
        except (OSError, ValueError, TypeError, CellCounterError):
            continue
        if cfg.data == data and (task is None or cfg.task == task):
            found.append(run)
    return sorted(found, key=lambda r: (r / "checkpoints" / "last.pt").stat().st_mtime, reverse=True)


def resume_run(project: Project, run: str | Path) -> tuple[TrainConfig, list[ImageAnnotation], list[int]]:
    """A stopped run's config, set to resume, with the project's reviewed images as its training set (the run
    refuses them if they are not the images it started with)."""
    run = Path(run)
    try:
        cfg = TrainConfig.load(run / "config.json")
    except (OSError, ValueError, TypeError) as exc:
        raise CellCounterError(f"{run}: not a training run that can be resumed ({exc})") from None
    if not (run / "checkpoints" / "last.pt").is_file():
        raise CellCounterError(f"{run}: no checkpoint to resume from")
    ids, anns = _reviewed(project, cfg.task)
    return dataclasses.replace(cfg, resume=True, out=str(run)), anns, ids


@dataclass(frozen=True)
class Registered:
    """The run's model, registered as a new version of the project (not active yet)."""

    version: ModelVersion


def train_project(project: Project, cfg: TrainConfig, annotations: list[ImageAnnotation], image_ids: list[int],
                  should_stop: Callable[[], bool] | None = None) -> Iterator[TrainEvent | Registered]:
    """Run the fine-tune, yielding its events; when it ends, registers the model and yields
    :class:`Registered`. Run it from the thread that owns ``project``."""
    from training.loop import iter_training  # torch: imported when a run starts, not when the app opens

    done = None
    for ev in iter_training(cfg, should_stop, annotations=annotations):
        if ev.kind == "done":
            done = ev
        yield ev
    if done is not None:
        yield Registered(register_model(project, done.model_dir, None if cfg.init == "none" else cfg.init, image_ids))
