"""``cellcounter project train``: registered through the ``cellcounter.project_commands`` entry point.

Light on purpose: registering the command imports neither torch nor the training loop; running it does.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cellcounter.errors import CellCounterError
from cellcounter.tasks import TASKS
from training.recipes import RECIPES


# --- ``cellcounter project train`` (registered through the ``cellcounter.project_commands`` entry point) ----


def register_cli(ps: argparse._SubParsersAction) -> None:
    t = ps.add_parser("train", help="fine-tune on the project's reviewed images and register the new version",
                      description="Fine-tune from the project's active model (else the bundled one) on the "
                                  "reviewed images' labels, exactly as reviewed. The new version is registered, "
                                  "not made active unless --activate is given.")
    t.add_argument("project", type=Path)
    t.add_argument("--task", choices=list(TASKS), help="default: the task of the reviewed images")
    t.add_argument("--recipe", choices=list(RECIPES), help="default: the task's recipe")
    t.add_argument("--epochs", type=int, default=10)
    t.add_argument("--init", help="model to start from, or 'none' (default: the active version, else bundled)")
    t.add_argument("--out", type=Path, help="run folder (default: beside the project)")
    t.add_argument("--rehearsal", type=float, default=None,
                   help="share of the training images drawn from the start model's own training data, to keep "
                        "what it knew (0 to 0.9; default %(default)s: the recipe's)")
    t.add_argument("--activate", action="store_true",
                   help="make the new version active (refused when it forgot what its start model knew; "
                        "add --force to activate anyway)")
    t.add_argument("--force", action="store_true", help="with --activate: activate even a version that forgot")
    t.add_argument("--resume", action="store_true",
                   help="go on with the project's newest stopped run of the task (or the run folder given by --out) "
                        "from its last checkpoint, then register it")
    t.set_defaults(func=cmd_train)


def cmd_train(args) -> int:
    from cellcounter.project.store import Project
    from cellcounter.project.workflows import activate_model, forgot
    from training.project import project_run, project_task, resume_run, stopped_runs, train_project

    if args.epochs < 1:
        raise CellCounterError(f"--epochs must be at least 1, got {args.epochs}")
    if args.rehearsal is not None and not 0 <= args.rehearsal < 1:
        raise CellCounterError(f"--rehearsal must be at least 0 and below 1, got {args.rehearsal}")
    with Project.open(args.project) as proj:
        if args.resume:
            runs = [args.out] if args.out else stopped_runs(proj, args.task)
            if not runs:
                raise CellCounterError(f"{args.project}: no stopped run to resume"
                                       + (f" for {args.task}" if args.task else ""))
            cfg, anns, ids = resume_run(proj, runs[0])
            task = cfg.task
            print(f"resuming {task} in {cfg.out} on {len(anns)} reviewed image(s)", flush=True)
        else:
            task = project_task(proj, args.task)
            cfg, anns, ids = project_run(proj, task, args.recipe, args.epochs, args.init, args.out,
                                         args.rehearsal)
            print(f"training {task} on {len(anns)} reviewed image(s) from {cfg.init}; run in {cfg.out}",
                  flush=True)
        version = None
        for ev in train_project(proj, cfg, anns, ids):
            if isinstance(ev, dict):
                version = ev
            elif ev.kind in ("eval", "base_eval"):
                print(f"validation at step {ev.step}{' ' + ev.message if ev.message else ''}: " + ", ".join(
                    f"{k} {v:.3f}" for k, v in ev.metrics.items() if isinstance(v, float)), flush=True)
            elif ev.kind in ("prepare", "start"):
                print(ev.message, flush=True)
            elif ev.kind == "stopped":
                print(f"stopped; resume with: cellcounter project train {args.project} --resume"
                      f"{' --out ' + str(cfg.out) if args.out else ''}")
                return 1
        if version is None:
            raise CellCounterError("training ended without a model")
        metrics = version["metrics"]
        print(f"registered {version['name']}: after {metrics.get('after')}, before {metrics.get('before')}")
        if metrics.get("calibration"):
            print(metrics["calibration"])
        if metrics.get("base"):
            base = metrics["base"]
            print(f"on {base['images']} of {base['model']}'s own validation images: after {base['after']}, "
                  f"before {base['before']}")
        lost = forgot(metrics)
        if lost:
            print(f"warning: the new version forgot what its start model knew: {lost}", flush=True)
        if args.activate and lost and not args.force:
            raise CellCounterError(f"{version['name']} was registered but not made active: it forgot what its "
                                   "start model knew (--force to activate it anyway, or train with --rehearsal)")
        if args.activate:
            activate_model(proj, version["name"])
            print(f"{version['name']} is now the active {task} model")
    return 0
