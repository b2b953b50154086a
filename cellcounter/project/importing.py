"""Adding images to a project, with the labels found beside them or in a folder's known layout.

Labels read from files come in as reference labels (:attr:`Origin.REFERENCE`, event origin ``import``), not
as if a person of this project had drawn them.

One implementation for ``cellcounter project create|add`` and for the app's open image / open folder.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from cellcounter.annotations import as_reference
from cellcounter.errors import CellCounterWarning, FormatError, ProjectError
from cellcounter.formats import detect_format, labels_for_image, read_labels
from cellcounter.imageio import IMAGE_SUFFIXES
from cellcounter.project.store import Project
from cellcounter.tasks import TASKS


def _own_task(anns: list, task: str | None) -> str | None:
    """Labels of a task of their own (DSB and Aperio masks are nuclei, CVPPP leaves, a grade CSV retinopathy)
    keep it, whatever the session's task: a nuclei image opened in a blood session is not counted as RBC."""
    declared = {a.task for a in anns}
    if len(declared) == 1 and (only := declared.pop()) in TASKS:
        return only
    return task


def import_image(project: Project, image: Path, task: str | None = None, with_labels: bool = True) -> int:
    """Add one image (and, with ``with_labels``, the labels stored beside it); an image already in the
    project keeps its labels. The image's task is its labels' own task if they have one, else ``task``."""
    existing = project.find_image(image)
    if existing is not None:
        if task and project.image(existing).task != task:  # asked for anew: the image takes it if it can
            from cellcounter.project.workflows import set_image_task

            try:
                set_image_task(project, existing, task)
            except ProjectError as exc:
                warnings.warn(str(exc), CellCounterWarning, stacklevel=2)
        return existing
    ann = labels_for_image(image) if with_labels else None
    if ann is not None:
        own = _own_task([ann], None)
        task = own or task
        if own is None and task:  # labels without a task of their own: read with the task's class order
            ann = labels_for_image(image, TASKS[task].class_names)
    image_id = project.add_image(image, task)
    if ann is not None:
        project.save(image_id, as_reference(ann), origin="import")
    return image_id


def import_folder(project: Project, folder: Path, task: str | None = None) -> list[int]:
    """Add a folder: its labelled images when it is in a known layout, else every image in it.

    Returns the ids in folder order. Images listed by labels but missing on disk are skipped with a warning.
    """
    try:
        fmt = detect_format(folder)
    except FormatError:
        fmt = None
    ids: list[int] = []
    if fmt is not None:
        anns = read_labels(folder, fmt)
        own = _own_task(anns, None)
        if own is None and task:
            anns = read_labels(folder, fmt, TASKS[task].class_names)
        task = own or task
        for ann in anns:
            if not Path(ann.image_path).is_file():
                warnings.warn(f"{ann.image_path}: image not found; its labels were not imported",
                              CellCounterWarning, stacklevel=2)
                continue
            existing = project.find_image(ann.image_path)
            if existing is None:
                existing = project.add_image(ann.image_path, task or ann.task)
                project.save(existing, as_reference(ann), origin="import")
            ids.append(existing)
    else:
        for f in sorted(folder.rglob("*")):
            if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file() and "_mask" not in f.stem:
                ids.append(import_image(project, f, task))
    if not ids:
        raise FormatError(folder, "holds no images")
    return ids
