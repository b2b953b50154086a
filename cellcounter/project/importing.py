"""Adding images to a project, with the labels found beside them or in a folder's known layout.

Labels read from files come in as reference labels (:attr:`Origin.REFERENCE`, event origin ``import``), not
as if a person of this project had drawn them.

One implementation for ``cellcounter project create|add`` and for the app's open image / open folder.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

from cellcounter.annotations import ImageAnnotation, as_reference
from cellcounter.errors import CellCounterWarning, FormatError, ProjectError
from cellcounter.formats import detect_format, image_files, labels_for_image, read_labels
from cellcounter.imageio import open_image
from cellcounter.project.store import Project
from cellcounter.tasks import TASKS


def _own_task(anns: list, task: str | None) -> str | None:
    """Labels of a task of their own (DSB and Aperio masks are nuclei, CVPPP leaves, a grade CSV retinopathy)
    keep it, whatever the session's task: a nuclei image opened in a blood session is not counted as RBC."""
    declared = {a.task for a in anns}
    if len(declared) == 1 and (only := declared.pop()) in TASKS:
        return only
    return task


@dataclass
class ToImport:
    """An image to add and the labels read for it: what an import reads before it touches the project.

    Reading (parsing label files, rasterising hundreds of outlines) is the slow part of opening an image;
    it needs no project, so an app can do it off its GUI thread and store the result quickly after.
    """

    image: Path
    task: str | None  # the labels' own task, else the one asked for
    labels: ImageAnnotation | None = None
    in_layout: bool = False  # listed by a folder's label layout (which decides its task), not found beside it


def read_image(image: Path, task: str | None = None, with_labels: bool = True) -> ToImport:
    """One image and (with ``with_labels``) the labels stored beside it, read with its task's class order."""
    ann = labels_for_image(image) if with_labels else None
    if ann is not None:
        own = _own_task([ann], None)
        task = own or task
        if own is None and task:  # labels without a task of their own: read with the task's class order
            ann = labels_for_image(image, TASKS[task].class_names)
    return ToImport(Path(image), task, ann)


def read_folder(folder: Path, task: str | None = None) -> list[ToImport]:
    """A folder's labelled images when it is in a known layout, else every image in it with the labels beside
    it. Images listed by labels but missing on disk are skipped with a warning."""
    try:
        fmt = detect_format(folder)
    except FormatError:
        fmt = None
    if fmt is None:
        items = [read_image(f, task) for f in image_files(folder)]
    else:
        anns = read_labels(folder, fmt)
        own = _own_task(anns, None)
        if own is None and task:
            anns = read_labels(folder, fmt, TASKS[task].class_names)
        items = []
        for ann in anns:
            if not Path(ann.image_path).is_file():
                warnings.warn(f"{ann.image_path}: image not found; its labels were not imported",
                              CellCounterWarning, stacklevel=2)
                continue
            try:  # the labels name it: a file that is no image is the label file's fault, said as such
                open_image(ann.image_path, lazy=True).close()
            except FormatError as exc:
                warnings.warn(f"{folder}: the labels name {ann.image_path} as their image, which is not one "
                              f"({exc.message}); those labels were not imported",
                              CellCounterWarning, stacklevel=2)
                continue
            items.append(ToImport(Path(ann.image_path), own or task or ann.task, ann, in_layout=True))
    if not items:
        raise FormatError(folder, "holds no images")
    return items


def add_read(project: Project, item: ToImport, asked: str | None = None) -> int:
    """Add an image read by :func:`read_image` or :func:`read_folder` with its labels; an image already in the
    project keeps its labels and takes the task ``asked`` for, where it can."""
    existing = project.find_image(item.image)
    if existing is not None:
        if asked and project.image(existing).task != asked:
            from cellcounter.project.workflows import set_image_task

            try:
                set_image_task(project, existing, asked)
            except ProjectError as exc:
                warnings.warn(str(exc), CellCounterWarning, stacklevel=2)
        return existing
    image_id = project.add_image(item.image, item.task)
    if item.labels is not None and _is_new(project, image_id, item.image):
        project.save(image_id, as_reference(item.labels), origin="import")
    return image_id


def import_image(project: Project, image: Path, task: str | None = None, with_labels: bool = True) -> int:
    """Add one image (and, with ``with_labels``, the labels stored beside it); an image already in the
    project keeps its labels. The image's task is its labels' own task if they have one, else ``task``."""
    if project.find_image(image) is not None:  # nothing to read
        return add_read(project, ToImport(Path(image), task), task)
    return add_read(project, read_image(image, task, with_labels), task)


def _is_new(project: Project, image_id: int, image: str | Path) -> bool:
    """Whether ``image_id`` is ``image`` itself (not an identical image already held under another name)."""
    return project.image(image_id).path.resolve() == Path(image).resolve()


def import_folder(project: Project, folder: Path, task: str | None = None,
                  read: list[ToImport] | None = None) -> list[int]:
    """Add a folder (as :func:`read_folder` reads it, or its result ``read``); returns the ids in folder order."""
    return [add_read(project, item, None if item.in_layout else task)
            for item in (read if read is not None else read_folder(folder, task))]


def import_labels(project: Project, source: Path, fmt: str | None = None, as_corrections: bool = False
                  ) -> tuple[list[int], list[str]]:
    """Bring labels made in another tool (CVAT, QuPath, LabelImg, ...) onto images the project already holds.

    Each labelled image is matched to a project image by content hash (when its file is at hand), else by file
    name. The imported objects supersede the model's on that image (its model objects are dropped); a person's
    objects stay, and an imported object duplicating one of them is left out. They come in as reference labels,
    or as corrections (a person checked them) with ``as_corrections``; one edit per image in the history.
    Returns the ids of the images that took labels and the names of the labelled images that matched none.
    """
    from cellcounter.annotations import Origin
    from cellcounter.imageio import file_hash
    from cellcounter.project.workflows import not_duplicating

    tasks = {rec.task for rec in project.images()} - {None}
    task = TASKS.get(tasks.pop()) if len(tasks) == 1 else None
    anns = read_labels(source, fmt, task.class_names if task is not None and task.kind != "grade" else None)
    by_name: dict[str, list[int]] = {}
    for rec in project.images():
        by_name.setdefault(rec.path.name, []).append(rec.id)
    done, unmatched = [], []
    origin = Origin.CORRECTED if as_corrections else Origin.REFERENCE
    for ann in anns:
        image_id = project.find_content(file_hash(ann.image_path)) if Path(ann.image_path).is_file() else None
        if image_id is None:
            hits = by_name.get(Path(ann.image_path).name, [])
            image_id = hits[0] if len(hits) == 1 else None
        if image_id is None:
            unmatched.append(Path(ann.image_path).name)
            continue
        saved = project.load(image_id)
        if (ann.width, ann.height) != (saved.width, saved.height):
            raise FormatError(source, f"labels of {ann.name} are for a {ann.width}x{ann.height} image, but the "
                                      f"project's {saved.name} is {saved.width}x{saved.height}")
        imported = as_reference(ann)
        imported.boxes.origins[:] = origin
        kept = saved.boxes.subset(saved.boxes.origins != Origin.MODEL)
        new = not_duplicating(imported.boxes, kept)
        merged = saved
        merged.class_names = saved.class_names or imported.class_names
        merged.boxes = kept.concat(new.renumbered(int(saved.boxes.ids.max(initial=0)) + 1))
        if imported.masks is not None and len(imported.masks):
            imported.masks.origins[:] = origin
            merged.masks = imported.masks
        if len(imported.points):
            merged.points = imported.points
        if imported.grade is not None:
            merged.grade = imported.grade
        project.save(image_id, merged, origin="import")
        done.append(image_id)
    return done, unmatched
