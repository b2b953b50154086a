"""What a fine-tune keeps of the model it starts from.

A fine-tune on a handful of corrected images can forget what its start model
knew (a probe: nuclei AJI on other organs fell from 0.45 to 0.24 after 160
steps on three tiles). Two guards, both read from the start model's card, which
records the data it was trained and validated on:

* **rehearsal**: a share of the training images drawn from the start model's
  own training images (or from a labelled folder given instead, such as the
  old labs' images with complete labels), mixed into every epoch;
* **the base check**: the start model and the new one scored on the start
  model's own validation images, so a run ends with both figures and "Make
  active" warns when the new version forgot.

Both need that data on this machine (under ``CELLCOUNTER_DATA``, or where the
card's paths point); without it the run says so and goes on without them.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cellcounter.annotations import ImageAnnotation
from cellcounter.errors import CellCounterError
from cellcounter.models.card import ModelCard, read_card
from training.config import TrainConfig

REPO = Path(__file__).resolve().parents[1]
#: a model folder's sample of its training images, shipped for rehearsal where the data are not at hand
REHEARSAL_FOLDER = "rehearsal"
_MAX_ANCESTORS = 8


@dataclass
class BaseSets:
    """The labelled images a model was trained and validated on, as found on this machine."""

    model: str  # name@version of the model whose data this is (the first ancestor trained on files)
    train: list[ImageAnnotation]
    val: list[ImageAnnotation]


def _find(path: str, data: bool = True) -> Path | None:
    """``path`` from a card, on this machine: a data folder under ``CELLCOUNTER_DATA`` by its name, else as
    written (relative to the source tree or the working folder)."""
    p = Path(path)
    cands = [p] if p.is_absolute() else [REPO / p, Path.cwd() / p]
    if data and os.environ.get("CELLCOUNTER_DATA"):
        cands.insert(0, Path(os.environ["CELLCOUNTER_DATA"]) / p.name)
    return next((c for c in cands if c.exists()), None)


def _lineage(init: str):
    """``init``'s folder and card, then its ancestors' (each card's ``config.init``), nearest first."""
    from cellcounter.models.card import resolve_model

    model: str = init
    for _ in range(_MAX_ANCESTORS):
        try:
            folder = resolve_model(model)
            card = read_card(folder)
        except (CellCounterError, OSError):
            return
        yield folder, card
        model = str(((card.training or {}).get("config") or {}).get("init", "none"))
        if model in ("none", "imagenet", ""):
            return


def _file_trained_card(init: str) -> ModelCard:
    """The card of ``init`` or of its nearest ancestor trained on files: a project fine-tune's own data are a
    handful of corrected images; the skills worth keeping are those of the model it came from."""
    card = read_card(init)
    for _, card in _lineage(init):
        if not str(((card.training or {}).get("config") or {}).get("data", "")).startswith("project:"):
            return card
    return card


def shipped_rehearsal(init: str) -> Path | None:
    """The labelled images a model carries for rehearsal (``rehearsal/`` in its folder or its nearest
    ancestor's): a bundled model's training data are not on a user's machine, a sample of them is."""
    return next((f / REHEARSAL_FOLDER for f, _ in _lineage(init) if (f / REHEARSAL_FOLDER).is_dir()), None)


def _locate(init: str, task: str) -> tuple[str, TrainConfig, list[Path], str] | str:
    """Where the start model's data are on this machine (its name, the split settings, the folders and the
    data as its card wrote it), or why they cannot be had here; nothing is read yet."""
    card = _file_trained_card(init)
    who = f"{card.name}@{card.version}"
    recorded = (card.training or {}).get("config") or {}
    data = str(recorded.get("data", ""))
    if not data or data == "synthetic" or data.startswith("project:"):
        return f"{who}'s card records no training data on files"
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    cfg = TrainConfig(**{k: v for k, v in recorded.items() if k in ("seed", "val_split") and k in known},
                      task=task)
    for key in ("train_ids", "val_ids"):
        split = str(recorded.get(key, ""))
        if split.endswith(".txt"):
            found = _find(split, data=False)
            if found is None:
                return f"{who}'s split file {split} is not on this machine"
            split = str(found)
        setattr(cfg, key, split)
    if recorded.get("val"):
        return f"{who} was validated on a separate set ({recorded['val']}); its split cannot be rebuilt"
    folders = []
    for part in [d.strip() for d in data.split(",") if d.strip()]:
        folder = _find(part)
        if folder is None:
            return (f"{who}'s training data ({part}) is not on this machine "
                    "(set CELLCOUNTER_DATA to the folder holding it)")
        folders.append(folder)
    return who, cfg, folders, data


def rehearsal_unavailable(init: str, task: str) -> str | None:
    """Why nothing can be rehearsed for ``init`` here (neither its own training data nor a shipped sample of
    them), or ``None``: checked before a run starts, so a refusal comes at once instead of from the run."""
    found = _locate(init, task)
    return found if isinstance(found, str) and shipped_rehearsal(init) is None else None


def _labelled_in_order(folder: Path, task: str) -> list[ImageAnnotation]:
    """The labelled images of ``folder`` in path order: a seeded sample of them is the same on every run."""
    from cellcounter.tasks import get_task
    from training.data import _labelled

    return sorted(_labelled(folder, get_task(task).class_names), key=lambda a: a.image_path)


def rehearsal_pool(cfg: TrainConfig) -> tuple[str, list[ImageAnnotation]]:
    """The folder named by ``cfg.rehearsal_data`` (its images listed by ``cfg.rehearsal_ids`` when given): what
    it is and its labelled images. A start model's own labels may be incomplete (BCCD leaves half the red cells
    unboxed); rehearsing them teaches the model again to leave such cells out, so a person can rehearse a
    completely labelled set of the old data instead."""
    from cellcounter.evaluate import select_ids, split_ids

    folder = _find(cfg.rehearsal_data)
    if folder is None or not folder.is_dir():
        raise CellCounterError(f"rehearsal data {cfg.rehearsal_data} is not a folder on this machine")
    anns = _labelled_in_order(folder, cfg.task)
    if cfg.rehearsal_ids:
        anns = select_ids(anns, split_ids(folder, cfg.rehearsal_ids))
    if not anns:
        raise CellCounterError(f"rehearsal data {folder}: no labelled images"
                               + (f" listed by {cfg.rehearsal_ids}" if cfg.rehearsal_ids else ""))
    return f"the folder {folder.name}", anns


def rehearsal_images(cfg: TrainConfig, sets: BaseSets | str) -> tuple[str, list[ImageAnnotation]]:
    """What a fine-tune rehearses: the folder it was given, else the start model's own training images
    (``sets``), else the sample its model folder ships; what that is, and the images."""
    if cfg.rehearsal_data:
        return rehearsal_pool(cfg)
    if not isinstance(sets, str):
        return f"{sets.model}'s training images", sets.train
    shipped = shipped_rehearsal(cfg.init)
    if shipped is None:
        raise CellCounterError(f"rehearsal is not possible: {sets}")
    anns = _labelled_in_order(shipped, cfg.task)
    if not anns:
        raise CellCounterError(f"rehearsal is not possible: {shipped} holds no labelled images")
    return f"{shipped.parent.name}'s rehearsal sample", anns


def base_sets(init: str, task: str) -> BaseSets | str:
    """The start model's own training and validation images, or why they cannot be had here."""
    from cellcounter.tasks import get_task
    from training.data import _source_split

    found = _locate(init, task)
    if isinstance(found, str):
        return found
    who, cfg, folders, data = found
    train: list[ImageAnnotation] = []
    val: list[ImageAnnotation] = []
    for folder in folders:
        tr, va = _source_split(cfg, folder, get_task(task).class_names)
        train += tr
        val += va
    if not train or not val:
        return f"{who}'s training or validation images were not found in {data}"
    return BaseSets(who, train, val)


def sample(anns: list[ImageAnnotation], n: int, seed: int) -> list[ImageAnnotation]:
    """``n`` of ``anns`` (all when fewer), the same ones for the same seed: a resumed run sees the same set."""
    if n >= len(anns):
        return list(anns)
    rng = np.random.default_rng(seed + 104_729)
    return [anns[i] for i in sorted(rng.choice(len(anns), n, replace=False))]


def rehearsal_count(corrected: int, share: float) -> int:
    """How many base images make ``share`` of a training set that holds ``corrected`` images of its own."""
    if share <= 0 or corrected <= 0:
        return 0
    if share >= 1:
        raise CellCounterError(f"rehearsal must be below 1 (a share of the training images), not {share}")
    return max(1, round(corrected * share / (1 - share)))
