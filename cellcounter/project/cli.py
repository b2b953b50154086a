"""``cellcounter project create|add|status|predict|review|export|models|train|set-task|check|backup|relink|audit``.

Each action is one call into the core's project workflows (:mod:`cellcounter.project.workflows`), the same
functions the app's panels call.
"""

from __future__ import annotations

import argparse
import json
import sys
from importlib.metadata import entry_points
from pathlib import Path

from cellcounter.annotations import ReviewStatus, summary_lines
from cellcounter.errors import CellCounterError, FormatError
from cellcounter.formats import FORMATS
from cellcounter.inference.choice import BACKENDS
from cellcounter.project import maintenance
from cellcounter.project import workflows as wf
from cellcounter.project.gate import activation_warning
from cellcounter.project.importing import import_folder, import_image
from cellcounter.project.store import Project
from cellcounter.project.workflows import DEFAULT_SCORE_THRESHOLD, IMAGE_SETS
from cellcounter.tasks import TASKS


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("project", help="create and manage a project (one SQLite file beside its images)",
                       description="Projects hold images, their current labels, the full edit history, review "
                                   "status and model versions in one crash-safe SQLite file.")
    ps = p.add_subparsers(dest="project_command", metavar="ACTION")
    ps.required = True

    c = ps.add_parser("create", help="create a project from a folder of images (importing labels it finds)")
    c.add_argument("project", type=Path)
    c.add_argument("folder", type=Path, nargs="?", help="images, or a label folder in a known layout")
    c.add_argument("--task", choices=list(TASKS))
    c.set_defaults(func=cmd_create)

    a = ps.add_parser("add", help="add images to a project")
    a.add_argument("project", type=Path)
    a.add_argument("images", type=Path, nargs="+")
    a.add_argument("--task", choices=list(TASKS))
    a.set_defaults(func=cmd_add)

    il = ps.add_parser("import-labels", help="bring labels made in another tool onto the project's images",
                       description="Labels in any readable format (VOC, YOLO, COCO, QuPath, ...) are matched to "
                                   "the project's images by content hash, else by file name; on each image they "
                                   "supersede the model's objects and keep a person's. One edit per image.")
    il.add_argument("project", type=Path)
    il.add_argument("labels", type=Path, help="label file or folder")
    il.add_argument("--from", dest="fmt", choices=[n for n, f in FORMATS.items() if f.reader])
    il.add_argument("--as", dest="kind", choices=["reference", "corrections"], default="reference",
                    help="reference labels (default) or corrections a person made")
    il.set_defaults(func=cmd_import_labels)

    s = ps.add_parser("status", help="images per review status and objects per class (as a reviewer sees them)")
    s.add_argument("project", type=Path)
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_status)

    pr = ps.add_parser("predict", help="predict into the project (model objects replaced, human ones kept)",
                       description="Run a model on the project's images and store each result on the image it "
                                   "was computed from. The model defaults to the project's active version of the "
                                   "images' task, else the bundled default model.")
    pr.add_argument("project", type=Path)
    pr.add_argument("--model", help="model folder or name (default: active version, else bundled)")
    pr.add_argument("--task", choices=list(TASKS), help="only images of this task (default: each image's own)")
    pr.add_argument("--images", choices=["unreviewed", "all"], default="unreviewed",
                    help="unreviewed (default: not yet reviewed) or all images; reviewed labels are never touched "
                         "unless 'all'")
    pr.add_argument("--backend", default="auto", choices=list(BACKENDS),
                    help="auto (default): the fastest accepted backend here, as the app's Predict panel")
    pr.add_argument("--device", default="auto")
    pr.add_argument("--scheduler", metavar="ADDRESS",
                    help="predict on a Dask distributed cluster (local:N, or tcp://host:8786); see docs/cluster.md")
    pr.set_defaults(func=cmd_predict)

    rv = ps.add_parser("review", help="set images' review status; 'reviewed' keeps only what a reviewer sees",
                       description="Marking an image reviewed at --min-score drops the model objects scoring "
                                   "below it from its labels (one undoable edit in the history) and records the "
                                   "threshold, so exports and training take exactly what was shown.")
    rv.add_argument("project", type=Path)
    rv.add_argument("images", nargs="+", metavar="IMAGE", help="image ids, file names or paths; 'all' for every image")
    rv.add_argument("--status", required=True, choices=[s.value for s in ReviewStatus])
    rv.add_argument("--min-score", type=float, default=DEFAULT_SCORE_THRESHOLD,
                    help=f"score threshold the labels were seen at (default {DEFAULT_SCORE_THRESHOLD}); "
                         "'--min-score 0' keeps every model object")
    rv.set_defaults(func=cmd_review)

    e = ps.add_parser("export", help="export the labels as reviewed, with the core's writers",
                      description="Reviewed images go out as reviewed; other images at the display threshold "
                                  f"({DEFAULT_SCORE_THRESHOLD}), as the app shows them. COCO carries scores.")
    e.add_argument("project", type=Path)
    e.add_argument("dst", type=Path)
    e.add_argument("--to", dest="fmt", required=True, choices=[n for n, f in FORMATS.items() if f.writer])
    e.add_argument("--images", choices=list(IMAGE_SETS), default="all", help="reviewed images only, or all (default)")
    e.add_argument("--status", choices=["unreviewed", "in_progress", "reviewed"], help="only images in this state")
    e.add_argument("--min-score", type=float, help="also leave out model objects below this score on every image")
    e.add_argument("--image-root", type=Path, metavar="FOLDER",
                   help="COCO: write file_name relative to this folder, as the tool that reads it will be told "
                        "(default: the folder the images share)")
    e.set_defaults(func=cmd_export)

    m = ps.add_parser("models", help="list the project's model versions; activate one or roll back")
    m.add_argument("project", type=Path)
    g = m.add_mutually_exclusive_group()
    g.add_argument("--activate", metavar="VERSION", help="make VERSION the one Predict uses for its task (refused "
                   "when it is worse than its start model or forgot what it knew, unless --force)")
    g.add_argument("--rollback", metavar="TASK", choices=list(TASKS),
                   help="reactivate the active version's parent (or the bundled model)")
    m.add_argument("--force", action="store_true", help="with --activate: activate even a flagged version")
    m.add_argument("--json", action="store_true")
    m.set_defaults(func=cmd_models)

    for ep in entry_points(group="cellcounter.project_commands"):  # `train`, from the training package
        try:
            register_more = ep.load()
        except ImportError:  # an installation without the training package
            continue
        register_more(ps)

    t = ps.add_parser("set-task", help="make images count as another task (refused while they hold objects)")
    t.add_argument("project", type=Path)
    t.add_argument("images", nargs="+", metavar="IMAGE", help="image ids, file names or paths; 'all' for every image")
    t.add_argument("--task", required=True, choices=list(TASKS))
    t.set_defaults(func=cmd_set_task)

    k = ps.add_parser("check", help="integrity check (exit 1 when problems are found)")
    k.add_argument("project", type=Path)
    k.add_argument("--quick", action="store_true", help="do not compare each image file's content hash")
    k.set_defaults(func=cmd_check)

    b = ps.add_parser("backup", help="consistent copy, safe while the app is writing")
    b.add_argument("project", type=Path)
    b.add_argument("dest", type=Path)
    b.set_defaults(func=cmd_backup)

    r = ps.add_parser("relink", help="find moved images under a folder by content hash")
    r.add_argument("project", type=Path)
    r.add_argument("folder", type=Path)
    r.set_defaults(func=cmd_relink)

    u = ps.add_parser("audit", help="export the edit history (CSV, or JSON for a .json path)")
    u.add_argument("project", type=Path)
    u.add_argument("dst", type=Path)
    u.set_defaults(func=cmd_audit)


def cmd_create(args) -> int:
    with Project.create(args.project) as proj:
        n = len(import_folder(proj, args.folder, args.task)) if args.folder else 0
    print(f"created {args.project} with {n} image(s)")
    return 0


def cmd_add(args) -> int:
    with Project.open(args.project) as proj:
        n = 0
        for p in args.images:
            if p.is_dir():
                n += len(import_folder(proj, p, args.task))
            else:
                import_image(proj, p, args.task)
                n += 1
    print(f"added {n} image(s) to {args.project}")
    return 0


def cmd_import_labels(args) -> int:
    from cellcounter.project.importing import import_labels

    with Project.open(args.project) as proj:
        done, unmatched = import_labels(proj, args.labels, args.fmt, as_corrections=args.kind == "corrections")
    print(f"imported labels onto {len(done)} image(s) of {args.project} as {args.kind}")
    if unmatched:
        print(f"warning: {len(unmatched)} labelled image(s) match no image of the project: "
              f"{', '.join(unmatched[:5])}{' ...' if len(unmatched) > 5 else ''}", file=sys.stderr)
    return 0 if done else 1


def cmd_status(args) -> int:
    with Project.open(args.project, readonly=True) as proj:
        st = proj.status(wf.labels_to_export(proj, "all"))  # unreviewed images at the display threshold
    print(f"{args.project}: {st['images']} image(s)")
    print("\n".join(summary_lines(st)))
    if args.json:
        print(json.dumps(st))
    return 0


def _score(value: float | None, flag: str) -> float | None:
    if value is not None and not 0.0 <= value <= 1.0:
        raise CellCounterError(f"{flag} must be between 0 and 1, got {value}")
    return value


def cmd_export(args) -> int:
    min_score = _score(args.min_score, "--min-score")
    with Project.open(args.project, readonly=True) as proj:
        ids = wf.select_images(proj, args.images)
        if args.status:
            wanted = {r.id for r in proj.images(args.status)}
            ids = [i for i in ids if i in wanted]
        if not ids:
            raise FormatError(args.project, f"no {args.images if args.images != 'all' else ''} images to export"
                              .replace("  ", " "))
        n, written = wf.export_project(proj, args.dst, args.fmt, ids, min_score, image_root=args.image_root)
    print(f"exported {n} image(s) as {args.fmt}: {len(written)} file(s) in {args.dst}")
    return 0


def _image_ids(proj: Project, refs: list[str]) -> list[int]:
    """Image ids from ids, file names or paths (``all``: every image)."""
    recs = proj.images()
    if refs == ["all"]:
        return [r.id for r in recs]
    out = []
    for ref in refs:
        hits = [r.id for r in recs if str(r.id) == ref or r.path.name == ref
                or (Path(ref).exists() and r.path.resolve() == Path(ref).resolve())]
        if not hits:
            raise CellCounterError(f"{proj.path}: no image {ref!r} (give an id, a file name or a path)")
        if len(hits) > 1:
            raise CellCounterError(f"{proj.path}: {ref!r} names {len(hits)} images; give an id or a path")
        out.append(hits[0])
    return out


def cmd_review(args) -> int:
    min_score = _score(args.min_score, "--min-score")
    with Project.open(args.project) as proj:
        ids = _image_ids(proj, args.images)
        dropped = sum(wf.review_image(proj, i, args.status, min_score) for i in ids)
    extra = f"; {dropped} model object(s) below {min_score} left out" if dropped else ""
    print(f"{len(ids)} image(s) marked {args.status}{extra}")
    return 0


def cmd_set_task(args) -> int:
    with Project.open(args.project) as proj:
        ids = _image_ids(proj, args.images)
        for i in ids:
            wf.set_image_task(proj, i, args.task)
    print(f"{len(ids)} image(s) are now {args.task} images")
    return 0


def _results(model, jobs: list, args):
    """``(job, annotation or why it failed)`` for each job, here or on the cluster ``args.scheduler``."""
    if not args.scheduler:
        for ev in wf.predict_jobs(model, jobs):
            if isinstance(ev, wf.Predicted):
                yield ev.job, ev.annotation
            elif isinstance(ev, wf.PredictionFailed):
                yield ev.job, ev.reason
        return
    import dataclasses

    from cellcounter.inference.cluster import PredictSpec, local_threads, predict_files

    base = PredictSpec(str(model.directory), args.backend, args.device, threads=local_threads(args.scheduler))
    specs = [dataclasses.replace(base, regions=tuple(job.regions)) for job in jobs]
    for job, (_, ann) in zip(jobs, predict_files(args.scheduler, specs, [job.image_path for job in jobs])):
        yield job, ann


def cmd_predict(args) -> int:
    from cellcounter.inference import Predictor

    with Project.open(args.project) as proj:
        recs = [r for r in proj.images() if r.id in set(wf.select_images(proj, args.images))]
        predictor = Predictor.load(args.model, args.backend, args.device) if args.model else None
        task = args.task or (predictor.card.task if predictor else None)
        if predictor is not None and task != predictor.card.task:
            raise CellCounterError(f"model {predictor.model_version} is for task {predictor.card.task!r}, "
                                   f"not {task!r}")
        by_task: dict[str, list[int]] = {}
        for r in recs:
            t = r.task or task
            if t is None:
                raise CellCounterError(f"{r.path}: the image has no task; give --task or --model")
            if task is None or t == task:
                by_task.setdefault(t, []).append(r.id)
        if not by_task:
            print(f"{args.project}: no {args.images} images{' of task ' + task if task else ''} to predict")
            return 0
        total = 0
        for t, ids in by_task.items():
            model = predictor
            if model is None:
                chosen = wf.default_model(proj, t)
                if chosen is None:
                    raise CellCounterError(f"no model for task {t!r}: give --model")
                model = Predictor.load(chosen, args.backend, args.device)
            shown = stored = 0
            jobs = wf.prediction_jobs(proj, ids)
            for job, ann in _results(model, jobs, args):
                if isinstance(ann, str):
                    print(f"error: {job.image_path}: {ann}; skipped", file=sys.stderr)
                    continue
                wf.apply_prediction(proj, job, ann, model.model_version)
                labels = proj.load(job.image_id)  # what is stored now: merged with a person's objects
                stored += labels.n_objects()
                shown += sum(labels.counts(score_threshold=DEFAULT_SCORE_THRESHOLD).values())
            print(f"{t}: {len(ids)} image(s) predicted with {model.model_version}: {shown} object(s) shown and "
                  f"counted at score >= {DEFAULT_SCORE_THRESHOLD} ({stored} stored with lower-scoring candidates)")
            total += len(ids)
    return 0


def cmd_models(args) -> int:
    with Project.open(args.project, readonly=not (args.activate or args.rollback)) as proj:
        if args.activate:
            previous = wf.activate_model(proj, args.activate, force=args.force)
            print(f"{args.activate} is now active" + (f" (was {previous})" if previous else ""))
        elif args.rollback:
            now = wf.rollback_model(proj, args.rollback)
            print(f"{args.rollback}: now using {now or 'the bundled model'}")
        versions = proj.registry.versions()
    if args.json:
        print(json.dumps([v.as_dict() for v in versions]))
    else:
        for v in versions:
            after = ", ".join(f"{k} {x:.3f}" for k, x in (v.metrics.get("after") or {}).items()
                              if isinstance(x, float))
            flag = activation_warning(v.metrics)
            print(f"{'*' if v.active else ' '} {v.name} ({v.task}) parent {v.parent or '-'}; "
                  f"{len(v.training_data)} image(s); {after or 'no scores'}"
                  + (f"; FLAGGED: {flag}" if flag else ""))
        if not versions:
            print(f"{args.project}: no model versions")
    return 0


def cmd_check(args) -> int:
    with Project.open(args.project, readonly=True) as proj:
        problems = maintenance.check(proj, quick=args.quick)
    for p in problems:
        print(f"problem: {p}")
    print(f"{args.project}: " + ("ok" if not problems else f"{len(problems)} problem(s)"))
    return 1 if problems else 0


def cmd_backup(args) -> int:
    with Project.open(args.project, readonly=True) as proj:
        maintenance.backup(proj, args.dest)
    print(f"backed up {args.project} to {args.dest}")
    return 0


def cmd_relink(args) -> int:
    with Project.open(args.project) as proj:
        found = maintenance.relink(proj, args.folder)
        still = maintenance.missing_images(proj)
    print(f"relinked {len(found)} image(s); {len(still)} still missing")
    return 0 if not still else 1


def cmd_audit(args) -> int:
    with Project.open(args.project, readonly=True) as proj:
        proj.history.export_audit(args.dst)
    print(f"wrote the edit history to {args.dst}")
    return 0
