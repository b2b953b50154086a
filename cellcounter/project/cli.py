"""``cellcounter project create|add|status|export|check|backup|relink|audit``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from cellcounter.errors import FormatError
from cellcounter.formats import FORMATS, write_labels
from cellcounter.project.importing import import_folder, import_image
from cellcounter.project.store import Project
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

    s = ps.add_parser("status", help="images per review status and objects per class")
    s.add_argument("project", type=Path)
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_status)

    e = ps.add_parser("export", help="export the project's labels with the core's writers")
    e.add_argument("project", type=Path)
    e.add_argument("--to", dest="fmt", required=True, choices=[n for n, f in FORMATS.items() if f.writer])
    e.add_argument("--status", choices=["unreviewed", "in_progress", "reviewed"], help="only images in this state")
    e.add_argument("dst", type=Path)
    e.set_defaults(func=cmd_export)

    k = ps.add_parser("check", help="integrity check (exit 1 when problems are found)")
    k.add_argument("project", type=Path)
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


def cmd_status(args) -> int:
    with Project.open(args.project, readonly=True) as proj:
        st = proj.status()
    print(f"{args.project}: {st['images']} image(s)")
    for k, v in st["review"].items():
        print(f"  {k}: {v}")
    for k, v in st["instances"].items():
        print(f"  {k}: {v}")
    for g, v in st.get("grades", {}).items():
        print(f"  grade {g}: {v} image(s)")
    if args.json:
        print(json.dumps(st))
    return 0


def cmd_export(args) -> int:
    with Project.open(args.project, readonly=True) as proj:
        ids = [r.id for r in proj.images(args.status)]
        anns = proj.annotations(ids)
    if not anns:
        raise FormatError(args.project, "no images to export")
    written = write_labels(anns, args.dst, args.fmt)
    print(f"exported {len(anns)} image(s) as {args.fmt}: {len(written)} file(s) in {args.dst}")
    return 0


def cmd_check(args) -> int:
    with Project.open(args.project, readonly=True) as proj:
        problems = proj.check()
    for p in problems:
        print(f"problem: {p}")
    print(f"{args.project}: " + ("ok" if not problems else f"{len(problems)} problem(s)"))
    return 1 if problems else 0


def cmd_backup(args) -> int:
    with Project.open(args.project, readonly=True) as proj:
        proj.backup(args.dest)
    print(f"backed up {args.project} to {args.dest}")
    return 0


def cmd_relink(args) -> int:
    with Project.open(args.project) as proj:
        found = proj.relink(args.folder)
        still = proj.missing_images()
    print(f"relinked {len(found)} image(s); {len(still)} still missing")
    return 0 if not still else 1


def cmd_audit(args) -> int:
    with Project.open(args.project, readonly=True) as proj:
        proj.export_audit(args.dst)
    print(f"wrote the edit history to {args.dst}")
    return 0
